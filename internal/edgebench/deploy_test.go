package edgebench

import (
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/unico-cdp/unico/internal/conf"
)

const confExample = "../../deploy/edge/edge.conf.example"

// TestConfigExample checks that deploy/edge/edge.conf.example is accepted by
// the real edge-agent flag set.
func TestConfigExample(t *testing.T) {
	binaries(t)
	out, err := exec.Command(filepath.Join(binDir, "edge-agent"), "--config", confExample, "--check-config").CombinedOutput()
	if err != nil {
		t.Fatalf("edge-agent --check-config: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "configuration ok") {
		t.Fatalf("edge-agent --check-config printed %q, want \"configuration ok\"", out)
	}
}

// TestConfigExampleCoversEveryFlag checks that every flag of edge-agent
// --help is set in the example, except those a config file cannot set.
func TestConfigExampleCoversEveryFlag(t *testing.T) {
	binaries(t)
	help, _ := exec.Command(filepath.Join(binDir, "edge-agent"), "--help").CombinedOutput()
	flags := regexp.MustCompile(`(?m)^\s+--([a-z0-9-]+)`).FindAllStringSubmatch(string(help), -1)
	if len(flags) < 10 {
		t.Fatalf("found only %d flags in edge-agent --help:\n%s", len(flags), help)
	}
	settings, err := conf.ReadFile(confExample)
	if err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	for _, s := range settings {
		set[s.Key] = true
	}
	notInFile := map[string]bool{"config": true, "check-config": true, "version": true}
	for _, f := range flags {
		name := f[1]
		if set[name] == notInFile[name] {
			if notInFile[name] {
				t.Errorf("flag --%s is set in %s but belongs on the command line", name, confExample)
			} else {
				t.Errorf("flag --%s is not in %s", name, confExample)
			}
		}
	}
}
