package queue_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"

	"github.com/unico-cdp/unico/edge/queue"
	"github.com/unico-cdp/unico/protocol"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	if os.Getenv(quarantineChildEnv) != "" {
		os.Exit(runQuarantineChild())
	}
	goleak.VerifyTestMain(m)
}

var baseTime = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

// event builds an event of about 250 encoded bytes whose encoding is
// deterministic (a single-entry map) and of the same length for every n.
func event(ch string, n int) protocol.Event {
	at := baseTime.Add(time.Duration(n)*time.Millisecond + time.Nanosecond)
	return protocol.Event{
		ID:      fmt.Sprintf("evt-%s-%08d-0123456789abcdef", ch, n),
		Type:    protocol.TypeTrack,
		Name:    "Product Viewed",
		Channel: ch,
		Source:  protocol.Source{Tenant: "acme", Site: "store-042", Edge: "edge-042-a", Device: "pos-7"},
		Identifiers: []protocol.Identifier{
			{Type: protocol.IDLoyaltyID, Value: fmt.Sprintf("L%09d", n)},
			{Type: protocol.IDAnonymousID, Value: fmt.Sprintf("anon-%012d", n)},
		},
		Properties: map[string]any{"sku": "SKU-12345-XL/blue/size-42"},
		OccurredAt: at,
		ReceivedAt: at,
	}
}

func events(ch string, from, n int) []protocol.Event {
	evs := make([]protocol.Event, n)
	for i := range evs {
		evs[i] = event(ch, from+i)
	}
	return evs
}

func encoded(t testing.TB, e protocol.Event) []byte {
	t.Helper()
	b, err := protocol.MarshalEvent(&e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fixedClock is a settable clock.
type fixedClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fixedClock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fixedClock) Set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

func open(t testing.TB, opts queue.Options) *queue.Queue {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	q, err := queue.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func closeQ(t testing.TB, q *queue.Queue) {
	t.Helper()
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
}

func seqs(recs []queue.Record) []uint64 {
	var out []uint64
	for _, r := range recs {
		out = append(out, r.Seq)
	}
	return out
}

func span(a, b uint64) []uint64 {
	var out []uint64
	for s := a; s <= b; s++ {
		out = append(out, s)
	}
	return out
}

func TestAppendReadAck(t *testing.T) {
	type ack struct{ first, last uint64 }
	tests := []struct {
		name      string
		batches   []int // events per Append
		acks      []ack
		from      uint64
		maxEvents int
		want      []uint64
		wantDepth int64
		wantHead  uint64
	}{
		{name: "empty", from: 0, maxEvents: 10, wantHead: 1},
		{name: "one batch", batches: []int{5}, maxEvents: 10, want: span(1, 5), wantDepth: 5, wantHead: 1},
		{name: "limit", batches: []int{5, 5}, maxEvents: 3, want: span(1, 3), wantDepth: 10, wantHead: 1},
		{name: "from inside", batches: []int{10}, from: 4, maxEvents: 3, want: span(4, 6), wantDepth: 10, wantHead: 1},
		{name: "ack head", batches: []int{10}, acks: []ack{{1, 4}}, maxEvents: 100, want: span(5, 10), wantDepth: 6, wantHead: 5},
		{name: "from below head", batches: []int{10}, acks: []ack{{1, 4}}, from: 2, maxEvents: 2, want: span(5, 6), wantDepth: 6, wantHead: 5},
		{name: "ack all", batches: []int{3, 3}, acks: []ack{{1, 6}}, maxEvents: 10, wantHead: 7},
		{name: "ack twice", batches: []int{6}, acks: []ack{{1, 3}, {1, 3}, {2, 3}}, maxEvents: 10, want: span(4, 6), wantDepth: 3, wantHead: 4},
		{name: "ack beyond next", batches: []int{3}, acks: []ack{{2, 1000}}, maxEvents: 10, want: []uint64{1}, wantDepth: 1, wantHead: 1},
		{name: "ack middle", batches: []int{6}, acks: []ack{{3, 4}}, maxEvents: 10, want: []uint64{1, 2, 5, 6}, wantDepth: 4, wantHead: 1},
		{name: "inverted range", batches: []int{3}, acks: []ack{{3, 1}}, maxEvents: 10, want: span(1, 3), wantDepth: 3, wantHead: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := open(t, queue.Options{})
			defer closeQ(t, q)
			n := 0
			var all []protocol.Event
			for _, b := range tt.batches {
				evs := events("pos", n, b)
				n += b
				all = append(all, evs...)
				if err := q.Append(t.Context(), evs); err != nil {
					t.Fatal(err)
				}
			}
			for _, a := range tt.acks {
				if err := q.Ack(a.first, a.last); err != nil {
					t.Fatal(err)
				}
			}
			recs, err := q.Read(tt.from, tt.maxEvents, 0)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, seqs(recs)); diff != "" {
				t.Errorf("seqs (-want +got):\n%s", diff)
			}
			for _, r := range recs {
				if diff := cmp.Diff(encoded(t, all[r.Seq-1]), r.Data); diff != "" {
					t.Errorf("seq %d data (-want +got):\n%s", r.Seq, diff)
				}
				if r.Channel != "pos" {
					t.Errorf("seq %d channel %q", r.Seq, r.Channel)
				}
			}
			st := q.Stats()
			if st.Depth != tt.wantDepth || st.HeadSeq != tt.wantHead || st.NextSeq != uint64(n)+1 {
				t.Errorf("stats depth=%d head=%d next=%d, want %d %d %d", st.Depth, st.HeadSeq, st.NextSeq, tt.wantDepth, tt.wantHead, n+1)
			}
			if (st.Depth == 0) != (st.Bytes == 0) || (st.Depth == 0) != st.OldestReceivedAt.IsZero() {
				t.Errorf("stats inconsistent: %+v", st)
			}
		})
	}
}

