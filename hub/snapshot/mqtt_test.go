package snapshot

import (
	"context"
	"fmt"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"

	"github.com/unico-cdp/unico/hub/broker"
	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/protocol"
)

const tenant = "acme"

// startBroker starts the hub's embedded broker on 127.0.0.1:0.
func startBroker(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(broker.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); b.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return ln.Addr().String()
}

func newClient(t testing.TB, addr, id string, onConnect func(mqtt.Client)) mqtt.Client {
	t.Helper()
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(20 * time.Millisecond).SetMaxReconnectInterval(100 * time.Millisecond).
		SetWriteTimeout(5 * time.Second).SetKeepAlive(5 * time.Second).SetOrderMatters(true).
		SetMaxResumePubInFlight(64)
	if onConnect != nil {
		opts.SetOnConnectHandler(onConnect)
	}
	c := mqtt.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", id, tok.Error())
	}
	return c
}

// hubConn is the hub's MQTT connection as the manager sees it.
type hubConn struct {
	c    mqtt.Client
	mu   sync.Mutex
	subs map[string]func(string, []byte)
}

func (h *hubConn) Publish(topic string, payload []byte, timeout time.Duration) error {
	tok := h.c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(timeout) {
		return fmt.Errorf("publish %s: timeout", topic)
	}
	return tok.Error()
}

func (h *hubConn) Subscribe(filter string, handler func(string, []byte)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[filter] = handler
}

// testEdge is an edge agent's snapshot side: it applies batches strictly in
// Seq order and acks the highest applied, and sends a resume message on
// every connect.
type testEdge struct {
	t    testing.TB
	addr string
	id   string

	mu    sync.Mutex
	cache *cache
	drop  func(b *protocol.SnapshotBatch) bool // drops a batch unseen
	c     mqtt.Client
	want  func(p protocol.ProfileSnapshot) bool
	hit   chan string
}

func startEdge(t testing.TB, addr, id string) *testEdge {
	e := &testEdge{t: t, addr: addr, id: id, cache: newCache()}
	e.connect()
	t.Cleanup(e.disconnect)
	return e
}

func (e *testEdge) connect() {
	ready := make(chan struct{}, 1)
	e.c = newClient(e.t, e.addr, "edge-"+e.id, func(c mqtt.Client) {
		c.Subscribe(protocol.SnapshotTopic(tenant, e.id), 1, e.onBatch).WaitTimeout(5 * time.Second)
		e.mu.Lock()
		s := e.cache.applied
		e.mu.Unlock()
		e.ack(c, s) // resume
		select {
		case ready <- struct{}{}:
		default:
		}
	})
	<-ready
}

func (e *testEdge) disconnect() {
	if e.c != nil {
		e.c.Disconnect(100)
		e.c = nil
	}
}

func (e *testEdge) ack(c mqtt.Client, s uint64) {
	b, err := protocol.Marshal(&protocol.Ack{EdgeID: e.id, FirstSeq: s, LastSeq: s, Status: protocol.AckOK})
	if err != nil {
		e.t.Error(err)
		return
	}
	c.Publish(protocol.SnapshotAckTopic(tenant, e.id), 1, false, b)
}

func (e *testEdge) onBatch(c mqtt.Client, msg mqtt.Message) {
	var b protocol.SnapshotBatch
	if err := protocol.Unmarshal(msg.Payload(), &b, protocol.Limits{}); err != nil {
		e.t.Errorf("edge %s: %v", e.id, err)
		return
	}
	e.mu.Lock()
	if e.drop != nil && e.drop(&b) {
		e.mu.Unlock()
		return
	}
	e.cache.apply(&b)
	if e.hit != nil {
		for _, p := range b.Profiles {
			if e.want(p) {
				select {
				case e.hit <- p.ProfileID:
				default:
				}
			}
		}
	}
	s := e.cache.applied
	e.mu.Unlock()
	go e.ack(c, s) // never publish and wait inside a handler
}

func (e *testEdge) ids() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cache.ids()
}

func (e *testEdge) wipe() {
	e.mu.Lock()
	e.cache = newCache()
	e.mu.Unlock()
}

// event is a POS order at edge by the person with email and loyalty id.
func event(id, edge, email, loyalty string, revenue float64, at time.Time) protocol.Event {
	e := protocol.Event{
		ID: id, Type: protocol.TypeTrack, Name: "Order Completed", Channel: protocol.ChannelPOS,
		Source:     protocol.Source{Tenant: tenant, Site: "site-" + edge, Edge: edge},
		Properties: map[string]any{"revenue": revenue},
		Traits:     map[string]any{"first_name": "N" + id},
		OccurredAt: at, ReceivedAt: at,
	}
	e.AddIdentifier(protocol.IDEmail, email)
	e.AddIdentifier(protocol.IDLoyaltyID, loyalty)
	return e
}

func commit(t testing.TB, st *store.Store, edge string, evs ...protocol.Event) {
	t.Helper()
	if _, err := st.Commit(context.Background(), &protocol.Batch{Tenant: tenant, EdgeID: edge, Events: evs}); err != nil {
		t.Fatal(err)
	}
}

