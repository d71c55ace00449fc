package uplink

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"go.uber.org/goleak"

	"github.com/unico-cdp/unico/internal/brokerstop"
	"github.com/unico-cdp/unico/internal/testkit"
	"github.com/unico-cdp/unico/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	testTenant = "acme"
	testEdge   = "store-1"
)

func testLogger(t testing.TB) *slog.Logger { return testkit.Logger(t, slog.LevelInfo) }

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, timeout, what, cond)
}

// startBroker starts an in-process mochi broker on 127.0.0.1:0 that allows
// everyone, and waits until it accepts connections.
func startBroker(t testing.TB) (addr string, stop func()) {
	t.Helper()
	return startBrokerAt(t, "127.0.0.1:0", nil)
}

// startBrokerAt starts a mochi broker on addr. With ledger nil every client
// is allowed; otherwise the ledger decides. stop is idempotent and also
// runs at cleanup.
func startBrokerAt(t testing.TB, addr string, ledger *auth.Ledger) (string, func()) {
	t.Helper()
	s := mochi.New(&mochi.Options{
		Logger:       slog.New(slog.DiscardHandler),
		InlineClient: false,
	})
	var err error
	if ledger == nil {
		err = s.AddHook(new(auth.AllowHook), nil)
	} else {
		err = s.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger})
	}
	if err != nil {
		t.Fatalf("broker hook: %v", err)
	}
	ln := listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})
	// The port of a just-closed broker can take a moment to free.
	deadline := time.Now().Add(5 * time.Second)
	for {
		err = s.AddListener(ln)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
		ln = listeners.NewTCP(listeners.Config{ID: "tcp", Address: addr})
	}
	if err != nil {
		t.Fatalf("broker listen %s: %v", addr, err)
	}
	if err := s.Serve(); err != nil {
		t.Fatalf("broker serve: %v", err)
	}
	bound := ln.Address()
	waitFor(t, 5*time.Second, "broker to accept connections", func() bool {
		c, err := net.DialTimeout("tcp", bound, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	var once sync.Once
	stop := func() { once.Do(func() { _ = brokerstop.Close(s, "tcp") }) }
	t.Cleanup(stop)
	return bound, stop
}

// memSource is an in-memory Source: records have seqs 1..n, each carrying
// an event whose ID encodes its seq.
type memSource struct {
	mu      sync.Mutex
	recs    []Record // recs[i].Seq == i+1
	deleted []bool
	head    int // index of the first undeleted record
	changed chan struct{}
	acked   int // records deleted by Ack
	ackErr  error
	// gate, when set before the forwarder starts, holds every Ack until
	// it is closed (a slow disk).
	gate chan struct{}
}

func newMemSource() *memSource { return &memSource{changed: make(chan struct{})} }

func eventID(seq uint64) string { return fmt.Sprintf("ev-%09d", seq) }

func seqOf(t testing.TB, id string) uint64 {
	n, err := strconv.ParseUint(strings.TrimPrefix(id, "ev-"), 10, 64)
	if err != nil {
		t.Errorf("bad event id %q", id)
	}
	return n
}

// testEvent returns an encoded event of about 200 bytes for seq.
func testEvent(t testing.TB, seq uint64) []byte {
	e := protocol.Event{
		ID:          eventID(seq),
		Type:        protocol.TypeTrack,
		Name:        "Product Viewed",
		Channel:     protocol.ChannelPOS,
		Source:      protocol.Source{Tenant: testTenant, Edge: testEdge, Device: "pos-3"},
		Identifiers: []protocol.Identifier{{Type: protocol.IDLoyaltyID, Value: "L" + strconv.FormatUint(seq%977, 10)}},
		Properties:  map[string]any{"sku": "SKU-12345", "price": 19.9, "qty": 2},
		OccurredAt:  time.Unix(1700000000, 0).UTC(),
		ReceivedAt:  time.Unix(1700000001, 0).UTC(),
	}
	b, err := protocol.MarshalEvent(&e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// add appends n events.
func (s *memSource) add(t testing.TB, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		seq := uint64(len(s.recs) + 1)
		s.recs = append(s.recs, Record{Seq: seq, Data: testEvent(t, seq)})
		s.deleted = append(s.deleted, false)
	}
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *memSource) Read(from uint64, maxEvents, maxBytes int) ([]Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.head
	if from > 0 && int(from-1) > i {
		i = int(from - 1)
	}
	var out []Record
	bytes := 0
	for ; i < len(s.recs) && len(out) < maxEvents; i++ {
		if s.deleted[i] {
			continue
		}
		if len(out) > 0 && bytes+len(s.recs[i].Data) > maxBytes {
			break
		}
		bytes += len(s.recs[i].Data)
		out = append(out, s.recs[i])
	}
	return out, nil
}

func (s *memSource) Wait(ctx context.Context, seq uint64) error {
	for {
		s.mu.Lock()
		ok := uint64(len(s.recs)) >= seq
		ch := s.changed
		s.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-ch:
		}
	}
}

func (s *memSource) Ack(first, last uint64) error {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if first == 0 || first > last || last > uint64(len(s.recs)) {
		s.ackErr = fmt.Errorf("ack of range %d-%d outside 1-%d", first, last, len(s.recs))
		return s.ackErr
	}
	for i := first - 1; i < last; i++ {
		if !s.deleted[i] {
			s.deleted[i] = true
			s.acked++
		}
	}
	for s.head < len(s.recs) && s.deleted[s.head] {
		s.head++
	}
	return nil
}

// remaining returns the number of undeleted records and whether an Ack
// call was invalid.
func (s *memSource) remaining() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.recs) - s.acked, s.ackErr
}