func TestReadMaxBytes(t *testing.T) {
	q := open(t, queue.Options{})
	defer closeQ(t, q)
	if err := q.Append(t.Context(), events("pos", 0, 10)); err != nil {
		t.Fatal(err)
	}
	size := len(encoded(t, event("pos", 0)))
	tests := []struct {
		name     string
		maxBytes int
		want     int
	}{
		{"smaller than one record still returns one", 1, 1},
		{"exactly three", 3 * size, 3},
		{"three and a half", 3*size + size/2, 3},
		{"unlimited default", 0, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, err := q.Read(0, 100, tt.maxBytes)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != tt.want {
				t.Errorf("got %d records, want %d", len(recs), tt.want)
			}
		})
	}
}

func TestOutOfOrderAcks(t *testing.T) {
	clock := &fixedClock{t: baseTime}
	q := open(t, queue.Options{Now: clock.Now})
	defer closeQ(t, q)
	for i := range 5 { // seqs 10i+1 .. 10i+10, received at baseTime+i s
		clock.Set(baseTime.Add(time.Duration(i) * time.Second))
		if err := q.Append(t.Context(), events("pos", i*10, 10)); err != nil {
			t.Fatal(err)
		}
	}
	steps := []struct {
		first, last uint64
		head        uint64
		depth       int64
		oldest      time.Duration
	}{
		{21, 30, 1, 40, 0},
		{11, 20, 1, 30, 0},
		{41, 50, 1, 20, 0},
		{1, 10, 31, 10, 3 * time.Second},
		{31, 35, 36, 5, 3 * time.Second},
		{36, 40, 51, 0, -1},
	}
	for _, s := range steps {
		if err := q.Ack(s.first, s.last); err != nil {
			t.Fatal(err)
		}
		st := q.Stats()
		wantOldest := time.Time{}
		if s.oldest >= 0 {
			wantOldest = baseTime.Add(s.oldest)
		}
		if st.HeadSeq != s.head || st.Depth != s.depth || !st.OldestReceivedAt.Equal(wantOldest) {
			t.Fatalf("after ack %d-%d: head=%d depth=%d oldest=%v, want %d %d %v",
				s.first, s.last, st.HeadSeq, st.Depth, st.OldestReceivedAt, s.head, s.depth, wantOldest)
		}
		recs, err := q.Read(0, 100, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != int(s.depth) || (len(recs) > 0 && recs[0].Seq != s.head) {
			t.Fatalf("after ack %d-%d: read %v", s.first, s.last, seqs(recs))
		}
	}
	if st := q.Stats(); st.Acked != 50 || st.Bytes != 0 {
		t.Errorf("acked=%d bytes=%d, want 50 0", st.Acked, st.Bytes)
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	clock := &fixedClock{t: baseTime}
	opts := queue.Options{Dir: dir, Now: clock.Now, Overflow: map[string]queue.OverflowPolicy{"iot": queue.OverflowDropOldest}}
	q := open(t, opts)
	if err := q.Append(t.Context(), events("pos", 0, 10)); err != nil {
		t.Fatal(err)
	}
	clock.Set(baseTime.Add(time.Minute))
	if err := q.Append(t.Context(), events("iot", 10, 10)); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(1, 12); err != nil { // head moves into the second batch
		t.Fatal(err)
	}
	if err := q.Ack(15, 16); err != nil {
		t.Fatal(err)
	}
	before := q.Stats()
	wantRecs, err := q.Read(0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	closeQ(t, q)

	q = open(t, opts)
	after := q.Stats()
	cmpStats := cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) })
	ignore := func(s queue.Stats) queue.Stats {
		s.Appended, s.Acked, s.Commits, s.Dropped = 0, 0, 0, nil
		return s
	}
	if diff := cmp.Diff(ignore(before), ignore(after), cmpStats); diff != "" {
		t.Errorf("stats after reopen (-before +after):\n%s", diff)
	}
	if got := q.ChannelIndexCount("iot"); got != 6 {
		t.Errorf("iot index covers %d seqs, want 6", got)
	}
	gotRecs, err := q.Read(0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantRecs, gotRecs, cmpStats); diff != "" {
		t.Errorf("records after reopen (-want +got):\n%s", diff)
	}
	// Seqs continue after a full drain, never reused.
	if err := q.Ack(0, 1000); err != nil {
		t.Fatal(err)
	}
	closeQ(t, q)
	q = open(t, opts)
	defer closeQ(t, q)
	if st := q.Stats(); st.NextSeq != 21 || st.HeadSeq != 21 || st.Depth != 0 || st.Bytes != 0 || !st.OldestReceivedAt.IsZero() {
		t.Fatalf("after drain and reopen: %+v", st)
	}
	if err := q.Append(t.Context(), events("pos", 20, 1)); err != nil {
		t.Fatal(err)
	}
	recs, err := q.Read(0, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{21}, seqs(recs)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestQuotaFull(t *testing.T) {
	size := queue.RecordSize(len(encoded(t, event("pos", 0))), "pos")
	q := open(t, queue.Options{QuotaBytes: 10*size + size/2})
	defer closeQ(t, q)
	if err := q.Append(t.Context(), events("pos", 0, 8)); err != nil {
		t.Fatal(err)
	}
	err := q.Append(t.Context(), events("pos", 8, 3))
	if !errors.Is(err, queue.ErrFull) {
		t.Fatalf("append over quota: %v, want ErrFull", err)
	}
	st := q.Stats()
	if st.Depth != 8 || st.NextSeq != 9 || st.Bytes != 8*size {
		t.Fatalf("after ErrFull: depth=%d next=%d bytes=%d, want 8 9 %d", st.Depth, st.NextSeq, st.Bytes, 8*size)
	}
	recs, err := q.Read(0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 8 {
		t.Fatalf("stored %d events, want 8", len(recs))
	}
	// Exactly filling up works; acking makes room again.
	if err := q.Append(t.Context(), events("pos", 8, 2)); err != nil {
		t.Fatal(err)
	}
	if err := q.Append(t.Context(), events("pos", 10, 1)); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("got %v, want ErrFull", err)
	}
	if err := q.Ack(1, 1); err != nil {
		t.Fatal(err)
	}
	if err := q.Append(t.Context(), events("pos", 10, 1)); err != nil {
		t.Fatal(err)
	}
}

func TestDropOldest(t *testing.T) {
	size := queue.RecordSize(len(encoded(t, event("iot", 0))), "iot")
	posSize := queue.RecordSize(len(encoded(t, event("pos", 0))), "pos")
	q := open(t, queue.Options{
		QuotaBytes: 10 * size,
		Overflow:   map[string]queue.OverflowPolicy{"iot": queue.OverflowDropOldest},
	})
	defer closeQ(t, q)
	// pos 1-2, iot 3-6, pos 7, iot 8-9: 9 records, under quota.
	for _, b := range [][]protocol.Event{events("pos", 0, 2), events("iot", 2, 4), events("pos", 6, 1), events("iot", 7, 2)} {
		if err := q.Append(t.Context(), b); err != nil {
			t.Fatal(err)
		}
	}
	// A pos event over the quota is rejected: pos is never dropped and
	// pos events cannot drop iot events.
	if err := q.Append(t.Context(), events("pos", 9, 2)); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("pos over quota: %v, want ErrFull", err)
	}
	// Three iot events: the oldest iot events (3, 4) make room.
	if err := q.Append(t.Context(), events("iot", 9, 3)); err != nil {
		t.Fatal(err)
	}
	recs, err := q.Read(0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []uint64{1, 2, 5, 6, 7, 8, 9, 10, 11, 12}
	if size != posSize {
		t.Fatalf("test assumes equal sizes, got iot %d pos %d", size, posSize)
	}
	if diff := cmp.Diff(want, seqs(recs)); diff != "" {
		t.Errorf("seqs after drop (-want +got):\n%s", diff)
	}
	st := q.Stats()
	if diff := cmp.Diff(map[string]uint64{"iot": 2}, st.Dropped); diff != "" {
		t.Errorf("dropped (-want +got):\n%s", diff)
	}
	if st.Depth != 10 || st.Bytes != 10*size || st.HeadSeq != 1 {
		t.Errorf("stats %+v", st)
	}
	// Acking the pos head, then dropping iot events reaching the head.
	if err := q.Ack(1, 2); err != nil {
		t.Fatal(err)
	}
	if err := q.Append(t.Context(), events("iot", 12, 4)); err != nil {
		t.Fatal(err)
	}
	st = q.Stats()
	if st.HeadSeq != 7 || st.Depth != 10 || st.Dropped["iot"] != 4 {
		t.Errorf("after second drop: head=%d depth=%d dropped=%v", st.HeadSeq, st.Depth, st.Dropped)
	}
	// More iot than all iot events can free, with pos filling the rest.
	if err := q.Append(t.Context(), events("iot", 20, 10)); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("iot larger than droppable: %v, want ErrFull", err)
	}
	// Mixed batch with a pos event: rejected, nothing dropped.
	mixed := append(events("iot", 30, 1), event("pos", 31))
	if err := q.Append(t.Context(), mixed); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("mixed batch: %v, want ErrFull", err)
	}
	if got := q.Stats(); got.Dropped["iot"] != 4 || got.Depth != 10 {
		t.Errorf("failed appends changed the queue: %+v", got)
	}
	if got := q.ChannelIndexCount("iot"); got != 9 {
		t.Errorf("iot index covers %d, want 9", got)
	}
}

