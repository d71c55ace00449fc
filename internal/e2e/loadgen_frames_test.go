package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/protocol"
	"github.com/unico-cdp/unico/simulate"
)

var (
	loadgenOnce sync.Once
	loadgenErr  error
)

// loadgenBinary builds cmd/loadgen next to the other binaries.
func loadgenBinary(t *testing.T) string {
	t.Helper()
	binaries(t)
	loadgenOnce.Do(func() {
		out, err := exec.Command("go", "build", "-o", binDir+"/", "../../cmd/loadgen").CombinedOutput()
		if err != nil {
			loadgenErr = fmt.Errorf("go build loadgen: %v\n%s", err, out)
		}
	})
	if loadgenErr != nil {
		t.Fatal(loadgenErr)
	}
	return filepath.Join(binDir, "loadgen")
}

// loadgenSummary is the part of loadgen's JSON summary the test reads.
type loadgenSummary struct {
	Accepted int64                  `json:"accepted"`
	Rejected int64                  `json:"rejected"`
	Frames   *simulate.FrameSummary `json:"frames"`
}

// TestLoadgenSensorFrames runs loadgen with presence as sensor frames
// against an edge agent with its device listener: visits by shoppers with
// the app (whose identify over HTTP links their beacon id) and without it
// (a hashed MAC address per visit), reported by six authenticated sensors
// per store. The hub must end with exactly the HTTP events loadgen had
// accepted plus the presence events loadgen expects from its PUBACKed
// frames, every person's presence events on the identifiers the ground
// truth gives them, and every app beacon on its owner's profile.
func TestLoadgenSensorFrames(t *testing.T) {
	lg := loadgenBinary(t)
	dir := t.TempDir()
	creds := filepath.Join(dir, "devices.txt")
	if out, err := exec.Command(lg, "--write-device-credentials", creds, "--stores", "2").CombinedOutput(); err != nil {
		t.Fatalf("loadgen --write-device-credentials: %v\n%s", err, out)
	}
	const minDwell, exitTimeout = "1s", "2s"
	hub := startHub(t, filepath.Join(dir, "hub"))
	devPort := freePort(t)
	edge := startEdge(t, filepath.Join(dir, "edge"), "store-f", hub.mqtt,
		"--device-mqtt-addr", fmt.Sprintf("127.0.0.1:%d", devPort), "--device-credentials", creds,
		"--presence-zones", simulate.ZoneMap(), "--presence-min-dwell", minDwell, "--presence-exit-timeout", exitTimeout,
		"--identifier-rules", "traits.beacon_id=beacon_id")

	truthPath := filepath.Join(dir, "truth.jsonl")
	framesLog := filepath.Join(dir, "frames-acked.jsonl")
	cmd := exec.CommandContext(t.Context(), lg, "--edge", fmt.Sprintf("http://127.0.0.1:%d", edge.http), "--write-key", "wk",
		"--country-code", "44", "--device-mqtt", fmt.Sprintf("mqtt://127.0.0.1:%d", devPort), "--device-credentials", creds,
		"--mix", "presence=1", "--rate", "25", "--duration", "4s", "--population", "150", "--stores", "2", "--seed", "5",
		"--frame-interval", "150ms", "--presence-min-dwell", minDwell, "--presence-exit-timeout", exitTimeout,
		"--truth", truthPath, "--frames-log", framesLog, "--quiet")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("loadgen: %v\n%s\n%s", err, stdout.String(), stderr.String())
	}
	var sum loadgenSummary
	if err := json.Unmarshal(stdout.Bytes(), &sum); err != nil || sum.Frames == nil {
		t.Fatalf("loadgen summary %q: %v", stdout.String(), err)
	}
	fs := sum.Frames
	t.Logf("loadgen: %d HTTP events accepted; frames %+v", sum.Accepted, *fs)
	if sum.Rejected != 0 || fs.FramesUnacked != 0 || fs.FramesAcked != fs.FramesSent || !fs.Exact {
		t.Fatalf("loadgen did not deliver everything: rejected %d, frames %d sent %d acked %d unacked, exact %v",
			sum.Rejected, fs.FramesSent, fs.FramesAcked, fs.FramesUnacked, fs.Exact)
	}
	if fs.Sensors != 2*simulate.NumZones || fs.Visits < 20 || fs.SightingsAcked == 0 || fs.WeakAcked == 0 {
		t.Fatalf("too little traffic for the test to mean anything: %+v", *fs)
	}
	for _, name := range []string{bridge.EventEnter, bridge.EventZoneDwell, bridge.EventExit} {
		if fs.ExpectedEvents[name] == 0 {
			t.Fatalf("loadgen expects no %s event: %v", name, fs.ExpectedEvents)
		}
	}
	// Every visit ends with an exit, and every enter opened one visit.
	if fs.ExpectedEvents[bridge.EventEnter] != fs.ExpectedEvents[bridge.EventExit] {
		t.Fatalf("expected enters and exits differ: %v", fs.ExpectedEvents)
	}
	x := frameExpectation(t, framesLog, time.Second, 2*time.Second)
	if x.Frames() != int(fs.FramesAcked) {
		t.Fatalf("loadgen logged %d PUBACKed frames, its summary says %d", x.Frames(), fs.FramesAcked)
	}

	// The sensors are silent: the agent closes the last sessions by the
	// wall clock, the exit timeout and as much again after their last
	// sightings. Then nothing may be left open or queued, and the hub's
	// count must settle.
	var got, open int64 = -1, -1
	stable := time.Time{}
	waitFor(t, 90*time.Second, "the agent to close every presence session and the hub to settle", func() bool {
		n := hub.events(t)
		st, ok := edge.status(t)
		o, okSessions := edge.openSessions()
		if n != got || o != open {
			got, open, stable = n, o, time.Now()
		}
		return ok && okSessions && o == 0 && st.QueueDepth == 0 && time.Since(stable) >= 2*time.Second
	})

	// The hub against the PUBACKed frames, per identifier; its count
	// against the HTTP events plus the presence events checked.
	r, all, err := x.CheckPresence(func(id protocol.Identifier) ([]protocol.Event, error) {
		return presenceEventsOnHub(t, hub, id), nil
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("presence check: %+v", r)
	if r.Failures() > 0 {
		t.Errorf("%d presence checks failed:\n  %s", r.Failures(), strings.Join(r.Mismatches, "\n  "))
	}
	if r.EntersExpected == 0 || r.HubExits == 0 {
		t.Errorf("no presence session derived or closed: %+v", r)
	}
	if want := sum.Accepted + int64(len(all)); got != want {
		t.Errorf("hub holds %d events, want %d (%d HTTP + %d presence events on the %d identifiers)", got, want, sum.Accepted, len(all), r.Identifiers)
	}

	f, err := os.Open(truthPath)
	if err != nil {
		t.Fatal(err)
	}
	truth, err := simulate.ReadTruth(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	var persons, beacons, presence int
	for _, r := range truth {
		if r.PresenceEvents == 0 {
			continue
		}
		persons++
		var onHub int
		var account protocol.Identifier
		var beacon []protocol.Identifier
		for _, id := range r.Identifiers {
			switch id.Type {
			case "beacon_id":
				beacon = append(beacon, protocol.Identifier{Type: id.Type, Value: id.Value})
				fallthrough
			case "mac_hash":
				onHub += len(presenceEventsOnHub(t, hub, protocol.Identifier{Type: id.Type, Value: id.Value}))
			case "user_id":
				account = protocol.Identifier{Type: id.Type, Value: id.Value}
			case "anonymous_id":
				if account.Type == "" && strings.HasPrefix(id.Value, "app-") {
					account = protocol.Identifier{Type: id.Type, Value: id.Value}
				}
			}
		}
		presence += onHub
		if onHub == 0 {
			t.Errorf("%s: loadgen credits the person %d presence events, the hub has none on the person's beacon and MAC hashes", r.Person, r.PresenceEvents)
		}
		for _, b := range beacon {
			beacons++
			if account.Type == "" {
				t.Errorf("%s: beacon %s but no account or app id in the truth", r.Person, b.Value)
				continue
			}
			if pb, pa := profileID(t, hub, b), profileID(t, hub, account); pb == "" || pb != pa {
				t.Errorf("%s: beacon %s on profile %q, the app's %s on %q", r.Person, b.Value, pb, account, pa)
			}
		}
	}
	// Every presence event at the hub is on an identifier of the person
	// the truth gives it to.
	if presence != len(all) {
		t.Errorf("the hub holds %d presence events on the persons' identifiers in the truth, %d in all", presence, len(all))
	}
	if beacons == 0 || persons == beacons {
		t.Errorf("want visits both with and without the app: %d persons with presence, %d beacons", persons, beacons)
	}
	t.Logf("%d persons with presence events, %d app beacons linked, %d presence events (loadgen counted %d)", persons, beacons, presence, fs.ExpectedTotal)
}

// frameExpectation replays the PUBACKed frames loadgen logged to path
// through a bridge configured like the agent.
func frameExpectation(t *testing.T, path string, minDwell, exitTimeout time.Duration) *simulate.PresenceExpectation {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	acked, err := simulate.ReadAckedLog(f)
	if err != nil {
		t.Fatal(err)
	}
	zones := map[uint8]string{}
	for z := range strings.SplitSeq(simulate.ZoneMap(), ",") {
		n, name, _ := strings.Cut(z, "=")
		v, _ := strconv.Atoi(n)
		zones[uint8(v)] = name
	}
	x := simulate.NewPresenceExpectation(bridge.Config{MinDwell: minDwell, ExitTimeout: exitTimeout, MaxFrameDelay: exitTimeout, ZoneMap: zones}, minDwell/2)
	for _, a := range acked {
		if _, err := x.Add(simulate.PresenceRun{Edge: a.Edge}, a.Frame, a.AckedAt); err != nil {
			t.Fatal(err)
		}
	}
	return x
}

// openSessions reads the agent's open presence sessions from its
// /metrics.
func (e *edgeProc) openSessions() (int64, bool) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", e.http))
	if err != nil {
		return 0, false
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "unico_edge_bridge_tracked_identifiers "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int64(f), err == nil
		}
	}
	return 0, false
}

