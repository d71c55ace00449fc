package uplink

import (
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/google/go-cmp/cmp"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unico-cdp/unico/protocol"
)

func TestNewConfig(t *testing.T) {
	valid := Config{BrokerURL: "mqtt://hub.example:1883", Tenant: "acme", EdgeID: "store-1"}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string // substring naming the field; "" for success
	}{
		{"valid", func(*Config) {}, ""},
		{"missing broker", func(c *Config) { c.BrokerURL = "" }, "BrokerURL"},
		{"bad scheme", func(c *Config) { c.BrokerURL = "http://hub:80" }, "BrokerURL"},
		{"no host", func(c *Config) { c.BrokerURL = "mqtt://:1883" }, "BrokerURL"},
		{"path", func(c *Config) { c.BrokerURL = "mqtt://hub/x" }, "BrokerURL"},
		{"bad tenant", func(c *Config) { c.Tenant = "a/b" }, "Tenant"},
		{"empty edge", func(c *Config) { c.EdgeID = "" }, "EdgeID"},
		{"negative window", func(c *Config) { c.Window = -1 }, "Window"},
		{"huge batch", func(c *Config) { c.MaxBatchEvents = protocol.MaxBatchEvents + 1 }, "MaxBatchEvents"},
		{"huge bytes", func(c *Config) { c.MaxBatchBytes = 1 << 30 }, "MaxBatchBytes"},
		{"negative ack timeout", func(c *Config) { c.AckTimeout = -time.Second }, "AckTimeout"},
		{"backoff order", func(c *Config) { c.MinBackoff, c.MaxBackoff = time.Second, time.Millisecond }, "MaxBackoff"},
		{"short keepalive", func(c *Config) { c.KeepAlive = time.Millisecond }, "KeepAlive"},
		{"ca without tls", func(c *Config) { c.CAFile = "/nonexistent" }, "CAFile"},
		{"missing ca", func(c *Config) { c.BrokerURL = "mqtts://hub"; c.CAFile = "/nonexistent/ca.pem" }, "CAFile"},
		{"cert without key", func(c *Config) { c.BrokerURL = "ssl://hub"; c.CertFile = "/x.pem" }, "CertFile"},
		{"nil subscription", func(c *Config) { c.Subscriptions = map[string]func([]byte){"a/b": nil} }, "Subscriptions"},
		{"tls insecure", func(c *Config) { c.BrokerURL = "mqtts://hub"; c.InsecureSkipVerify = true }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := valid
			tt.mod(&cfg)
			_, err := New(cfg, nil, newMemSource())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want ErrConfig naming %s", err, tt.wantErr)
			}
		})
	}
	if _, err := New(valid, nil, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("New with nil source: %v, want ErrConfig", err)
	}
}