// wantSet lists the profiles the store says edge should hold (site scope).
func wantSet(t testing.TB, st *store.Store, edge string) []string {
	t.Helper()
	out := []string{}
	cursor := ""
	for {
		views, page, err := st.Profiles(cursor, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range views {
			if v.Computed.Edges.Get(edge) > 0 {
				out = append(out, v.ID)
			}
		}
		if page.Next == "" {
			return out
		}
		cursor = page.Next
	}
}

type hubRig struct {
	st  *store.Store
	m   *Manager
	hub *hubConn
	bk  string
}

func startHub(t testing.TB, cfg Config) *hubRig {
	t.Helper()
	addr := startBroker(t)
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	hub := &hubConn{}
	m, err := New(cfg, st, hub, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	connectHub2(t, addr, m, hub)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return &hubRig{st: st, m: m, hub: hub, bk: addr}
}

func connectHub2(t testing.TB, addr string, m *Manager, h *hubConn) {
	h.subs = map[string]func(string, []byte){}
	m.Subscribe(h)
	ready := make(chan struct{}, 1)
	h.c = newClient(t, addr, "hub", func(c mqtt.Client) {
		h.mu.Lock()
		defer h.mu.Unlock()
		for f, fn := range h.subs {
			c.Subscribe(f, 1, func(_ mqtt.Client, msg mqtt.Message) { fn(msg.Topic(), msg.Payload()) }).WaitTimeout(5 * time.Second)
		}
		select {
		case ready <- struct{}{}:
		default:
		}
	})
	<-ready
	t.Cleanup(func() { h.c.Disconnect(100) })
}

func TestDeliveryMQTT(t *testing.T) {
	h := startHub(t, Config{AckTimeout: 300 * time.Millisecond, BatchProfiles: 20, Window: 2, HashSalt: "s"})
	base := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	// History before the edges connect: reaches them by full sync.
	var evs []protocol.Event
	for i := range 100 {
		edge := []string{"store-a", "store-b"}[i%2]
		evs = append(evs, event(fmt.Sprintf("h%03d", i), edge, fmt.Sprintf("c%03d@example.com", i), fmt.Sprintf("L%03d", i), 10, base))
	}
	commit(t, h.st, "store-a", evs...)
	a := startEdge(t, h.bk, "store-a")
	b := startEdge(t, h.bk, "store-b")
	converge := func(what string, edges ...*testEdge) {
		t.Helper()
		for _, e := range edges {
			waitFor(t, 20*time.Second, what+" "+e.id, func() bool {
				return cmp.Equal(wantSet(t, h.st, e.id), e.ids())
			})
		}
	}
	converge("full sync", a, b)

	// Live changes, with store-a dropping every third batch.
	n := 0
	a.mu.Lock()
	a.drop = func(*protocol.SnapshotBatch) bool { n++; return n%3 == 0 }
	a.mu.Unlock()
	for i := range 50 {
		commit(t, h.st, "store-a", event(fmt.Sprintf("l%03d", i), "store-a", fmt.Sprintf("n%03d@example.com", i), "", 5, base.Add(time.Minute)))
		h.m.Notify()
	}
	converge("drops resent", a, b)
	a.mu.Lock()
	a.drop = nil
	a.mu.Unlock()

	// The customer of store-b's c001 buys at store-a: store-a gets the
	// profile with hashed e-mail and its orders.
	commit(t, h.st, "store-a", event("x1", "store-a", "c001@example.com", "", 20, base.Add(2*time.Minute)))
	h.m.Notify()
	converge("cross-store", a, b)
	v, err := h.st.Lookup(protocol.Identifier{Type: protocol.IDEmail, Value: "c001@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	a.mu.Lock()
	got := a.cache.profiles[v.ID]
	a.mu.Unlock()
	if !slices.Contains(got.Identifiers, protocol.Identifier{Type: protocol.IDEmail, Value: protocol.HashIdentifier("s", "c001@example.com")}) ||
		fmt.Sprint(got.Computed["orders"]) != "2" || fmt.Sprint(got.Computed["revenue"]) != "30" {
		t.Fatalf("store-a snapshot of c001 = %+v", got)
	}

	// store-b goes offline; a merge makes one of its profiles disappear
	// (tombstone), others change; it comes back and catches up.
	b.disconnect()
	commit(t, h.st, "store-b", event("m1", "store-b", "c003@example.com", "L005", 1, base.Add(3*time.Minute)))
	for i := range 20 {
		commit(t, h.st, "store-b", event(fmt.Sprintf("o%03d", i), "store-b", fmt.Sprintf("c%03d@example.com", 2*i+1), "", 1, base.Add(4*time.Minute)))
	}
	h.m.Notify()
	b.connect()
	converge("after offline", a, b)

	// store-b's cache is wiped: a resume with 0 brings a full sync.
	b.disconnect()
	b.wipe()
	b.connect()
	converge("after wipe", a, b)
	b.mu.Lock()
	fulls := b.cache.fulls
	b.mu.Unlock()
	if fulls == 0 {
		t.Fatal("no full-sync batch after wipe")
	}
	waitFor(t, 5*time.Second, "status", func() bool {
		for _, s := range h.m.Edges() {
			if s.Outbox != 0 || s.FullSync || s.Inflight != 0 {
				return false
			}
		}
		return len(h.m.Edges()) == 2
	})
}
