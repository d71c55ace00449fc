package simulate

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unico-cdp/unico/edge/devices"
	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/internal/testkit"
	"github.com/unico-cdp/unico/protocol"
)

func TestVisits(t *testing.T) {
	const cc = "44"
	g := newGen(t, 4, 300, cc, GeneratorConfig{Mix: Mix{Presence: 1}, PresenceFrames: true})
	mp, err := protocol.NewMapper(protocol.MapOptions{DefaultCountryCode: cc,
		Rules: []protocol.IdentifierRule{{Path: "traits.beacon_id", Type: "beacon_id"}}})
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[bridge.IDKind]int{}
	macs := map[string]bool{}
	for i := range 2000 {
		var m Meta
		msg := g.AppendNext(nil, &m)
		v := m.Visit
		if v == nil || m.Kind != KindPresence || v.Person != m.Person || v.Store != m.Store {
			t.Fatalf("visit %d: meta %+v", i, m)
		}
		kinds[v.Kind]++
		p := &g.pop.Persons[v.Person]
		switch v.Kind {
		case bridge.KindBeaconID:
			if hex.EncodeToString(v.ID) != p.BeaconID || p.AppAnonID == "" {
				t.Fatalf("visit %d: beacon %x, person's %q", i, v.ID, p.BeaconID)
			}
			evs, err := mp.Decode(protocol.EndpointBatch, []byte(`{"batch":[`+string(msg)+`]}`), nil)
			if err != nil || len(evs) != 1 {
				t.Fatalf("visit %d: identify %s: %v", i, msg, err)
			}
			if d := cmp.Diff(idSet(m.Identifiers()), idSet(evs[0].Identifiers)); d != "" {
				t.Fatalf("visit %d: identifiers (-meta +mapper):\n%s", i, d)
			}
			if !evs[0].HasIdentifier("beacon_id", p.BeaconID) || evs[0].Type != protocol.TypeIdentify || evs[0].Channel != protocol.ChannelApp {
				t.Fatalf("visit %d: identify %+v", i, evs[0])
			}
		case bridge.KindMACHash:
			if len(msg) != 0 || len(m.Identifiers()) != 0 {
				t.Fatalf("visit %d without the app: message %q, identifiers %v", i, msg, m.Identifiers())
			}
			if macs[string(v.ID)] || len(v.ID) < bridge.MinIDLen {
				t.Fatalf("visit %d: MAC hash %x reused or short", i, v.ID)
			}
			macs[string(v.ID)] = true
		default:
			t.Fatalf("visit %d: kind %d", i, v.Kind)
		}
		// Entrance first and last, no zone twice in a row, every stay
		// clearly short or clearly long.
		st := v.Stays
		if len(st) < 3 || st[0].Zone != ZoneEntrance || st[len(st)-1].Zone != ZoneEntrance {
			t.Fatalf("visit %d: stays %+v", i, st)
		}
		var long int64
		for j, s := range st {
			if j > 0 && s.Zone == st[j-1].Zone || s.Zone < 1 || int(s.Zone) > NumZones {
				t.Fatalf("visit %d: stays %+v", i, st)
			}
			switch {
			case s.Dwell >= longStayMin && s.Dwell <= longStayMax:
				long++
			case s.Dwell < shortStayMin || s.Dwell > shortStayMax:
				t.Fatalf("visit %d: stay %+v neither short nor long", i, s)
			}
		}
		want := map[string]int64{bridge.EventEnter: 1, bridge.EventZoneDwell: long, bridge.EventExit: 1}
		if d := cmp.Diff(want, v.PlannedEvents()); d != "" {
			t.Fatalf("visit %d: planned events:\n%s", i, d)
		}
	}
	if kinds[bridge.KindBeaconID] < 100 || kinds[bridge.KindMACHash] < 100 {
		t.Errorf("visits by kind: %v", kinds)
	}
}

