package uplink

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMergeSpans(t *testing.T) {
	tests := []struct {
		name string
		in   []span
		want []span
	}{
		{"empty", nil, []span{}},
		{"one", []span{{5, 9}}, []span{{5, 9}}},
		{"adjacent in order", []span{{1, 100}, {101, 200}, {201, 300}}, []span{{1, 300}}},
		{"adjacent out of order", []span{{201, 300}, {1, 100}, {101, 200}}, []span{{1, 300}}},
		{"gap stays", []span{{1, 100}, {201, 300}}, []span{{1, 100}, {201, 300}}},
		{"overlap and duplicate", []span{{1, 100}, {50, 150}, {1, 100}}, []span{{1, 150}}},
		{"contained", []span{{1, 300}, {101, 200}}, []span{{1, 300}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mergeSpans(append([]span{}, tt.in...))
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(span{})); diff != "" {
				t.Errorf("mergeSpans(%v) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// flakySource fails the first failures Ack calls and records the ranges of
// every Ack call.
type flakySource struct {
	*memSource
	mu       sync.Mutex
	failures int
	calls    []span
	block    chan struct{} // when not nil, Ack waits for it to be closed
}

var errDisk = errors.New("disk on fire")

func (s *flakySource) Ack(first, last uint64) error {
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	s.calls = append(s.calls, span{first, last})
	fail := s.failures > 0
	if fail {
		s.failures--
	}
	s.mu.Unlock()
	if fail {
		return fmt.Errorf("delete %d-%d: %w", first, last, errDisk)
	}
	return s.memSource.Ack(first, last)
}

func (s *flakySource) ackCalls() []span {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]span(nil), s.calls...)
}

// TestDeleteRetriedAfterFailure: a failing delete neither loses the acked
// range nor stops forwarding; it is retried until the source takes it.
func TestDeleteRetriedAfterFailure(t *testing.T) {
	addr, _ := startBroker(t)
	r := startResponder(t, addr, ackAll)
	src := &flakySource{memSource: newMemSource(), failures: 3}
	src.add(t, 2000)
	f, err := New(testConfig(addr), testLogger(t), src)
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitFor(t, 20*time.Second, "source drained", func() bool { n, _ := src.remaining(); return n == 0 })
	r.checkDelivery(t, 2000, false)
	if _, err := src.remaining(); err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.DeleteFailures != 3 || st.EventsForwarded != 2000 {
		t.Errorf("stats = %+v, want 3 delete failures and 2000 events forwarded", st)
	}
}

// TestDeletesMergedAndFlushed holds the source's deletes while the hub
// acks many batches: the ranges waiting are deleted with fewer Ack calls
// than batches, and stopping the forwarder deletes every range the hub
// acked before Run returns.
func TestDeletesMergedAndFlushed(t *testing.T) {
	addr, _ := startBroker(t)
	startResponder(t, addr, ackAll)
	src := &flakySource{memSource: newMemSource(), block: make(chan struct{})}
	src.add(t, 3000)
	f, err := New(testConfig(addr), testLogger(t), src)
	if err != nil {
		t.Fatal(err)
	}
	stop := runForwarder(t, f)
	// With the first delete held, the hub's acks pile up for the deleter.
	waitFor(t, 20*time.Second, "hub acks for 20 batches", func() bool { return f.Stats().EventsForwarded >= 2000 })
	close(src.block)
	stop()
	calls := src.ackCalls()
	acked := f.Stats().EventsForwarded
	if n := src.ackedCount(); uint64(n) != acked {
		t.Errorf("%d events deleted after Run returned, the hub acked %d", n, acked)
	}
	if batches := acked / 100; len(calls) >= int(batches) {
		t.Errorf("%d Ack calls for %d acked batches, want them merged: %v", len(calls), batches, calls)
	}
	if _, err := src.remaining(); err != nil {
		t.Fatal(err)
	}
}