func TestDefaultsAndBrokerURL(t *testing.T) {
	tests := []struct {
		url, wantURL, wantUser, wantPass string
		wantTLS                          bool
	}{
		{"mqtt://hub", "tcp://hub:1883", "", "", false},
		{"tcp://10.0.0.1:1884", "tcp://10.0.0.1:1884", "", "", false},
		{"mqtts://u:p%40ss@hub", "ssl://hub:8883", "u", "p@ss", true},
		{"ssl://[::1]:9000", "ssl://[::1]:9000", "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			f, err := New(Config{BrokerURL: tt.url, Tenant: "t", EdgeID: "e"}, nil, newMemSource())
			if err != nil {
				t.Fatal(err)
			}
			got := []any{f.broker.url, f.broker.username, f.broker.password, f.tlsc != nil}
			want := []any{tt.wantURL, tt.wantUser, tt.wantPass, tt.wantTLS}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("broker (-want +got):\n%s", diff)
			}
		})
	}
	f, err := New(Config{BrokerURL: "mqtt://a:b@hub", Username: "field", Password: "secret", Tenant: "t", EdgeID: "e"}, nil, newMemSource())
	if err != nil {
		t.Fatal(err)
	}
	if f.broker.username != "field" || f.broker.password != "secret" {
		t.Errorf("fields must override URL userinfo, got %q/%q", f.broker.username, f.broker.password)
	}
	c := f.cfg
	got := []any{c.ClientID, c.MaxBatchEvents, c.MaxBatchBytes, c.Window, c.AckTimeout, c.MinBackoff, c.MaxBackoff, c.KeepAlive, c.WriteTimeout, c.ConnectTimeout}
	want := []any{"unico-edge-e", 500, 256 << 10, 32, 30 * time.Second, 500 * time.Millisecond, 30 * time.Second, 30 * time.Second, 10 * time.Second, 10 * time.Second}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestBackoffBounds(t *testing.T) {
	f, err := New(Config{BrokerURL: "mqtt://hub", Tenant: "t", EdgeID: "e", MinBackoff: 100 * time.Millisecond, MaxBackoff: 3 * time.Second}, nil, newMemSource())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		attempt int
		base    time.Duration
	}{
		{0, 100 * time.Millisecond}, {1, 200 * time.Millisecond}, {4, 1600 * time.Millisecond},
		{5, 3 * time.Second}, {40, 3 * time.Second}, {1000, 3 * time.Second},
	}
	for _, tt := range tests {
		distinct := map[time.Duration]bool{}
		for range 200 {
			d := f.backoff(tt.attempt)
			if d < tt.base/2 || d > tt.base {
				t.Fatalf("backoff(%d) = %s, want in [%s, %s]", tt.attempt, d, tt.base/2, tt.base)
			}
			distinct[d] = true
		}
		if len(distinct) < 10 {
			t.Errorf("backoff(%d): only %d distinct values in 200, want jitter", tt.attempt, len(distinct))
		}
	}
}

func TestCollectors(t *testing.T) {
	f, err := New(testConfig("127.0.0.1:1"), nil, newMemSource())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	for _, c := range f.Collectors() {
		if err := reg.Register(c); err != nil {
			t.Fatal(err)
		}
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	want := []string{
		"unico_edge_batch_resends_total", "unico_edge_batches_in_flight", "unico_edge_batches_rejected_total",
		"unico_edge_batches_sent_total", "unico_edge_events_forwarded_total", "unico_edge_hub_connected",
		"unico_edge_queue_delete_failures_total", "unico_edge_uplink_reconnects_total",
	}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("metric names (-want +got):\n%s", diff)
	}
}

// TestForwardAll drains 10,000 events through a real broker to an acking
// hub: everything arrives, first occurrences in seq order, and the source
// ends empty.
func TestForwardAll(t *testing.T) {
	addr, _ := startBroker(t)
	testForwardAll(t, addr)
}

func testForwardAll(t *testing.T, addr string) {
	r := startResponder(t, addr, ackAll)
	src := newMemSource()
	src.add(t, 6000)
	f, err := New(testConfig(addr), testLogger(t), src)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	// Events appended while forwarding are picked up too.
	waitFor(t, 20*time.Second, "first events acked", func() bool { return src.ackedCount() > 0 })
	src.add(t, 4000)
	waitFor(t, 30*time.Second, "source drained", func() bool { n, _ := src.remaining(); return n == 0 })
	if _, err := src.remaining(); err != nil {
		t.Fatal(err)
	}
	r.checkDelivery(t, 10000, true)
	st := f.Stats()
	if !st.Connected || st.EventsForwarded != 10000 || st.LastAckAt.IsZero() || st.Rejected != 0 {
		t.Errorf("stats = %+v, want connected, 10000 forwarded, an ack time, none rejected", st)
	}
	if st.BatchesSent < 100 {
		t.Errorf("BatchesSent = %d, want >= 100 with 100 events per batch", st.BatchesSent)
	}
	waitFor(t, 5*time.Second, "window empty", func() bool { return f.Stats().InFlight == 0 })
}

