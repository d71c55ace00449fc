package uplink

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// hubLog records what a test hub accepted (ok), batch by batch.
type hubLog struct {
	mu       sync.Mutex
	accepted []uint64 // seqs of accepted batches in order, duplicates included
	rejected int
}

func (h *hubLog) accept(b *protocol.Batch, t testing.TB) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range b.Events {
		h.accepted = append(h.accepted, seqOf(t, e.ID))
	}
}

func (h *hubLog) reject() {
	h.mu.Lock()
	h.rejected++
	h.mu.Unlock()
}

// checkAccepted verifies that exactly the seqs 1..n not in skip were
// accepted. With ordered set (a window of one batch), the first acceptance
// of each must be in seq order: the forwarder bisects a rejected range in
// place rather than moving on and coming back. With a wider window the
// hub may accept the batches after a rejected range before its halves, as
// after a retry ack; the hub does not depend on order.
func (h *hubLog) checkAccepted(t testing.TB, n int, skip []uint64, ordered bool) {
	t.Helper()
	h.mu.Lock()
	acc := slices.Clone(h.accepted)
	h.mu.Unlock()
	seen := map[uint64]bool{}
	var first []uint64
	for _, s := range acc {
		if !seen[s] {
			seen[s] = true
			first = append(first, s)
		}
	}
	for s := uint64(1); s <= uint64(n); s++ {
		if want := !slices.Contains(skip, s); seen[s] != want {
			t.Errorf("seq %d accepted by the hub: %v, want %v", s, seen[s], want)
		}
	}
	if ordered && !slices.IsSorted(first) {
		t.Errorf("first acceptances out of seq order: %v", first)
	}
}

// TestQuarantinePoison: the hub rejects every batch holding a poison event
// and acks the rest. The events around each poison are delivered in order,
// each poison ends up in the queue's quarantine with the hub's error, and
// the queue drains.
func TestQuarantinePoison(t *testing.T) {
	const hubErr = "decode: decode batch: malformed message: msgpack: invalid code=a5 decoding time"
	for _, tt := range []struct {
		name     string
		poison   []uint64
		window   int
		unranged bool // rejections name no range, as for undecodable batches
	}{
		{"one", []uint64{437}, 4, false},
		{"several", []uint64{1, 10, 11, 250, 1000}, 4, false},
		{"window=1", []uint64{77}, 1, false},
		{"several,window=1", []uint64{1, 10, 11, 250, 1000}, 1, false},
		{"unranged", []uint64{1, 10, 11, 250, 1000}, 4, true},
		{"unranged,window=1", []uint64{437}, 1, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			addr, _ := startBroker(t)
			var hub hubLog
			poison := map[string]bool{}
			for _, s := range tt.poison {
				poison[eventID(s)] = true
			}
			r := startResponder(t, addr, func(_ int, b *protocol.Batch) (protocol.AckStatus, bool) {
				for _, e := range b.Events {
					if poison[e.ID] {
						hub.reject()
						return protocol.AckRejected, true
					}
				}
				hub.accept(b, t)
				return protocol.AckOK, true
			})
			r.setAckError(hubErr, tt.unranged)
			q := openQueue(t)
			fillQueue(t, q, 1000)
			cfg := testConfig(addr)
			cfg.Window = tt.window
			f, err := New(cfg, testLogger(t), QueueSource(q))
			if err != nil {
				t.Fatal(err)
			}
			runForwarder(t, f)
			waitFor(t, 60*time.Second, "queue drained and poison quarantined", func() bool {
				st := q.Stats()
				return st.Depth == 0 && st.QuarantineDepth == int64(len(tt.poison))
			})
			hub.checkAccepted(t, 1000, tt.poison, tt.window == 1)
			recs, _, err := q.ListQuarantined(0, 100)
			if err != nil {
				t.Fatal(err)
			}
			var got []uint64
			for _, r := range recs {
				got = append(got, r.Seq)
				if r.HubError != hubErr || r.QuarantinedAt.IsZero() {
					t.Errorf("quarantined seq %d with hub error %q at %v, want %q and a time", r.Seq, r.HubError, r.QuarantinedAt, hubErr)
				}
				var e protocol.Event
				if err := protocol.UnmarshalEvent(r.Data, &e); err != nil || e.ID != eventID(r.Seq) || r.Channel != protocol.ChannelPOS {
					t.Errorf("quarantined seq %d: event %q of channel %q (%v), want %s of pos", r.Seq, e.ID, r.Channel, err, eventID(r.Seq))
				}
			}
			if !slices.Equal(got, tt.poison) {
				t.Errorf("quarantined %v, want %v", got, tt.poison)
			}
			st := f.Stats()
			// EventsForwarded counts the events of every ok the forwarder
			// took, resends of batches acked out of order included.
			if st.Quarantined != uint64(len(tt.poison)) || st.EventsForwarded < uint64(1000-len(tt.poison)) {
				t.Errorf("stats %+v, want %d quarantined and the rest forwarded", st, len(tt.poison))
			}
			t.Logf("%d rejected answers for %d poison events", st.Rejected, len(tt.poison))
		})
	}
}