func (s *memSource) isDeleted(seq uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return seq >= 1 && seq <= uint64(len(s.recs)) && s.deleted[seq-1]
}

func (s *memSource) ackedCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

// policy decides the hub's answer to the n-th batch received (n from 1);
// ok=false withholds the ack.
type policy func(n int, b *protocol.Batch) (status protocol.AckStatus, send bool)

func ackAll(int, *protocol.Batch) (protocol.AckStatus, bool) { return protocol.AckOK, true }

// responder is a test hub: a paho client subscribed to all edges' batches
// that records the events it receives and acks per its policy. It
// reconnects by itself so that it survives broker restarts.
type responder struct {
	t      testing.TB
	client mqtt.Client
	in     chan mqtt.Message
	quit   chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	policy   policy
	ackError string // Error of every ack that is not ok
	// unranged sends rejections without a range, as the hub does for a
	// batch it cannot decode.
	unranged bool
	batches  int
	seqs     []uint64 // event seqs in arrival order, duplicates included
	errs     []string
	subbed   chan struct{}
}

type responderOpts struct {
	username, password string
}

func startResponder(t testing.TB, brokerAddr string, p policy, opt ...responderOpts) *responder {
	t.Helper()
	r := &responder{
		t:      t,
		in:     make(chan mqtt.Message, 1<<16),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
		policy: p,
		subbed: make(chan struct{}, 1),
	}
	opts := mqtt.NewClientOptions().
		AddBroker("tcp://" + brokerAddr).
		SetClientID("test-hub").
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(20 * time.Millisecond).
		SetMaxReconnectInterval(100 * time.Millisecond).
		SetWriteTimeout(5 * time.Second).
		SetKeepAlive(5 * time.Second).
		SetOrderMatters(true).
		SetOnConnectHandler(func(c mqtt.Client) {
			tok := c.Subscribe(protocol.HubBatchFilter(false), 1, func(_ mqtt.Client, m mqtt.Message) {
				select {
				case r.in <- m:
				default:
					r.fail("responder buffer full")
				}
			})
			if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
				select {
				case r.subbed <- struct{}{}:
				default:
				}
			}
		})
	if len(opt) > 0 {
		opts.SetUsername(opt[0].username).SetPassword(opt[0].password)
	}
	r.client = mqtt.NewClient(opts)
	if tok := r.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("responder connect: %v", tok.Error())
	}
	r.waitSubscribed()
	go r.loop()
	t.Cleanup(r.stop)
	return r
}

func (r *responder) waitSubscribed() {
	r.t.Helper()
	select {
	case <-r.subbed:
	case <-time.After(10 * time.Second):
		r.t.Fatal("responder did not subscribe")
	}
}

func (r *responder) stop() {
	select {
	case <-r.quit:
		return
	default:
	}
	close(r.quit)
	<-r.done
	r.client.Disconnect(0)
}

func (r *responder) fail(msg string) {
	r.mu.Lock()
	r.errs = append(r.errs, msg)
	r.mu.Unlock()
}