// TestWithheldAcks: a hub that does not ack gets no events deleted; the
// watchdog resends after AckTimeout and the hub tolerates the duplicates.
func TestWithheldAcks(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for ack timeouts")
	}
	addr, _ := startBroker(t)
	cfg := testConfig(addr)
	cfg.AckTimeout = 300 * time.Millisecond
	// Withhold acks for the first three windows' worth of batches.
	withhold := 3 * cfg.Window
	r := startResponder(t, addr, func(n int, _ *protocol.Batch) (protocol.AckStatus, bool) {
		return protocol.AckOK, n > withhold
	})
	src := newMemSource()
	src.add(t, 2000)
	f, err := New(cfg, testLogger(t), src)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitFor(t, 20*time.Second, "resends while acks are withheld", func() bool {
		_, n, _ := r.snapshot()
		return n >= withhold
	})
	// The forwarder may be sending the (withhold+1)th batch right now,
	// but nothing was acked before it.
	if st := f.Stats(); st.Resends < uint64(2*cfg.Window) || st.Reconnects < 2 {
		t.Errorf("stats = %+v, want >= %d resends and >= 2 reconnects", st, 2*cfg.Window)
	}
	seqs, _, _ := r.snapshot()
	if got := distinctOf(seqs); got > cfg.Window*cfg.MaxBatchEvents+cfg.MaxBatchEvents {
		t.Errorf("%d distinct events reached the hub without acks, want at most about one window", got)
	}
	waitFor(t, 30*time.Second, "source drained", func() bool { n, _ := src.remaining(); return n == 0 })
	dups := r.checkDelivery(t, 2000, false)
	if dups < 2*cfg.Window*cfg.MaxBatchEvents {
		t.Errorf("%d duplicates, want the resent windows (>= %d)", dups, 2*cfg.Window*cfg.MaxBatchEvents)
	}
}

func distinctOf(seqs []uint64) int {
	m := map[uint64]bool{}
	for _, s := range seqs {
		m[s] = true
	}
	return len(m)
}

// TestNothingDeletedWithoutAck checks the source directly while the hub
// never acks.
func TestNothingDeletedWithoutAck(t *testing.T) {
	addr, _ := startBroker(t)
	cfg := testConfig(addr)
	cfg.AckTimeout = 200 * time.Millisecond
	r := startResponder(t, addr, func(int, *protocol.Batch) (protocol.AckStatus, bool) { return "", false })
	src := newMemSource()
	src.add(t, 1000)
	f, err := New(cfg, testLogger(t), src)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitFor(t, 20*time.Second, "two resend rounds", func() bool { _, n, _ := r.snapshot(); return n >= 3*cfg.Window })
	if n, _ := src.remaining(); n != 1000 {
		t.Errorf("%d events left in the source, want all 1000: nothing may be deleted without an ack", n)
	}
	if st := f.Stats(); st.EventsForwarded != 0 || !st.LastAckAt.IsZero() {
		t.Errorf("stats = %+v, want nothing forwarded", st)
	}
}

// TestBrokerRestart closes the broker while batches are in flight and
// starts a new one on the same address: forwarding resumes and every event
// arrives.
func TestBrokerRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a broker")
	}
	addr, stop := startBroker(t)
	var pause atomic.Bool
	r := startResponder(t, addr, func(n int, _ *protocol.Batch) (protocol.AckStatus, bool) {
		return protocol.AckOK, !pause.Load()
	})
	src := newMemSource()
	src.add(t, 10000)
	cfg := testConfig(addr)
	f, err := New(cfg, testLogger(t), src)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitFor(t, 20*time.Second, "3000 events at the hub", func() bool { return r.distinct() >= 3000 })
	pause.Store(true)
	waitFor(t, 20*time.Second, "a full window in flight", func() bool { return f.Stats().InFlight == cfg.Window })
	before := src.ackedCount()
	stop()
	waitFor(t, 20*time.Second, "forwarder to notice the broker is gone", func() bool { return !f.Stats().Connected })
	reconnects := f.Stats().Reconnects
	startBrokerAt(t, addr, nil)
	r.waitSubscribed()
	pause.Store(false)
	waitFor(t, 30*time.Second, "source drained", func() bool { n, _ := src.remaining(); return n == 0 })
	r.checkDelivery(t, 10000, false)
	st := f.Stats()
	if st.Reconnects <= reconnects || st.Resends == 0 || before >= 10000 {
		t.Errorf("stats = %+v (acked before restart %d), want reconnects and resends after the restart", st, before)
	}
}

