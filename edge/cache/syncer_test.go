package cache

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/unico-cdp/unico/edge/uplink"
	"github.com/unico-cdp/unico/internal/brokerstop"
	"github.com/unico-cdp/unico/protocol"
)

const (
	testTenant = "acme"
	testEdge   = "store-1"
)

// startBroker starts an in-process mochi broker on addr ("127.0.0.1:0" for
// a free port) and waits until it accepts connections. stop is idempotent
// and also runs at cleanup.
func startBroker(t *testing.T, addr string) (string, func()) {
	t.Helper()
	s := mochi.New(&mochi.Options{Logger: slog.New(slog.DiscardHandler)})
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	var ln *listeners.TCP
	var err error
	// The port of a just-closed broker can take a moment to free.
	deadline := time.Now().Add(5 * time.Second)
	for {
		ln = listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})
		if err = s.AddListener(ln); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("broker listen %s: %v", addr, err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	bound := ln.Address()
	waitFor(t, 5*time.Second, "broker", func() bool {
		c, err := net.DialTimeout("tcp", bound, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	var once sync.Once
	stop := func() { once.Do(func() { _ = brokerstop.Close(s, "tcp") }) }
	t.Cleanup(stop)
	return bound, stop
}

// emptySource is an uplink.Source with no events.
type emptySource struct{}

func (emptySource) Read(uint64, int, int) ([]uplink.Record, error) { return nil, nil }
func (emptySource) Wait(ctx context.Context, _ uint64) error {
	<-ctx.Done()
	return ctx.Err()
}
func (emptySource) Ack(uint64, uint64) error { return nil }

// testHub is a paho client playing the hub: it publishes snapshot batches
// and collects the edge's snapshot acks.
type testHub struct {
	t    *testing.T
	c    paho.Client
	acks chan protocol.Ack
	last uint64 // seq of the last ack seen
}

func newTestHub(t *testing.T, addr string, acks chan protocol.Ack) *testHub {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("test-hub").
		SetAutoReconnect(false).SetCleanSession(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("hub connect: %v", tok.Error())
	}
	tok := c.Subscribe(protocol.SnapshotAckTopic(testTenant, testEdge), 1, func(_ paho.Client, m paho.Message) {
		var a protocol.Ack
		if err := protocol.Unmarshal(m.Payload(), &a, protocol.Limits{}); err != nil {
			t.Errorf("undecodable ack: %v", err)
			return
		}
		acks <- a
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("hub subscribe: %v", tok.Error())
	}
	h := &testHub{t: t, c: c, acks: acks}
	t.Cleanup(func() { c.Disconnect(0) })
	return h
}

func (h *testHub) send(b *protocol.SnapshotBatch) {
	h.t.Helper()
	p, err := protocol.Marshal(b)
	if err != nil {
		h.t.Fatal(err)
	}
	h.sendRaw(p)
}

func (h *testHub) sendRaw(p []byte) {
	h.t.Helper()
	tok := h.c.Publish(protocol.SnapshotTopic(testTenant, testEdge), 1, false, p)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		h.t.Fatalf("hub publish: %v", tok.Error())
	}
}

// nextAck waits for the next ack of a new seq and checks it is want
// (status ok, or resume for the message sent on a connect).
// Repeats of the last acked seq (a resume ack racing an explicit one) are
// legitimate and skipped.
func (h *testHub) nextAck(want uint64, what string) {
	h.t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		select {
		case a := <-h.acks:
			if a.LastSeq == h.last && want != h.last {
				continue
			}
			if a.EdgeID != testEdge || a.FirstSeq != want || a.LastSeq != want || (a.Status != protocol.AckOK && a.Status != protocol.AckResume) {
				h.t.Fatalf("%s: ack %+v, want seq %d ok from %s", what, a, want, testEdge)
			}
			h.last = want
			return
		case <-timeout:
			h.t.Fatalf("%s: no ack (want seq %d)", what, want)
		}
	}
}

func TestSyncerAgainstBroker(t *testing.T) {
	addr, stopBroker := startBroker(t, "127.0.0.1:0")
	c := openTest(t, "", nil)

	var fwd *uplink.Forwarder
	s, err := NewSyncer(c, SyncerConfig{Tenant: testTenant, EdgeID: testEdge,
		Publish: func(topic string, p []byte, d time.Duration) error { return fwd.Publish(topic, p, d) }}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	fwd, err = uplink.New(uplink.Config{
		BrokerURL: "mqtt://" + addr, Tenant: testTenant, EdgeID: testEdge,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, ConnectTimeout: 2 * time.Second,
		Subscriptions: map[string]func([]byte){s.Topic(): s.Handle},
		OnConnect:     s.Connected,
	}, testLogger(t), emptySource{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = fwd.Run(ctx) }()
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	acks := make(chan protocol.Ack, 64)
	hub := newTestHub(t, addr, acks)
	// The edge's resume ack on connect may race the hub's subscribe; wait
	// until the edge is subscribed, then ask for a fresh resume.
	waitFor(t, 10*time.Second, "edge connected", func() bool { return fwd.Stats().Connected })
	s.Connected()
	hub.nextAck(0, "resume on an empty cache")

	hub.send(batch(1, prof("p1", "loyalty_id:L1")))
	hub.nextAck(1, "in order")
	hub.send(batch(1, prof("p1", "loyalty_id:L1")))
	hub.nextAck(1, "duplicate is re-acked")
	hub.send(batch(3, prof("p3", "loyalty_id:L3")))
	hub.sendRaw([]byte("garbage"))
	hub.send(batch(2, prof("p2", "loyalty_id:L2"), tomb("p1")))
	hub.nextAck(2, "after a gap and garbage, the next in order")
	select {
	case a := <-acks:
		if a.LastSeq != 2 {
			t.Fatalf("unexpected ack for a gap or garbage: %+v", a)
		}
	default:
	}
	if _, _, err := c.Lookup("loyalty_id", "L1"); err != ErrNotFound {
		t.Fatalf("tombstoned profile: %v", err)
	}
	ig := c.Stats().Ignored
	if ig[ReasonGap] != 1 || ig[ReasonDecode] != 1 || ig[ReasonDuplicate] != 1 {
		t.Fatalf("ignored = %v", ig)
	}

	// Broker restart: the edge reconnects and announces where to resume.
	stopBroker()
	waitFor(t, 10*time.Second, "edge disconnected", func() bool { return !fwd.Stats().Connected })
	hub.c.Disconnect(0)
	startBroker(t, addr)
	hub = newTestHub(t, addr, acks)
	// The hub's subscription may come after the edge's resume ack: a
	// second connect (OnConnect again) is then needed; tolerate both.
	waitFor(t, 10*time.Second, "edge reconnected", func() bool { return fwd.Stats().Connected })
	deadline := time.After(20 * time.Second)
	for got := false; !got; {
		select {
		case a := <-acks:
			if a.LastSeq != 2 {
				t.Fatalf("resume ack %+v, want seq 2", a)
			}
			got = true
		case <-time.After(500 * time.Millisecond):
			s.Connected() // the resume raced the hub's subscribe
		case <-deadline:
			t.Fatal("no resume ack after reconnect")
		}
	}
	hub.last = 2
	hub.send(batch(3, prof("p3", "loyalty_id:L3")))
	hub.nextAck(3, "resumed")
	if p, _, err := c.Lookup("loyalty_id", "L3"); err != nil || p.ProfileID != "p3" {
		t.Fatalf("Lookup after resume: %v %v", p, err)
	}
	// The hub may see the ack before Publish has returned to the syncer.
	waitFor(t, 10*time.Second, "syncer stats", func() bool { st := s.Stats(); return st.AcksSent >= 5 && st.LastAckSeq == 3 })
}

func TestSyncerDropsWhenFull(t *testing.T) {
	c := openTest(t, "", nil)
	s, err := NewSyncer(c, SyncerConfig{Tenant: testTenant, EdgeID: testEdge, Buffer: 2,
		Publish: func(string, []byte, time.Duration) error { return uplink.ErrNotConnected }}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		s.Handle([]byte("x"))
	}
	if st := s.Stats(); st.Received != 5 || st.Dropped != 3 {
		t.Fatalf("stats %+v, want 5 received, 3 dropped", st)
	}
	if n := c.Stats().Ignored[ReasonOverflow]; n != 3 {
		t.Fatalf("overflow ignored = %d", n)
	}
}

func TestNewSyncerConfig(t *testing.T) {
	c := openTest(t, "", nil)
	pub := func(string, []byte, time.Duration) error { return nil }
	tests := []struct {
		name string
		cfg  SyncerConfig
		ok   bool
	}{
		{"defaults", SyncerConfig{Tenant: "t", EdgeID: "e", Publish: pub}, true},
		{"no edge", SyncerConfig{Tenant: "t", Publish: pub}, false},
		{"bad tenant", SyncerConfig{Tenant: "a/b", EdgeID: "e", Publish: pub}, false},
		{"no publish", SyncerConfig{Tenant: "t", EdgeID: "e"}, false},
		{"buffer too big", SyncerConfig{Tenant: "t", EdgeID: "e", Publish: pub, Buffer: 1 << 20}, false},
		{"negative timeout", SyncerConfig{Tenant: "t", EdgeID: "e", Publish: pub, PublishTimeout: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSyncer(c, tt.cfg, nil)
			if (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}
