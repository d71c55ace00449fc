package devices

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/protocol"
)

func newDevices(t *testing.T, cfg Config, q Appender) *Devices {
	t.Helper()
	cfg.ListenAddr = "127.0.0.1:0"
	d, err := New(cfg, q, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (q *memQueue) setFail(fail bool) {
	q.mu.Lock()
	q.fail = fail
	q.mu.Unlock()
}

func (q *memQueue) ids() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for _, e := range q.events {
		out = append(out, e.ID)
	}
	return out
}

// TestResentFrameAfterFailedAppend checks that a frame whose events could
// not be stored yields the same events when the device sends it again,
// also when later frames of the same device were stored in between: the
// frame counts as seen only once its events are stored.
func TestResentFrameAfterFailedAppend(t *testing.T) {
	q := &memQueue{}
	d := newDevices(t, Config{AppendTimeout: 50 * time.Millisecond}, q)
	dev := bridge.DeviceID{0, 0, 0, 0, 0, 0, 0, 0xd}
	topic := TopicPrefix + dev.String() + TopicSuffix
	first, second := frame(t, dev, 0, 0x51), frame(t, dev, 1, 0x52)

	q.setFail(true)
	if err := d.handle(t.Context(), topic, first); err == nil {
		t.Fatal("handle succeeded with a failing queue")
	}
	q.setFail(false)
	if err := d.handle(t.Context(), topic, second); err != nil {
		t.Fatal(err)
	}
	// The device resends the unacknowledged frame, twice (once more as
	// if the first PUBACK had been lost).
	for range 2 {
		if err := d.handle(t.Context(), topic, first); err != nil {
			t.Fatal(err)
		}
	}
	got := q.ids()
	want := []string{"fw-" + dev.String() + "-00000007-1-0", "fw-" + dev.String() + "-00000007-0-0"}
	if !slices.Equal(got, want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	if q.names()[1] != bridge.EventEnter {
		t.Fatalf("resent frame stored %v, want its presence.enter", q.names())
	}
}

// TestSessionsSurviveLateFrames checks that a device whose frames arrive
// in a burst after a reconnect, later than the exit timeout, does not get
// its presence session closed and opened again: sessions follow the
// device's clock, and the wall clock closes them only for a device silent
// well beyond the exit timeout.
func TestSessionsSurviveLateFrames(t *testing.T) {
	const exit = 400 * time.Millisecond
	q := &memQueue{}
	d := newDevices(t, Config{Bridge: bridge.Config{ExitTimeout: exit, MinDwell: time.Hour}}, q)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	dev := bridge.DeviceID{0, 0, 0, 0, 0, 0, 0, 0xe}
	topic := TopicPrefix + dev.String() + TopicSuffix
	id := bridge.HexBytes{0x61, 1, 2, 3, 4, 5, 6, 7}
	booted := time.Now().Add(-time.Minute)
	send := func(seq uint32, built time.Time) {
		t.Helper()
		b, err := bridge.Encode(&bridge.Frame{Version: bridge.Version, Type: bridge.FrameReport, DeviceID: dev, BootID: 9, Seq: seq,
			UptimeMS: uint64(built.Sub(booted).Milliseconds()),
			Records:  []bridge.Record{{Type: bridge.RecordSighting, Sighting: bridge.Sighting{Kind: bridge.KindBeaconID, ID: id, RSSI: -50, Zone: 1}}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.handle(t.Context(), topic, b); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Now()
	send(0, t0)
	// The device keeps seeing the beacon every 100 ms, but its frames
	// wait for a reconnect 1.5 exit timeouts long.
	var built []time.Time
	for at := t0.Add(100 * time.Millisecond); time.Since(t0) < exit*3/2; at = at.Add(100 * time.Millisecond) {
		built = append(built, at)
		time.Sleep(time.Until(at))
	}
	for i, at := range built {
		send(uint32(i+1), at)
	}
	// It reports on; then the beacon leaves.
	for i := range 3 {
		at := time.Now()
		send(uint32(len(built)+1+i), at)
		time.Sleep(100 * time.Millisecond)
	}
	waitFor(t, "presence.exit", func() bool { return slices.Contains(q.names(), bridge.EventExit) })
	var names []string
	for _, e := range func() []protocol.Event {
		q.mu.Lock()
		defer q.mu.Unlock()
		return slices.Clone(q.events)
	}() {
		names = append(names, e.Name)
	}
	if want := []string{bridge.EventEnter, bridge.EventExit}; !slices.Equal(names, want) {
		t.Fatalf("events %v, want one visit: %v", names, want)
	}
}

// TestResendOverMQTT runs the resend through the listener: no PUBACK
// while the queue fails, then the device's resend of the same bytes on a
// new connection is acknowledged with the frame's events stored.
func TestResendOverMQTT(t *testing.T) {
	q := &memQueue{fail: true}
	dev := bridge.DeviceID{0, 0, 0, 0, 0, 0, 0, 0xf}
	addr := start(t, Config{AppendTimeout: 100 * time.Millisecond}, q)
	raw := frame(t, dev, 0, 0x71)
	topic := TopicPrefix + dev.String() + TopicSuffix
	c := device(t, addr, "", "")
	if tok := c.Publish(topic, 1, false, raw); tok.WaitTimeout(time.Second) && tok.Error() == nil {
		t.Fatal("PUBACK for a frame that was not stored")
	}
	c.Disconnect(0)
	q.setFail(false)
	c2 := device(t, addr, "", "")
	if tok := c2.Publish(topic, 1, false, raw); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("resend: %v", tok.Error())
	}
	if got := q.names(); !slices.Contains(got, bridge.EventEnter) {
		t.Fatalf("events after the resend's PUBACK: %v", got)
	}
}

// TestRefusedExitsAreRetried checks that presence exits the queue refused
// at a sweep are stored at a later one.
func TestRefusedExitsAreRetried(t *testing.T) {
	q := &memQueue{}
	d := newDevices(t, Config{AppendTimeout: 20 * time.Millisecond, Bridge: bridge.Config{ExitTimeout: 100 * time.Millisecond}}, q)
	dev := bridge.DeviceID{0, 0, 0, 0, 0, 0, 0, 0x10}
	if err := d.handle(t.Context(), TopicPrefix+dev.String()+TopicSuffix, frame(t, dev, 0, 0x72)); err != nil {
		t.Fatal(err)
	}
	q.setFail(true)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	waitFor(t, "a refused exit", func() bool { return counterValue(t, d.failed) >= 2 })
	q.setFail(false)
	waitFor(t, "the exit stored", func() bool { return slices.Contains(q.names(), bridge.EventExit) })
}

func TestTickFollowsExitTimeout(t *testing.T) {
	for _, tt := range []struct{ exit, want time.Duration }{
		{0, 5 * time.Second}, {2 * time.Second, 100 * time.Millisecond}, {100 * time.Millisecond, 50 * time.Millisecond}, {time.Hour, 5 * time.Second},
	} {
		d := newDevices(t, Config{Bridge: bridge.Config{ExitTimeout: tt.exit}}, &memQueue{})
		if d.cfg.TickInterval != tt.want {
			t.Errorf("exit timeout %v: tick %v, want %v", tt.exit, d.cfg.TickInterval, tt.want)
		}
		if want := max(tt.exit, 0); want > 0 && d.cfg.Bridge.MaxFrameDelay != want {
			t.Errorf("exit timeout %v: max frame delay %v", tt.exit, d.cfg.Bridge.MaxFrameDelay)
		}
	}
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}