func TestFrameConfigErrors(t *testing.T) {
	ok := FrameConfig{Brokers: []string{"mqtt://127.0.0.1:1884"}}
	for _, tt := range []struct {
		name string
		edit func(c *FrameConfig)
		want string
	}{
		{"one per edge", func(c *FrameConfig) { c.Brokers = append(c.Brokers, "mqtt://h:1") }, "2 device brokers for 1 edges"},
		{"scheme", func(c *FrameConfig) { c.Brokers = []string{"http://h:1884"} }, "want mqtt://host:port"},
		{"port", func(c *FrameConfig) { c.Brokers = []string{"mqtt://h"} }, "want mqtt://host:port"},
		{"interval vs exit", func(c *FrameConfig) { c.Interval, c.ExitTimeout = time.Second, 7*time.Second }, "eighth of the exit timeout"},
		{"interval vs dwell", func(c *FrameConfig) { c.Interval, c.MinDwell = time.Second, 5*time.Second }, "a sixth of the minimum dwell"},
		{"tiny interval", func(c *FrameConfig) { c.Interval = time.Millisecond }, "at least 10ms"},
		{"rssi", func(c *FrameConfig) { c.RSSIThreshold = -120 }, "rssi threshold -120"},
		{"window", func(c *FrameConfig) { c.Window = 64 }, "window of at most 32"},
		{"credentials", func(c *FrameConfig) { c.Credentials = map[string]string{"ABC": "x"} }, `device id "ABC"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			err := c.setDefaults(1)
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want %q", err, tt.want)
			}
		})
	}
	c := ok
	if err := c.setDefaults(1); err != nil || c.Interval != DefaultFrameInterval || c.MinDwell != bridge.DefaultMinDwell || c.Window != DefaultFrameWindow {
		t.Fatalf("defaults: %v %+v", err, c)
	}
}

func TestCredentials(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCredentials(&b, 3); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCredentials(&b, "test")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3*NumZones {
		t.Fatalf("%d credentials, want %d", len(got), 3*NumZones)
	}
	for s := range 3 {
		for z := 1; z <= NumZones; z++ {
			if pw := got[SensorID(s, uint8(z)).String()]; len(pw) != 24 {
				t.Fatalf("store %d zone %d: password %q", s, z, pw)
			}
		}
	}
	if _, err := ReadCredentials(strings.NewReader("# c\n\n0011223344556677 pw extra\n"), "bad"); err == nil || !strings.Contains(err.Error(), "bad line 3") {
		t.Fatalf("bad line: %v", err)
	}
	if err := WriteCredentials(&b, 0); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("zero stores: %v", err)
	}
}

// appender collects what the device listener stores.
type appender struct {
	mu     sync.Mutex
	events []protocol.Event
}

func (a *appender) Append(_ context.Context, evs []protocol.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, evs...)
	return nil
}

func (a *appender) byName() (map[string]int64, int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := map[string]int64{}
	ids := map[string]bool{}
	for _, ev := range a.events {
		out[ev.Name]++
		ids[ev.ID] = true
	}
	return out, len(a.events) - len(ids)
}

// withIdentifier returns the stored events that carry id.
func (a *appender) withIdentifier(id protocol.Identifier) ([]protocol.Event, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []protocol.Event
	for _, ev := range a.events {
		if ev.HasIdentifier(id.Type, id.Value) {
			out = append(out, ev)
		}
	}
	return out, nil
}

func (a *appender) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.events)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestRunFrames sends visits through the edge agent's own device listener
// in process, with per-device credentials: what it stores must be what
// Run expects, event for event, and the truth must credit every presence
// event to a person.
func TestRunFrames(t *testing.T) {
	const cc = "44"
	var creds bytes.Buffer
	if err := WriteCredentials(&creds, 2); err != nil {
		t.Fatal(err)
	}
	credMap, err := ReadCredentials(&creds, "creds")
	if err != nil {
		t.Fatal(err)
	}
	const minDwell, exitTimeout = 400 * time.Millisecond, 800 * time.Millisecond
	addr := freeAddr(t)
	app := &appender{}
	dev, err := devices.New(devices.Config{ListenAddr: addr, Credentials: credMap, TickInterval: 50 * time.Millisecond,
		Bridge: bridge.Config{MinDwell: minDwell, ExitTimeout: exitTimeout}}, app, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	runDone := make(chan error, 1)
	go func() { runDone <- dev.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-runDone
	})

	edge := newEdge(t, cc)
	pop, err := NewPopulation(6, 100, PopulationOptions{CountryCode: cc, Stores: 2})
	if err != nil {
		t.Fatal(err)
	}
	g, err := NewGenerator(pop, GeneratorConfig{Seed: 6, Mix: Mix{Presence: 1}, PresenceFrames: true, Now: time.Now})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := newTestSender(t, "wk")
	// The PUBACKed frames, replayed through a bridge configured like the
	// listener's, say what must have been stored.
	x := NewPresenceExpectation(bridge.Config{MinDwell: minDwell, ExitTimeout: exitTimeout, MaxFrameDelay: exitTimeout}, minDwell/2)
	var xmu sync.Mutex
	var xerr error
	frames := &FrameConfig{Brokers: []string{"mqtt://" + addr}, Credentials: credMap, Interval: 50 * time.Millisecond,
		MinDwell: minDwell, ExitTimeout: exitTimeout, OnAcked: func(a AckedFrame) {
			xmu.Lock()
			defer xmu.Unlock()
			if _, err := x.AddFrame(PresenceRun{Edge: a.Edge}, a); err != nil && xerr == nil {
				xerr = err
			}
		}}
	run := func(g *Generator, f *FrameConfig, truth *Truth) (Summary, error) {
		return Run(t.Context(), g, RunConfig{Edges: []string{edge.URL}, Sender: s, Rate: 40, Duration: 1500 * time.Millisecond,
			Truth: truth, Frames: f}, nil)
	}

	// A wrong password is refused at once.
	bad := *frames
	bad.OnAcked = nil
	bad.Credentials = map[string]string{}
	for k := range credMap {
		bad.Credentials[k] = "wrong"
	}
	if _, err := run(g, &bad, nil); !errors.Is(err, errRefused) {
		t.Fatalf("wrong password: %v", err)
	}

	truth := NewTruth(pop)
	sum, err := run(g, frames, truth)
	if err != nil {
		t.Fatal(err)
	}
	fs := sum.Frames
	if fs == nil || !fs.Exact || fs.FramesAcked != fs.FramesSent || fs.Visits < 10 || fs.Sensors != 2*NumZones || fs.SightingsAcked == 0 {
		t.Fatalf("frames summary %+v", fs)
	}
	// Sessions close an exit timeout after their last sighting (twice that
	// for a device gone silent): wait until nothing more is stored.
	last, lastChange := -1, time.Now()
	testkit.WaitFor(t, 30*time.Second, "the listener to close the sessions", func() bool {
		if n := app.count(); n != last {
			last, lastChange = n, time.Now()
		}
		return time.Since(lastChange) > 3*exitTimeout
	})
	// Stopping the listener stores the exits of any session still open:
	// after it nothing more can come.
	cancel()
	if err := <-runDone; err != nil {
		t.Fatal(err)
	}
	runDone <- nil
	got, dups := app.byName()
	if dups != 0 {
		t.Fatalf("%d duplicate event ids among %v", dups, got)
	}
	// The stored events against the PUBACKed frames, per identifier (the
	// summary's expected counts are loadgen's estimate: its mirror times
	// sightings by PUBACK, the listener by receipt).
	xmu.Lock()
	defer xmu.Unlock()
	if xerr != nil {
		t.Fatal(xerr)
	}
	r, all, err := x.CheckPresence(app.withIdentifier, nil)
	if err != nil {
		t.Fatal(err)
	}
	if r.Failures() > 0 || r.EntersExpected == 0 {
		t.Fatalf("%d presence checks failed (%+v):\n  %s", r.Failures(), r, strings.Join(r.Mismatches, "\n  "))
	}
	if n := app.count(); n != len(all) {
		t.Errorf("%d events stored, %d presence events checked", n, len(all))
	}
	t.Logf("stored %v; loadgen estimated %v", got, fs.ExpectedEvents)
	if got[bridge.EventEnter] != got[bridge.EventExit] || got[bridge.EventZoneDwell] == 0 {
		t.Errorf("events %v", got)
	}
	var credited int64
	for _, r := range truth.Records() {
		credited += r.PresenceEvents
	}
	if credited != fs.ExpectedTotal {
		t.Errorf("truth credits %d presence events, expected %d", credited, fs.ExpectedTotal)
	}
	st := dev.Registry()
	if len(st) != 2*NumZones {
		t.Errorf("%d devices registered, want %d", len(st), 2*NumZones)
	}
}
