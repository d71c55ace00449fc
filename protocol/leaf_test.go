package protocol

import (
	"os/exec"
	"strings"
	"testing"
)

// TestProtocolIsLeaf keeps protocol a leaf of the module: it must not
// depend on the edge, hub or firmware bridge, nor do I/O of its own through
// the network, subprocesses or databases.
func TestProtocolIsLeaf(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("go command not found")
	}
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 5 {
		t.Fatalf("go list returned too few packages: %v", deps)
	}
	const module = "github.com/unico-cdp/unico/"
	forbidden := []struct {
		prefix, why string
	}{
		{module + "edge", "the edge agent"},
		{module + "hub", "the hub"},
		{module + "firmware-bridge", "the firmware bridge"},
		{module + "cmd", "a main package"},
		{"net", "network I/O"},
		{"os/exec", "subprocesses"},
		{"database/sql", "a database"},
		{"github.com/dgraph-io/badger", "a database"},
		{"github.com/eclipse/paho.mqtt.golang", "an MQTT client"},
		{"github.com/mochi-mqtt", "an MQTT broker"},
		{"github.com/valyala/fasthttp", "an HTTP server"},
	}
	seen := false
	for _, d := range deps {
		if d == "github.com/unico-cdp/unico/protocol" {
			seen = true
		}
		for _, f := range forbidden {
			if d == f.prefix || strings.HasPrefix(d, f.prefix+"/") {
				t.Errorf("protocol depends on %s (%s)", d, f.why)
			}
		}
	}
	if !seen {
		t.Fatalf("go list did not list protocol itself: %v", deps)
	}
}
