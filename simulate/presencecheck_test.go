package simulate

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/protocol"
)

func TestFrameOfEventID(t *testing.T) {
	for _, tt := range []struct {
		id   string
		want frameRef
		ok   bool
	}{
		{"fw-0275630000080006-b6f4f6e7-67-10", frameRef{"0275630000080006", 0xb6f4f6e7, 67}, true},
		{"fw-0275630000080006-0000b007-3-0-exit-dwell", frameRef{"0275630000080006", 0xb007, 3}, true},
		{"fw-0275630000080006-zz-3-0", frameRef{}, false},
		{"order-1", frameRef{}, false},
	} {
		got, ok := frameOfEventID(tt.id)
		if got != tt.want || ok != tt.ok {
			t.Errorf("frameOfEventID(%q) = %v, %v; want %v, %v", tt.id, got, ok, tt.want, tt.ok)
		}
	}
}

// presenceFixture is one visit as two sensors report it: three stays
// (entrance, a long one in the kitchen, entrance again), each frame
// PUBACKed 5 ms after its uptime says it was sent.
func presenceFixture(t *testing.T) ([]AckedFrame, bridge.Config) {
	t.Helper()
	cfg := bridge.Config{MinDwell: time.Second, ExitTimeout: 2 * time.Second, MaxFrameDelay: 2 * time.Second}
	mac := bridge.HexBytes{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5, 6}
	t0 := time.Now().Add(-time.Hour)
	seqs := map[uint8]uint32{}
	var out []AckedFrame
	add := func(zone uint8, at time.Duration) {
		dev := SensorID(3, zone)
		f := &bridge.Frame{Version: bridge.Version, Type: bridge.FrameReport, DeviceID: dev, BootID: uint32(zone), Seq: seqs[zone],
			UptimeMS: 60_000 + uint64(at.Milliseconds()),
			Records:  []bridge.Record{{Type: bridge.RecordSighting, Sighting: bridge.Sighting{Kind: bridge.KindMACHash, ID: mac, RSSI: -50, Zone: zone}}}}
		seqs[zone]++
		out = append(out, AckedFrame{Frame: f, AckedAt: t0.Add(at + 5*time.Millisecond)})
	}
	for at := time.Duration(0); at < 400*time.Millisecond; at += 100 * time.Millisecond {
		add(ZoneEntrance, at)
	}
	for at := 700 * time.Millisecond; at < 3500*time.Millisecond; at += 100 * time.Millisecond {
		add(ZoneKitchen, at)
	}
	for at := 3800 * time.Millisecond; at < 4200*time.Millisecond; at += 100 * time.Millisecond {
		add(ZoneEntrance, at)
	}
	return out, cfg
}