// profileID returns the id of the profile holding id, or "".
func profileID(t *testing.T, hub *hubProc, id protocol.Identifier) string {
	t.Helper()
	var p profileJSON
	if hub.get(t, "/api/v1/profiles?identifier="+url.QueryEscape(id.String()), &p) != 200 {
		return ""
	}
	return p.ID
}

// presenceEventsOnHub returns the presence events carrying id on the
// profile that holds id.
func presenceEventsOnHub(t *testing.T, hub *hubProc, id protocol.Identifier) []protocol.Event {
	t.Helper()
	pid := profileID(t, hub, id)
	if pid == "" {
		return nil
	}
	var out []protocol.Event
	cursor := ""
	for range 100 {
		var page struct {
			Events []protocol.Event `json:"events"`
			Next   string           `json:"next"`
		}
		path := "/api/v1/profiles/" + pid + "/events?limit=1000"
		if cursor != "" {
			path += "&cursor=" + url.QueryEscape(cursor)
		}
		if code := hub.get(t, path, &page); code != 200 {
			t.Fatalf("GET %s: %d", path, code)
		}
		out = append(out, simulate.PresenceEventsOf(page.Events, id)...)
		if page.Next == "" {
			return out
		}
		cursor = page.Next
	}
	t.Fatalf("profile %s: more than 100 pages of events", pid)
	return nil
}
