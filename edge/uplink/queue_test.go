package uplink

import (
	"context"
	"testing"
	"time"

	"github.com/unico-cdp/unico/edge/queue"
	"github.com/unico-cdp/unico/protocol"
)

// openQueue opens a real queue in a temporary directory, closed at cleanup.
func openQueue(t testing.TB) *queue.Queue {
	t.Helper()
	q, err := queue.Open(queue.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := q.Close(); err != nil {
			t.Errorf("close queue: %v", err)
		}
	})
	return q
}

// fillQueue appends n events whose ids encode the seq the queue gives them.
func fillQueue(t testing.TB, q *queue.Queue, n int) {
	t.Helper()
	next := q.Stats().NextSeq
	const chunk = 1000
	events := make([]protocol.Event, 0, chunk)
	for done := 0; done < n; {
		events = events[:0]
		for i := 0; i < chunk && done+i < n; i++ {
			seq := next + uint64(done+i)
			events = append(events, protocol.Event{
				ID:          eventID(seq),
				Type:        protocol.TypeTrack,
				Name:        "Product Viewed",
				Channel:     protocol.ChannelPOS,
				Source:      protocol.Source{Tenant: testTenant, Edge: testEdge, Device: "pos-3"},
				Identifiers: []protocol.Identifier{{Type: protocol.IDLoyaltyID, Value: "L42"}},
				Properties:  map[string]any{"sku": "SKU-12345", "price": 19.9, "qty": 2},
				OccurredAt:  time.Unix(1700000000, 0).UTC(),
			})
		}
		first, err := q.AppendSeq(context.Background(), events)
		if err != nil {
			t.Fatal(err)
		}
		if want := next + uint64(done); first != want {
			t.Fatalf("queue gave seq %d, want %d", first, want)
		}
		done += len(events)
	}
}

// TestRealQueue drains 50,000 events from a real Badger queue through the
// broker; the hub acks and the queue ends empty.
func TestRealQueue(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 50,000 events to Badger")
	}
	addr, _ := startBroker(t)
	r := startResponder(t, addr, ackAll)
	q := openQueue(t)
	fillQueue(t, q, 50000)
	cfg := testConfig(addr)
	cfg.MaxBatchEvents = 0 // default 500
	cfg.Window = 0         // default 8
	cfg.AckTimeout = 10 * time.Second
	f, err := New(cfg, testLogger(t), QueueSource(q))
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitFor(t, 60*time.Second, "queue empty", func() bool { return q.Stats().Depth == 0 })
	r.checkDelivery(t, 50000, true)
	st, qs := f.Stats(), q.Stats()
	if st.EventsForwarded != 50000 || qs.Acked != 50000 {
		t.Errorf("forwarder %+v, queue acked %d: want 50000 forwarded and acked", st, qs.Acked)
	}
}