// TestRetryAcks: every batch is first answered "retry"; the forwarder
// resends each after a backoff and nothing is deleted before its ok.
func TestRetryAcks(t *testing.T) {
	addr, _ := startBroker(t)
	var mu sync.Mutex
	answered := map[uint64]bool{}
	var premature atomic.Int64 // retry answers for events already deleted
	src := newMemSource()
	r := startResponder(t, addr, func(n int, b *protocol.Batch) (protocol.AckStatus, bool) {
		mu.Lock()
		defer mu.Unlock()
		if !answered[b.FirstSeq] {
			answered[b.FirstSeq] = true
			if src.isDeleted(b.FirstSeq) {
				premature.Add(1)
			}
			return protocol.AckRetry, true
		}
		return protocol.AckOK, true
	})
	src.add(t, 1000)
	cfg := testConfig(addr)
	f, err := New(cfg, testLogger(t), src)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitFor(t, 30*time.Second, "source drained", func() bool { n, _ := src.remaining(); return n == 0 })
	if _, err := src.remaining(); err != nil {
		t.Fatal(err)
	}
	r.checkDelivery(t, 1000, false)
	st := f.Stats()
	if st.Resends < 10 || st.EventsForwarded != 1000 || premature.Load() != 0 {
		t.Errorf("stats = %+v, want >= 10 resends (one per batch) and 1000 forwarded", st)
	}
}

// TestRejectedKeepsEvents: a rejected batch is counted, kept and resent; it
// is never skipped.
func TestRejectedKeepsEvents(t *testing.T) {
	addr, _ := startBroker(t)
	var rejects atomic.Int64
	r := startResponder(t, addr, func(n int, b *protocol.Batch) (protocol.AckStatus, bool) {
		if b.FirstSeq == 201 && rejects.Load() < 3 {
			rejects.Add(1)
			return protocol.AckRejected, true
		}
		return protocol.AckOK, true
	})
	src := newMemSource()
	src.add(t, 500)
	cfg := testConfig(addr)
	f, err := New(cfg, testLogger(t), src)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitFor(t, 30*time.Second, "source drained", func() bool { n, _ := src.remaining(); return n == 0 })
	r.checkDelivery(t, 500, false)
	if st := f.Stats(); st.Rejected != 3 || st.EventsForwarded != 500 {
		t.Errorf("stats = %+v, want 3 rejected and all 500 forwarded", st)
	}
}

func authLedger() *auth.Ledger {
	return &auth.Ledger{Auth: auth.AuthRules{
		{Username: "edge-store-1", Password: "s3cret", Allow: true},
		{Username: "hub", Password: "hubpass", Allow: true},
	}}
}

// TestAuth connects with credentials from the URL and from the fields.
func TestAuth(t *testing.T) {
	addr, _ := startBrokerAt(t, "127.0.0.1:0", authLedger())
	r := startResponder(t, addr, ackAll, responderOpts{"hub", "hubpass"})
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"url userinfo", func(c *Config) { c.BrokerURL = "mqtt://edge-store-1:s3cret@" + addr }},
		{"fields", func(c *Config) {
			c.BrokerURL = "tcp://wrong:wrong@" + addr
			c.Username = "edge-store-1"
			c.Password = "s3cret"
		}},
	}
	total := 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := newMemSource()
			src.add(t, 300)
			cfg := testConfig(addr)
			tt.mod(&cfg)
			f, err := New(cfg, testLogger(t), src)
			if err != nil {
				t.Fatal(err)
			}
			stop := runForwarder(t, f)
			waitFor(t, 20*time.Second, "source drained", func() bool { n, _ := src.remaining(); return n == 0 })
			stop()
			total += 300
			if st := f.Stats(); st.EventsForwarded != 300 || st.Reconnects != 0 {
				t.Errorf("stats = %+v, want 300 forwarded without reconnects", st)
			}
		})
	}
	if got := r.distinct(); got != 300 {
		t.Errorf("hub saw %d distinct seqs, want 300 (both edges send seqs 1-300)", got)
	}
}

