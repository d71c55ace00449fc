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

// gateQueue is a memQueue whose appends wait, while gated, until the gate
// is opened (or their context ends: a refused append).
type gateQueue struct {
	memQueue
	gate    chan struct{}
	waiting chan struct{} // receives once per gated append
}

func (q *gateQueue) Append(ctx context.Context, evs []protocol.Event) error {
	select {
	case <-q.gate:
	default:
		q.waiting <- struct{}{}
		select {
		case <-q.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return q.memQueue.Append(ctx, evs)
}

// TestSessionOpenerStoredBeforeLaterFrame checks that a frame whose
// sightings extend a session another device's frame opened is not
// acknowledged before that presence.enter is stored: a crash in between
// would lose the visit's enter while the frame relying on it counts as
// durable. When the opener's events are refused, the later frame is not
// acknowledged either.
func TestSessionOpenerStoredBeforeLaterFrame(t *testing.T) {
	for _, refused := range []bool{false, true} {
		q := &gateQueue{gate: make(chan struct{}), waiting: make(chan struct{}, 1)}
		d := newDevices(t, Config{AppendTimeout: time.Minute}, q)
		ctx, cancel := context.WithCancel(t.Context())
		devA, devB := bridge.DeviceID{0, 0, 0, 0, 0, 0, 0, 0xa}, bridge.DeviceID{0, 0, 0, 0, 0, 0, 0, 0xb}
		opened := make(chan error, 1)
		go func() { opened <- d.handle(ctx, TopicPrefix+devA.String()+TopicSuffix, frame(t, devA, 0, 0x61)) }()
		select {
		case <-q.waiting: // A's enter is on its way to the queue
		case <-time.After(10 * time.Second):
			t.Fatal("the opening frame's append never started")
		}
		later := make(chan error, 1)
		go func() { later <- d.handle(t.Context(), TopicPrefix+devB.String()+TopicSuffix, frame(t, devB, 0, 0x61)) }()
		// B's frame yields no event (the session is open) but must wait
		// for A's: once the bridge ran it, it must still be pending while
		// A's append is.
		ranBy := time.Now().Add(10 * time.Second)
		for ran := false; !ran; {
			if time.Now().After(ranBy) {
				t.Fatalf("refused=%v: the later frame never reached the bridge", refused)
			}
			select {
			case err := <-later:
				t.Fatalf("refused=%v: frame extending a session acknowledged (err %v) before the session's enter was stored", refused, err)
			case <-time.After(time.Millisecond):
			}
			ran = slices.ContainsFunc(d.Registry(), func(i bridge.DeviceInfo) bool { return i.DeviceID == devB.String() })
		}
		select {
		case err := <-later:
			t.Fatalf("refused=%v: frame extending a session acknowledged (err %v) before the session's enter was stored", refused, err)
		default:
		}
		if refused {
			cancel() // A's append gives up
		} else {
			close(q.gate)
		}
		deadline := time.After(10 * time.Second)
		var errA, errB error
		for range 2 {
			select {
			case errA = <-opened:
			case errB = <-later:
			case <-deadline:
				t.Fatalf("refused=%v: frames not handled", refused)
			}
		}
		if refused {
			if errA == nil || errB == nil {
				t.Errorf("refused opener: errors %v and %v, want both frames unacknowledged", errA, errB)
			}
		} else if errA != nil || errB != nil || len(q.ids()) != 1 || q.names()[0] != bridge.EventEnter {
			t.Errorf("stored opener: errors %v and %v, stored %v", errA, errB, q.names())
		}
		cancel()
	}
}