func TestWait(t *testing.T) {
	q := open(t, queue.Options{})
	defer closeQ(t, q)
	t.Run("ready", func(t *testing.T) {
		if err := q.Append(t.Context(), events("pos", 0, 1)); err != nil {
			t.Fatal(err)
		}
		if err := q.Wait(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("wakes on append", func(t *testing.T) {
		done := make(chan error, 1)
		go func() { done <- q.Wait(t.Context(), 2) }()
		select {
		case err := <-done:
			t.Fatalf("Wait returned %v before the append", err)
		default:
		}
		if err := q.Append(t.Context(), events("pos", 1, 1)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Wait did not wake up")
		}
	})
	t.Run("ctx cancel", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- q.Wait(ctx, 100) }()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v, want context.Canceled", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Wait ignored cancel")
		}
	})
}

func TestWaitClose(t *testing.T) {
	q := open(t, queue.Options{})
	done := make(chan error, 1)
	go func() { done <- q.Wait(context.Background(), 5) }()
	closeQ(t, q)
	select {
	case err := <-done:
		if !errors.Is(err, queue.ErrClosed) {
			t.Fatalf("got %v, want ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return on Close")
	}
}

func TestCloseDuringAppends(t *testing.T) {
	dir := t.TempDir()
	q := open(t, queue.Options{Dir: dir})
	type result struct {
		evs []protocol.Event
		err error
	}
	var mu sync.Mutex
	var results []result
	var wg sync.WaitGroup
	started := make(chan struct{}, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				evs := events(fmt.Sprintf("g%d", g), i*10, 10)
				err := q.Append(context.Background(), evs)
				mu.Lock()
				results = append(results, result{evs, err})
				mu.Unlock()
				if i == 2 {
					started <- struct{}{}
				}
				if err != nil {
					return
				}
			}
		})
	}
	for range 8 {
		<-started
	}
	closeQ(t, q)
	wg.Wait()
	for _, call := range []struct {
		name string
		err  error
	}{
		{"Append", q.Append(t.Context(), events("pos", 0, 1))},
		{"Ack", q.Ack(1, 1)},
		{"Wait", q.Wait(t.Context(), 1<<40)},
		{"Close", q.Close()},
	} {
		if !errors.Is(call.err, queue.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", call.name, call.err)
		}
	}
	if _, err := q.Read(0, 1, 0); !errors.Is(err, queue.ErrClosed) {
		t.Errorf("Read after Close: %v, want ErrClosed", err)
	}
	q = open(t, queue.Options{Dir: dir})
	defer closeQ(t, q)
	stored := map[string][]byte{}
	for from := uint64(0); ; {
		recs, err := q.Read(from, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, r := range recs {
			var e protocol.Event
			if err := protocol.UnmarshalEvent(r.Data, &e); err != nil {
				t.Fatal(err)
			}
			stored[e.ID] = r.Data
		}
		from = recs[len(recs)-1].Seq + 1
	}
	ok := 0
	for _, r := range results {
		switch {
		case r.err == nil:
			ok++
			for _, e := range r.evs {
				if diff := cmp.Diff(encoded(t, e), stored[e.ID]); diff != "" {
					t.Fatalf("acknowledged event %s lost or changed (-want +got):\n%s", e.ID, diff)
				}
			}
		case !errors.Is(r.err, queue.ErrClosed):
			t.Errorf("append failed with %v, want nil or ErrClosed", r.err)
		}
	}
	if ok < 24 {
		t.Errorf("only %d appends succeeded", ok)
	}
}

func TestCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	q := open(t, queue.Options{Dir: dir})
	if err := q.Append(t.Context(), events("pos", 0, 3)); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{4, 5} {
		if err := q.PutRaw(seq, []byte{0xff, 1, 2}); err != nil {
			t.Fatal(err)
		}
	}
	closeQ(t, q)
	q = open(t, queue.Options{Dir: dir})
	defer closeQ(t, q)
	if err := q.Append(t.Context(), events("pos", 3, 2)); err != nil {
		t.Fatal(err)
	}
	if err := q.Ack(1, 3); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.HeadSeq != 4 || st.Depth != 4 {
		t.Fatalf("before read: %+v", st)
	}
	recs, err := q.Read(0, 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]uint64{6, 7}, seqs(recs)); diff != "" {
		t.Errorf("seqs (-want +got):\n%s", diff)
	}
	st := q.Stats()
	if st.Corrupt != 2 || st.HeadSeq != 6 || st.Depth != 2 {
		t.Errorf("after read: corrupt=%d head=%d depth=%d, want 2 6 2", st.Corrupt, st.HeadSeq, st.Depth)
	}
	// Reading again does not count them again.
	if _, err := q.Read(0, 100, 0); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Corrupt != 2 {
		t.Errorf("corrupt counted again: %d", st.Corrupt)
	}
}

func TestOpenErrors(t *testing.T) {
	tests := []struct {
		name string
		opts queue.Options
		want string
	}{
		{"no dir", queue.Options{}, "Dir"},
		{"negative quota", queue.Options{Dir: t.TempDir(), QuotaBytes: -1}, "QuotaBytes"},
		{"bad policy", queue.Options{Dir: t.TempDir(), Overflow: map[string]queue.OverflowPolicy{"iot": "drop_newest"}}, "Overflow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, err := queue.Open(tt.opts)
			if err == nil {
				q.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not name %s", err, tt.want)
			}
		})
	}
}

func TestEventTooLarge(t *testing.T) {
	q := open(t, queue.Options{})
	defer closeQ(t, q)
	e := event("pos", 0)
	e.Properties["blob"] = strings.Repeat("x", queue.MaxEventBytes)
	if err := q.Append(t.Context(), []protocol.Event{event("pos", 1), e}); !errors.Is(err, queue.ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	if st := q.Stats(); st.Depth != 0 {
		t.Errorf("depth %d, want 0", st.Depth)
	}
}