func (r *responder) loop() {
	defer close(r.done)
	for {
		var m mqtt.Message
		select {
		case <-r.quit:
			return
		case m = <-r.in:
		}
		var b protocol.Batch
		if err := protocol.Unmarshal(m.Payload(), &b, protocol.Limits{}); err != nil {
			r.fail("decode batch: " + err.Error())
			continue
		}
		if want := protocol.BatchTopic(b.Tenant, b.EdgeID); m.Topic() != want {
			r.fail(fmt.Sprintf("batch on topic %s, want %s", m.Topic(), want))
		}
		r.mu.Lock()
		r.batches++
		n := r.batches
		for _, e := range b.Events {
			r.seqs = append(r.seqs, seqOf(r.t, e.ID))
		}
		if len(b.Events) == 0 || seqOf(r.t, b.Events[0].ID) != b.FirstSeq || seqOf(r.t, b.Events[len(b.Events)-1].ID) != b.LastSeq {
			r.errs = append(r.errs, fmt.Sprintf("batch %d-%d: events do not match the range", b.FirstSeq, b.LastSeq))
		}
		p, ackErr, unranged := r.policy, r.ackError, r.unranged
		r.mu.Unlock()
		status, send := p(n, &b)
		if !send {
			continue
		}
		ack := protocol.Ack{EdgeID: b.EdgeID, FirstSeq: b.FirstSeq, LastSeq: b.LastSeq, Status: status, Accepted: len(b.Events), AckedAt: time.Now()}
		if status != protocol.AckOK {
			ack.Error, ack.Accepted = ackErr, 0
		}
		if status == protocol.AckRejected && unranged {
			ack.FirstSeq, ack.LastSeq = 0, 0
		}
		payload, err := protocol.Marshal(&ack)
		if err != nil {
			r.fail(err.Error())
			continue
		}
		// Not waited on: the forwarder's watchdog covers a lost ack, and
		// waiting here would stall while the broker is down.
		r.client.Publish(protocol.AckTopic(b.Tenant, b.EdgeID), 1, false, payload)
	}
}

// setAckError sets the Error of the acks that are not ok, and whether
// rejections name their range.
func (r *responder) setAckError(s string, unranged bool) {
	r.mu.Lock()
	r.ackError, r.unranged = s, unranged
	r.mu.Unlock()
}

// snapshot returns the recorded seqs, batch count and errors.
func (r *responder) snapshot() (seqs []uint64, batches int, errs []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]uint64(nil), r.seqs...), r.batches, append([]string(nil), r.errs...)
}

func (r *responder) distinct() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := make(map[uint64]bool, len(r.seqs))
	for _, s := range r.seqs {
		seen[s] = true
	}
	return len(seen)
}

// checkDelivery verifies that every seq 1..n arrived and returns the number
// of duplicates. With ordered set, the first occurrences must be in seq
// order.
func (r *responder) checkDelivery(t testing.TB, n int, ordered bool) (dups int) {
	t.Helper()
	seqs, _, errs := r.snapshot()
	for _, e := range errs {
		t.Errorf("responder: %s", e)
	}
	seen := make(map[uint64]bool, n)
	var last uint64
	for _, s := range seqs {
		if seen[s] {
			dups++
			continue
		}
		seen[s] = true
		if ordered && s <= last {
			t.Errorf("seq %d first arrived after seq %d", s, last)
		}
		last = max(last, s)
	}
	for s := uint64(1); s <= uint64(n); s++ {
		if !seen[s] {
			t.Errorf("seq %d never arrived", s)
			break
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct events arrived, want %d", len(seen), n)
	}
	return dups
}

// runForwarder starts f.Run and returns a stop function that cancels it and
// waits for Run to return nil.
func runForwarder(t testing.TB, f *Forwarder) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- f.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// testConfig returns a config for a broker at addr with test-sized timings.
func testConfig(addr string) Config {
	return Config{
		BrokerURL:      "mqtt://" + addr,
		Tenant:         testTenant,
		EdgeID:         testEdge,
		MaxBatchEvents: 100,
		Window:         4,
		AckTimeout:     time.Second,
		MinBackoff:     20 * time.Millisecond,
		MaxBackoff:     200 * time.Millisecond,
		KeepAlive:      5 * time.Second,
		WriteTimeout:   5 * time.Second,
		ConnectTimeout: 5 * time.Second,
	}
}