// TestWrongPassword: the forwarder retries with backoff, never connects,
// sends nothing and does not panic; it stops cleanly.
func TestWrongPassword(t *testing.T) {
	addr, _ := startBrokerAt(t, "127.0.0.1:0", authLedger())
	src := newMemSource()
	src.add(t, 10)
	cfg := testConfig(addr)
	cfg.BrokerURL = "mqtt://edge-store-1:wrong@" + addr
	f, err := New(cfg, testLogger(t), src)
	if err != nil {
		t.Fatal(err)
	}
	var sawConnected atomic.Bool
	stop := runForwarder(t, f)
	start := time.Now()
	waitFor(t, 20*time.Second, "three reconnect attempts", func() bool {
		if f.Stats().Connected {
			sawConnected.Store(true)
		}
		return f.Stats().Reconnects >= 3
	})
	elapsed := time.Since(start)
	stop()
	st := f.Stats()
	if sawConnected.Load() || st.Connected || st.BatchesSent != 0 {
		t.Errorf("stats = %+v, want never connected and nothing sent", st)
	}
	// Three backoffs of at least MinBackoff/2, 2*MinBackoff/2, 4*MinBackoff/2.
	if min := 7 * cfg.MinBackoff / 2; elapsed < min {
		t.Errorf("3 reconnects took %s, want >= %s of backoff", elapsed, min)
	}
	if n, _ := src.remaining(); n != 10 {
		t.Errorf("%d events left, want 10", n)
	}
}

// TestSubscriptions: extra topics are subscribed on the same connection.
func TestSubscriptions(t *testing.T) {
	addr, _ := startBroker(t)
	got := make(chan []byte, 1)
	cfg := testConfig(addr)
	cmdTopic := protocol.CommandTopic(testTenant, testEdge)
	cfg.Subscriptions = map[string]func([]byte){cmdTopic: func(p []byte) {
		select {
		case got <- p:
		default:
		}
	}}
	f, err := New(cfg, testLogger(t), newMemSource())
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitFor(t, 10*time.Second, "connected", func() bool { return f.Stats().Connected })
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("cmd-pub").SetWriteTimeout(5 * time.Second))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer c.Disconnect(0)
	deadline := time.After(10 * time.Second)
	for {
		c.Publish(cmdTopic, 1, false, []byte("erase")).WaitTimeout(5 * time.Second)
		select {
		case p := <-got:
			if string(p) != "erase" {
				t.Fatalf("payload %q", p)
			}
			return
		case <-deadline:
			t.Fatal("subscription handler never called")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// TestAckedAheadNotResent: the hub withholds the ack of one batch and acks
// the ones sent after it, and the queue is slow to delete acked events.
// After the ack timeout the forwarder reconnects and sends the unacked batch
// again, but not the batches after it that the hub has acked already, even
// though they are still queued; each event counts as forwarded once.
func TestAckedAheadNotResent(t *testing.T) {
	addr, _ := startBroker(t)
	var withheld atomic.Bool
	r := startResponder(t, addr, func(n int, b *protocol.Batch) (protocol.AckStatus, bool) {
		if b.FirstSeq == 201 && withheld.CompareAndSwap(false, true) {
			return protocol.AckOK, false
		}
		return protocol.AckOK, true
	})
	src := newMemSource()
	src.add(t, 500)
	src.gate = make(chan struct{})
	f, err := New(testConfig(addr), testLogger(t), src)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	// The withheld batch, sent again after the reconnect, is acked.
	waitFor(t, 30*time.Second, "the withheld batch acked", func() bool {
		return f.Stats().Reconnects > 0 && f.Stats().EventsForwarded >= 500
	})
	close(src.gate)
	waitFor(t, 30*time.Second, "source drained", func() bool { n, _ := src.remaining(); return n == 0 })
	dups := r.checkDelivery(t, 500, false)
	if st := f.Stats(); st.EventsForwarded != 500 {
		t.Errorf("stats = %+v, want 500 forwarded", st)
	}
	if dups != 100 {
		t.Errorf("hub received %d duplicate events, want 100 (the batch whose ack it withheld)", dups)
	}
}
