package queue_test

import (
	"context"
	"flag"
	"fmt"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/unico-cdp/unico/edge/queue"
)

// model is the in-memory reference: queued records by seq.
type model struct {
	recs    map[uint64]modelRec
	next    uint64
	dropped uint64
}

type modelRec struct {
	ch   string
	data []byte
}

func (m *model) sorted() []uint64 {
	out := make([]uint64, 0, len(m.recs))
	for s := range m.recs {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func (m *model) bytes() int64 {
	var n int64
	for _, r := range m.recs {
		n += queue.RecordSize(len(r.data), r.ch)
	}
	return n
}

// TestQueueModel runs random sequences of Append, Read, Ack and reopen, with
// a small quota and an iot drop policy, against the model.
func TestQueueModel(t *testing.T) {
	if f := flag.Lookup("rapid.checks"); f != nil && f.Value.String() == "100" {
		checks := "25"
		if testing.Short() {
			checks = "8"
		}
		flag.Set("rapid.checks", checks)
		defer flag.Set("rapid.checks", "100")
	}
	recSize := queue.RecordSize(len(encoded(t, event("pos", 0))), "pos")
	rapid.Check(t, func(rt *rapid.T) {
		opts := queue.Options{
			Dir:        t.TempDir(),
			QuotaBytes: 30 * recSize,
			Overflow:   map[string]queue.OverflowPolicy{"iot": queue.OverflowDropOldest},
		}
		q, err := queue.Open(opts)
		if err != nil {
			rt.Fatal(err)
		}
		defer func() { q.Close() }()
		m := &model{recs: map[uint64]modelRec{}, next: 1}
		n := 0
		rt.Repeat(map[string]func(*rapid.T){
			"append": func(rt *rapid.T) {
				k := rapid.IntRange(1, 6).Draw(rt, "k")
				ch := rapid.SampledFrom([]string{"pos", "iot"}).Draw(rt, "ch")
				evs := events(ch, n, k)
				n += k
				err := q.Append(context.Background(), evs)
				need := m.bytes() + int64(k)*recSize - opts.QuotaBytes
				if need <= 0 {
					if err != nil {
						rt.Fatalf("append under quota: %v", err)
					}
				} else {
					var victims []uint64
					var freed int64
					if ch == "iot" {
						for _, s := range m.sorted() {
							if freed >= need {
								break
							}
							if m.recs[s].ch == "iot" {
								victims = append(victims, s)
								freed += recSize
							}
						}
					}
					if freed < need {
						if err == nil {
							rt.Fatalf("append over quota succeeded (need %d)", need)
						}
						return
					}
					if err != nil {
						rt.Fatalf("append with drop: %v", err)
					}
					for _, s := range victims {
						delete(m.recs, s)
						m.dropped++
					}
				}
				for i := range evs {
					m.recs[m.next] = modelRec{ch, encoded(t, evs[i])}
					m.next++
				}
			},
			"read": func(rt *rapid.T) {
				from := rapid.Uint64Range(0, m.next+1).Draw(rt, "from")
				max := rapid.IntRange(1, 10).Draw(rt, "max")
				recs, err := q.Read(from, max, 0)
				if err != nil {
					rt.Fatal(err)
				}
				var want, got []uint64
				for _, s := range m.sorted() {
					if s >= from && len(want) < max {
						want = append(want, s)
					}
				}
				for _, r := range recs {
					got = append(got, r.Seq)
					if diff := cmp.Diff(m.recs[r.Seq].data, r.Data); diff != "" {
						rt.Fatalf("seq %d data (-want +got):\n%s", r.Seq, diff)
					}
				}
				if diff := cmp.Diff(want, got); diff != "" {
					rt.Fatalf("Read(%d, %d) (-want +got):\n%s", from, max, diff)
				}
			},
			"ack": func(rt *rapid.T) {
				first := rapid.Uint64Range(0, m.next+1).Draw(rt, "first")
				last := rapid.Uint64Range(first, first+8).Draw(rt, "last")
				if err := q.Ack(first, last); err != nil {
					rt.Fatal(err)
				}
				for s := first; s <= last; s++ {
					delete(m.recs, s)
				}
			},
			"reopen": func(rt *rapid.T) {
				if err := q.Close(); err != nil {
					rt.Fatal(err)
				}
				q, err = queue.Open(opts)
				if err != nil {
					rt.Fatal(err)
				}
				m.dropped = 0
			},
			"": func(rt *rapid.T) {
				st := q.Stats()
				head := m.next
				if s := m.sorted(); len(s) > 0 {
					head = s[0]
				}
				want := fmt.Sprintf("depth=%d bytes=%d head=%d next=%d dropped=%d", len(m.recs), m.bytes(), head, m.next, m.dropped)
				got := fmt.Sprintf("depth=%d bytes=%d head=%d next=%d dropped=%d", st.Depth, st.Bytes, st.HeadSeq, st.NextSeq, st.Dropped["iot"])
				if want != got {
					rt.Fatalf("stats: got %s, want %s", got, want)
				}
				if got := q.ChannelIndexCount("iot"); got != m.countChannel("iot") {
					rt.Fatalf("iot index covers %d, model has %d", got, m.countChannel("iot"))
				}
			},
		})
	})
}

func (m *model) countChannel(ch string) uint64 {
	var n uint64
	for _, r := range m.recs {
		if r.ch == ch {
			n++
		}
	}
	return n
}