// TestTransientRejection: the hub rejects the first two batches that hold
// seq 50 and then accepts them. Nothing is quarantined and everything is
// delivered, whether the batch is bisected down to seq 50 alone or sent
// alone from the start.
func TestTransientRejection(t *testing.T) {
	for _, tt := range []struct{ events, window int }{{100, 4}, {1, 1}, {1, 4}} {
		t.Run(fmt.Sprintf("batch=%d,window=%d", tt.events, tt.window), func(t *testing.T) {
			addr, _ := startBroker(t)
			var hub hubLog
			var mu sync.Mutex
			rejects := 0
			startResponder(t, addr, func(_ int, b *protocol.Batch) (protocol.AckStatus, bool) {
				mu.Lock()
				defer mu.Unlock()
				if b.FirstSeq <= 50 && b.LastSeq >= 50 && rejects < 2 {
					rejects++
					hub.reject()
					return protocol.AckRejected, true
				}
				hub.accept(b, t)
				return protocol.AckOK, true
			})
			q := openQueue(t)
			fillQueue(t, q, 300)
			cfg := testConfig(addr)
			cfg.MaxBatchEvents, cfg.Window = tt.events, tt.window
			f, err := New(cfg, testLogger(t), QueueSource(q))
			if err != nil {
				t.Fatal(err)
			}
			runForwarder(t, f)
			waitFor(t, 60*time.Second, "queue drained", func() bool { return q.Stats().Depth == 0 })
			hub.checkAccepted(t, 300, nil, tt.window == 1)
			if st, qs := f.Stats(), q.Stats(); st.Quarantined != 0 || qs.QuarantineDepth != 0 || st.Rejected != 2 {
				t.Errorf("forwarder %+v, queue %+v: want 2 rejections and nothing quarantined", st, qs)
			}
		})
	}
}

// TestRejectEverythingQuarantinesLittle: a hub that rejects every batch
// (a wire-format change, say) must not empty the queue into the
// quarantine: after MaxQuarantineRun events in a row the forwarder keeps
// the rest and keeps trying.
func TestRejectEverythingQuarantinesLittle(t *testing.T) {
	addr, _ := startBroker(t)
	startResponder(t, addr, func(int, *protocol.Batch) (protocol.AckStatus, bool) { return protocol.AckRejected, true })
	q := openQueue(t)
	fillQueue(t, q, 300)
	cfg := testConfig(addr)
	cfg.QuarantineAfter = 1
	f, err := New(cfg, testLogger(t), QueueSource(q))
	if err != nil {
		t.Fatal(err)
	}
	runForwarder(t, f)
	waitFor(t, 60*time.Second, "the run quarantined", func() bool { return q.Stats().QuarantineDepth == MaxQuarantineRun })
	// Then at least ten more rejections of the next event alone, none of
	// them quarantining it.
	base := f.Stats().Rejected
	waitFor(t, 60*time.Second, "more rejections", func() bool { return f.Stats().Rejected >= base+10 })
	if st, qs := f.Stats(), q.Stats(); st.Quarantined != MaxQuarantineRun || qs.QuarantineDepth != MaxQuarantineRun || qs.Depth != 300-MaxQuarantineRun {
		t.Errorf("forwarder %+v, queue %+v: want %d quarantined and the rest queued", st, qs, MaxQuarantineRun)
	}
}
