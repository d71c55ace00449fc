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