// agentEvents runs frames through a bridge as an agent would, closing the
// sessions at the end.
func agentEvents(t *testing.T, frames []AckedFrame, cfg bridge.Config) []protocol.Event {
	t.Helper()
	br, err := bridge.NewBridge(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []protocol.Event
	for _, a := range frames {
		evs, err := br.Ingest(a.Frame, a.AckedAt.Add(-3*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, evs...)
	}
	return append(out, br.Flush(time.Now())...)
}

func TestCheckPresence(t *testing.T) {
	frames, cfg := presenceFixture(t)
	var log bytes.Buffer
	al := NewAckedLog(&log)
	for _, a := range frames {
		al.Add(a)
	}
	if err := al.Flush(); err != nil {
		t.Fatal(err)
	}
	read, err := ReadAckedLog(&log)
	if err != nil {
		t.Fatal(err)
	}
	if len(read) != len(frames) || read[3].Frame.Seq != frames[3].Frame.Seq || !read[3].AckedAt.Equal(frames[3].AckedAt) {
		t.Fatalf("acked log round trip: %d frames, want %d", len(read), len(frames))
	}
	x := NewPresenceExpectation(cfg, cfg.MinDwell/2)
	for _, a := range read {
		if _, err := x.Add(PresenceRun{Edge: a.Edge}, a.Frame, a.AckedAt); err != nil {
			t.Fatal(err)
		}
	}
	agent := agentEvents(t, frames, cfg)
	names := map[string]int{}
	for _, ev := range agent {
		names[ev.Name]++
	}
	if names[bridge.EventEnter] != 1 || names[bridge.EventZoneDwell] != 1 || names[bridge.EventExit] != 1 {
		t.Fatalf("fixture yields %v, want one enter, dwell and exit", names)
	}
	byName := func(evs []protocol.Event, name string) int {
		return slices.IndexFunc(evs, func(ev protocol.Event) bool { return ev.Name == name })
	}
	check := func(hub []protocol.Event) PresenceReport {
		t.Helper()
		r, all, err := x.CheckPresence(func(protocol.Identifier) ([]protocol.Event, error) { return hub, nil }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != len(slices.CompactFunc(slices.Clone(hub), func(a, b protocol.Event) bool { return a.ID == b.ID })) {
			t.Errorf("CheckPresence returned %d events, the hub holds %d", len(all), len(hub))
		}
		return r
	}
	if r := check(agent); r.Failures() != 0 || r.EntersExact != 1 || r.DwellsChecked != 1 || r.HubExits != 1 {
		t.Fatalf("the agent's own events: %+v", r)
	}

	// The same session opened by another PUBACKed frame (the agent ran a
	// later frame first) is fine; a missing enter, dwell or exit, an id
	// twice or an event of a frame never PUBACKed is not.
	other := slices.Clone(agent)
	i := byName(other, bridge.EventEnter)
	other[i].ID = "fw-" + SensorID(3, ZoneEntrance).String() + "-00000001-1-0"
	if r := check(other); r.Failures() != 0 || r.EntersOtherFrame != 1 {
		t.Errorf("enter of another PUBACKed frame: %+v", r)
	}
	// The zone change first shown by another frame of the agent (sightings
	// of two sensors whose receive order the PUBACKs do not tell) stands
	// in for the derived dwell: same zone left, as JSON brings it back.
	moved := slices.Clone(agent)
	i = byName(moved, bridge.EventZoneDwell)
	moved[i].ID = "fw-" + SensorID(3, ZoneKitchen).String() + "-00000003-2-0-dwell"
	moved[i].Properties = map[string]any{"zone_id": float64(moved[i].Properties["zone_id"].(int64)), "dwell_seconds": 2.0}
	if r := check(moved); r.Failures() != 0 || r.DwellsOtherFrame != 1 {
		t.Errorf("dwell of another PUBACKed frame: %+v", r)
	}
	for _, tt := range []struct {
		name string
		hub  func([]protocol.Event) []protocol.Event
		want func(PresenceReport) bool
	}{
		{"enter lost", func(evs []protocol.Event) []protocol.Event {
			return slices.Delete(evs, byName(evs, bridge.EventEnter), byName(evs, bridge.EventEnter)+1)
		}, func(r PresenceReport) bool { return r.EntersMissing == 1 && r.OverBound == 1 }},
		{"dwell lost", func(evs []protocol.Event) []protocol.Event {
			return slices.Delete(evs, byName(evs, bridge.EventZoneDwell), byName(evs, bridge.EventZoneDwell)+1)
		}, func(r PresenceReport) bool { return r.DwellsMissing == 1 }},
		{"exit lost", func(evs []protocol.Event) []protocol.Event {
			return slices.Delete(evs, byName(evs, bridge.EventExit), byName(evs, bridge.EventExit)+1)
		}, func(r PresenceReport) bool { return r.Unclosed == 1 }},
		{"id twice", func(evs []protocol.Event) []protocol.Event {
			return append(evs, evs[byName(evs, bridge.EventExit)])
		}, func(r PresenceReport) bool { return r.Duplicates == 1 && r.OverBound == 1 }},
		{"dwell of another zone", func(evs []protocol.Event) []protocol.Event {
			i := byName(evs, bridge.EventZoneDwell)
			evs[i].ID = "fw-" + SensorID(3, ZoneKitchen).String() + "-00000003-2-0-dwell"
			evs[i].Properties = map[string]any{"zone_id": float64(ZoneEntrance), "dwell_seconds": 2.0}
			return evs
		}, func(r PresenceReport) bool { return r.DwellsMissing == 1 && r.DwellsOtherFrame == 0 }},
		{"frame never PUBACKed", func(evs []protocol.Event) []protocol.Event {
			ev := evs[byName(evs, bridge.EventZoneDwell)]
			ev.ID = "fw-" + SensorID(3, ZoneKitchen).String() + "-00000003-999-0-dwell"
			return append(evs, ev)
		}, func(r PresenceReport) bool { return r.Unknown == 1 }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := check(tt.hub(slices.Clone(agent)))
			if !tt.want(r) || r.Failures() == 0 || len(r.Mismatches) == 0 || !strings.Contains(r.Mismatches[0], "mac_hash:") {
				t.Errorf("report %+v", r)
			}
		})
	}
}

// TestCheckPresenceRunThatMadeTheEnter checks that an enter at the hub
// counts for the run that made it, by its received_at, when a later run
// PUBACKed its frame: the first run stored the enter of sensor A's frame,
// then extended the session with sensor B's frame, PUBACKed B's and was
// killed before A's PUBACK went out; the next run PUBACKed A's resend.
// The replay of the first run derives the enter from B's frame.
func TestCheckPresenceRunThatMadeTheEnter(t *testing.T) {
	cfg := bridge.Config{MinDwell: time.Second, ExitTimeout: 2 * time.Second, MaxFrameDelay: 2 * time.Second}
	mac := bridge.HexBytes{1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6}
	t0 := time.Now().Add(-time.Hour)
	frame := func(zone uint8) *bridge.Frame {
		return &bridge.Frame{Version: bridge.Version, Type: bridge.FrameReport, DeviceID: SensorID(4, zone), BootID: 9, Seq: 6, UptimeMS: 60_000,
			Records: []bridge.Record{{Type: bridge.RecordSighting, Sighting: bridge.Sighting{Kind: bridge.KindMACHash, ID: mac, RSSI: -50, Zone: zone}}}}
	}
	a, b := frame(ZoneEntrance), frame(ZoneKitchen)
	run0, run1 := PresenceRun{}, PresenceRun{Run: 1}
	restart := t0.Add(time.Second)
	build := func(starts bool) *PresenceExpectation {
		x := NewPresenceExpectation(cfg, cfg.MinDwell/2)
		if starts {
			x.RunStarted(run0, t0)
			x.RunStarted(run1, restart)
		}
		for _, f := range []struct {
			r  PresenceRun
			f  *bridge.Frame
			at time.Time
		}{{run0, b, t0.Add(500 * time.Millisecond)}, {run1, a, restart.Add(200 * time.Millisecond)}} {
			if _, err := x.Add(f.r, f.f, f.at); err != nil {
				t.Fatal(err)
			}
		}
		return x
	}
	id := "fw-" + SensorID(4, ZoneEntrance).String() + "-00000009-6-0"
	hub := func(receivedAt time.Time) []protocol.Event {
		return []protocol.Event{{ID: id, Name: bridge.EventEnter, ReceivedAt: receivedAt}}
	}
	check := func(x *PresenceExpectation, evs []protocol.Event) PresenceReport {
		t.Helper()
		r, _, err := x.CheckPresence(func(protocol.Identifier) ([]protocol.Event, error) { return evs, nil }, []int{1})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	// Made by the first run (received before the restart): it stands in
	// for the first run's enter and is the second run's by id.
	if r := check(build(true), hub(t0.Add(300*time.Millisecond))); r.EntersMissing != 0 || r.EntersOtherFrame != 1 || r.EntersExact != 1 {
		t.Errorf("enter made by the first run: %+v", r)
	}
	// Made by the second run only: the first run's enter is missing.
	if r := check(build(true), hub(restart.Add(150*time.Millisecond))); r.EntersMissing != 1 {
		t.Errorf("enter made by the second run: %+v", r)
	}
	// Without the runs' start times only the PUBACKs count.
	if r := check(build(false), hub(t0.Add(300*time.Millisecond))); r.EntersMissing != 1 {
		t.Errorf("no run start times: %+v", r)
	}
}

// TestCheckPresenceOptionalReentry checks that a re-entry the replay
// derives from two sensors' sightings just over the exit timeout apart is
// not required when the later frame's PUBACK lagged its send by more than
// the margin: the agent, stamping with its receive time, may have seen one
// stay. With a PUBACK close to the send it is required.
func TestCheckPresenceOptionalReentry(t *testing.T) {
	cfg := bridge.Config{MinDwell: time.Second, ExitTimeout: 2 * time.Second, MaxFrameDelay: 2 * time.Second}
	mac := bridge.HexBytes{7, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6}
	t0 := time.Now().Add(-time.Hour)
	frame := func(zone uint8) *bridge.Frame {
		return &bridge.Frame{Version: bridge.Version, Type: bridge.FrameReport, DeviceID: SensorID(5, zone), BootID: 3, Seq: 1, UptimeMS: 60_000,
			Records: []bridge.Record{{Type: bridge.RecordSighting, Sighting: bridge.Sighting{Kind: bridge.KindMACHash, ID: mac, RSSI: -50, Zone: zone}}}}
	}
	first := "fw-" + SensorID(5, ZoneEntrance).String() + "-00000003-1-0"
	for _, lag := range []time.Duration{time.Second, 10 * time.Millisecond} {
		x := NewPresenceExpectation(cfg, cfg.MinDwell/2)
		acked := t0.Add(2300 * time.Millisecond)
		if _, err := x.AddFrame(PresenceRun{}, AckedFrame{Frame: frame(ZoneEntrance), AckedAt: t0, SentAt: t0}); err != nil {
			t.Fatal(err)
		}
		if _, err := x.AddFrame(PresenceRun{}, AckedFrame{Frame: frame(ZoneKitchen), AckedAt: acked, SentAt: acked.Add(-lag)}); err != nil {
			t.Fatal(err)
		}
		// The agent's events: one stay (it received the second frame
		// 1.3 s after the first), then its exit.
		hub := []protocol.Event{{ID: first, Name: bridge.EventEnter}, {ID: first + "-exit", Name: bridge.EventExit}}
		r, _, err := x.CheckPresence(func(protocol.Identifier) ([]protocol.Event, error) { return hub, nil }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if lag == time.Second && (r.Failures() != 0 || r.EntersOptionalAbsent != 1) {
			t.Errorf("PUBACK %v after the send: %+v", lag, r)
		}
		if lag < time.Second && (r.EntersMissing != 1 || r.OverBound != 1) {
			t.Errorf("PUBACK %v after the send: %+v", lag, r)
		}
	}
}

// TestCheckPresenceUncertainDwell checks that a zone-change dwell missing
// at the hub is uncertain, not missing, when the agent may have received
// the sighting that showed the change before the other sensor's last
// sighting in the previous zone (their frames' spans from send to PUBACK
// overlap) and so taken it for a late one; with spans apart it is missing.
func TestCheckPresenceUncertainDwell(t *testing.T) {
	frames, cfg := presenceFixture(t)
	agent := agentEvents(t, frames, cfg)
	i := slices.IndexFunc(agent, func(ev protocol.Event) bool { return ev.Name == bridge.EventZoneDwell })
	if i < 0 {
		t.Fatal("fixture yields no zone-change dwell")
	}
	hub := slices.Delete(slices.Clone(agent), i, i+1)
	for _, lag := range []time.Duration{0, 450 * time.Millisecond} {
		x := NewPresenceExpectation(cfg, cfg.MinDwell/2)
		for _, a := range frames {
			a.SentAt = a.AckedAt.Add(-lag)
			if _, err := x.AddFrame(PresenceRun{Edge: a.Edge}, a); err != nil {
				t.Fatal(err)
			}
		}
		r, _, err := x.CheckPresence(func(protocol.Identifier) ([]protocol.Event, error) { return hub, nil }, nil)
		if err != nil {
			t.Fatal(err)
		}
		if lag == 0 && (r.DwellsMissing != 1 || r.DwellsUncertain != 0) {
			t.Errorf("spans apart: %+v", r)
		}
		if lag > 0 && (r.DwellsMissing != 0 || r.DwellsUncertain != 1 || r.Failures() != 0) {
			t.Errorf("spans overlapping: %+v", r)
		}
	}
}
