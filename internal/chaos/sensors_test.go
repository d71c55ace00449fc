package main

import (
	"testing"
	"time"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/simulate"
)

// TestSensorLedgerRuns checks that frames are credited to the run of the
// agent their connection reached, each run replayed from a fresh bridge:
// a session open when an agent was killed opens again in the next run.
func TestSensorLedgerRuns(t *testing.T) {
	t0 := time.Now()
	l := newSensorLedger(2, t0)
	dev := simulate.SensorID(0, 1)
	beacon := bridge.HexBytes{1, 2, 3, 4, 5, 6, 7, 8}
	frame := func(seq uint32) *bridge.Frame {
		return &bridge.Frame{Version: bridge.Version, Type: bridge.FrameReport, DeviceID: dev, BootID: 5, Seq: seq, UptimeMS: 60_000 + uint64(seq)*100,
			Records: []bridge.Record{{Type: bridge.RecordSighting, Sighting: bridge.Sighting{Kind: bridge.KindBeaconID, ID: beacon, RSSI: -50, Zone: 1}}}}
	}
	armed := l.arm(0, 1<<30) // no such process
	l.onAcked(simulate.AckedFrame{Edge: 0, Frame: frame(0), AckedAt: t0.Add(100 * time.Millisecond), ConnectedAt: t0.Add(time.Millisecond)})
	select {
	case <-armed:
	default:
		t.Fatal("a frame that opened a session did not fire the armed kill")
	}
	l.onAcked(simulate.AckedFrame{Edge: 0, Frame: frame(1), AckedAt: t0.Add(200 * time.Millisecond), ConnectedAt: t0.Add(time.Millisecond)})
	l.restarted(0, t0.Add(time.Second))
	// Acknowledged after the restart on the old connection: still run 0.
	l.onAcked(simulate.AckedFrame{Edge: 0, Frame: frame(2), AckedAt: t0.Add(1100 * time.Millisecond), ConnectedAt: t0.Add(time.Millisecond)})
	l.onAcked(simulate.AckedFrame{Edge: 0, Frame: frame(3), AckedAt: t0.Add(1500 * time.Millisecond), ConnectedAt: t0.Add(1200 * time.Millisecond)})
	x, kills, err := l.expect()
	if err != nil {
		t.Fatal(err)
	}
	enters := x.Enters((&simulate.Visit{Kind: bridge.KindBeaconID, ID: beacon}).Identifier())
	run0, run1 := enters[simulate.PresenceRun{Edge: 0, Run: 0}], enters[simulate.PresenceRun{Edge: 0, Run: 1}]
	if len(enters) != 2 || len(run0) != 1 || run0[0] != "fw-"+dev.String()+"-00000005-0-0" || len(run1) != 1 || run1[0] != "fw-"+dev.String()+"-00000005-3-0" {
		t.Fatalf("enters by run: %v", enters)
	}
	if x.Frames() != 4 || kills[0] != 1 || kills[1] != 0 {
		t.Fatalf("frames %d, kills %v", x.Frames(), kills)
	}
}
