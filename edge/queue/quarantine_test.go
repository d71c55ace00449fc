package queue_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unico-cdp/unico/edge/queue"
	"github.com/unico-cdp/unico/protocol"
)

// idsOf decodes the event ids of queued records.
func idsOf(t testing.TB, recs []queue.Record) []string {
	t.Helper()
	var out []string
	for _, r := range recs {
		var e protocol.Event
		if err := protocol.UnmarshalEvent(r.Data, &e); err != nil {
			t.Fatalf("seq %d: %v", r.Seq, err)
		}
		out = append(out, e.ID)
	}
	return out
}

func readAll(t testing.TB, q *queue.Queue) []queue.Record {
	t.Helper()
	var all []queue.Record
	for from := uint64(0); ; {
		recs, err := q.Read(from, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return all
		}
		all = append(all, recs...)
		from = recs[len(recs)-1].Seq + 1
	}
}

func listAll(t testing.TB, q *queue.Queue) []queue.QuarantinedRecord {
	t.Helper()
	var all []queue.QuarantinedRecord
	for from := uint64(0); ; {
		recs, next, err := q.ListQuarantined(from, 2)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
		if next == 0 {
			return all
		}
		if next <= from {
			t.Fatalf("list cursor went from %d to %d", from, next)
		}
		from = next
	}
}

func TestQuarantineMoveAndReopen(t *testing.T) {
	dir := t.TempDir()
	clock := &fixedClock{t: baseTime}
	q := open(t, queue.Options{Dir: dir, Now: clock.Now})
	if err := q.Append(t.Context(), events("pos", 1, 10)); err != nil {
		t.Fatal(err)
	}
	before := q.Stats()
	clock.Set(baseTime.Add(time.Hour))
	for _, seq := range []uint64{1, 5} {
		ok, err := q.Quarantine(seq, "decode: bad event")
		if err != nil || !ok {
			t.Fatalf("Quarantine(%d) = %v, %v", seq, ok, err)
		}
	}
	// Not queued: already quarantined, never appended.
	for _, seq := range []uint64{5, 11, 0} {
		if ok, err := q.Quarantine(seq, "x"); ok || err != nil {
			t.Errorf("Quarantine(%d) = %v, %v, want false, nil", seq, ok, err)
		}
	}
	check := func(q *queue.Queue, when string) {
		t.Helper()
		st := q.Stats()
		if st.Depth != 8 || st.QuarantineDepth != 2 || st.HeadSeq != 2 || st.NextSeq != 11 {
			t.Errorf("%s: stats %+v, want depth 8, 2 quarantined, head 2, next 11", when, st)
		}
		// The quarantine value carries the error and a timestamp more.
		extra := 2 * int64(8+2+len("decode: bad event"))
		if got := st.Bytes + st.QuarantineBytes; got != before.Bytes+extra {
			t.Errorf("%s: bytes %d + quarantined %d = %d, want %d", when, st.Bytes, st.QuarantineBytes, got, before.Bytes+extra)
		}
		if got, want := seqs(readAll(t, q)), []uint64{2, 3, 4, 6, 7, 8, 9, 10}; !cmp.Equal(got, want) {
			t.Errorf("%s: queued seqs %v, want %v", when, got, want)
		}
		recs := listAll(t, q)
		if len(recs) != 2 {
			t.Fatalf("%s: %d quarantined, want 2", when, len(recs))
		}
		for i, n := range []int{1, 5} {
			r := recs[i]
			e := event("pos", n)
			if r.Seq != uint64(n) || r.Channel != "pos" || r.HubError != "decode: bad event" ||
				!r.ReceivedAt.Equal(baseTime) || !r.QuarantinedAt.Equal(baseTime.Add(time.Hour)) || !bytes.Equal(r.Data, encoded(t, e)) {
				t.Errorf("%s: quarantined %+v, want seq %d of channel pos with its bytes and times", when, r, n)
			}
		}
	}
	check(q, "open")
	closeQ(t, q)
	q = open(t, queue.Options{Dir: dir})
	defer closeQ(t, q)
	check(q, "reopened")
	if err := q.Ack(1, 10); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Depth != 0 || st.HeadSeq != 11 || st.QuarantineDepth != 2 {
		t.Errorf("after acking everything queued: %+v, want empty queue, head 11, quarantine kept", st)
	}
}

func TestQuarantineLongErrorIsCut(t *testing.T) {
	q := open(t, queue.Options{})
	defer closeQ(t, q)
	if err := q.Append(t.Context(), events("pos", 1, 1)); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", queue.MaxQuarantineErrorBytes)
	if ok, err := q.Quarantine(1, long); !ok || err != nil {
		t.Fatalf("Quarantine = %v, %v", ok, err)
	}
	r := listAll(t, q)[0]
	if len(r.HubError) > queue.MaxQuarantineErrorBytes || !strings.HasPrefix(long, r.HubError) || len(r.HubError) < queue.MaxQuarantineErrorBytes-1 {
		t.Errorf("hub error of %d bytes, want %s cut to at most %d whole runes", len(r.HubError), "é…", queue.MaxQuarantineErrorBytes)
	}
}

func TestQuarantineCountsAgainstQuota(t *testing.T) {
	size := queue.RecordSize(len(encoded(t, event("pos", 1))), "pos")
	// Room for ten queued events and the quarantine header of one.
	q := open(t, queue.Options{QuotaBytes: 10*size + 32})
	defer closeQ(t, q)
	if err := q.Append(t.Context(), events("pos", 1, 10)); err != nil {
		t.Fatal(err)
	}
	if ok, err := q.Quarantine(3, "e"); !ok || err != nil {
		t.Fatalf("Quarantine = %v, %v", ok, err)
	}
	if err := q.Ack(1, 10); err != nil {
		t.Fatal(err)
	}
	// Nine events fit beside the quarantined one; a tenth does not.
	if err := q.Append(t.Context(), events("pos", 20, 9)); err != nil {
		t.Fatalf("append beside the quarantine: %v", err)
	}
	if err := q.Append(t.Context(), events("pos", 30, 1)); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("append past the quota with a quarantined event = %v, want ErrFull", err)
	}
	if err := q.DiscardQuarantined(3); err != nil {
		t.Fatal(err)
	}
	if err := q.Append(t.Context(), events("pos", 30, 1)); err != nil {
		t.Fatalf("append after the discard: %v", err)
	}
	st := q.Stats()
	if st.QuarantineDepth != 0 || st.QuarantineBytes != 0 || st.Discarded != 1 || st.Quarantined != 1 {
		t.Errorf("stats %+v, want an empty quarantine, 1 quarantined and 1 discarded", st)
	}
	if err := q.DiscardQuarantined(3); !errors.Is(err, queue.ErrNotQuarantined) {
		t.Errorf("second discard = %v, want ErrNotQuarantined", err)
	}
}

func TestRetryQuarantined(t *testing.T) {
	dir := t.TempDir()
	q := open(t, queue.Options{Dir: dir, Overflow: map[string]queue.OverflowPolicy{"iot": queue.OverflowDropOldest}})
	evs := events("iot", 1, 10)
	if err := q.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{3, 5, 7, 9} {
		if ok, err := q.Quarantine(seq, "rejected"); !ok || err != nil {
			t.Fatalf("Quarantine(%d) = %v, %v", seq, ok, err)
		}
	}
	if n := q.ChannelIndexCount("iot"); n != 6 {
		t.Errorf("drop index covers %d events, want the 6 queued", n)
	}
	if _, _, err := q.RetryQuarantined(4); !errors.Is(err, queue.ErrNotQuarantined) {
		t.Errorf("retry of a seq not quarantined = %v, want ErrNotQuarantined", err)
	}
	n, first, err := q.RetryQuarantined(7)
	if err != nil || n != 1 || first != 11 {
		t.Fatalf("RetryQuarantined(7) = %d, %d, %v, want 1 event at seq 11", n, first, err)
	}
	n, first, err = q.RetryQuarantined(0)
	if err != nil || n != 3 || first != 12 {
		t.Fatalf("RetryQuarantined(all) = %d, %d, %v, want 3 events from seq 12", n, first, err)
	}
	check := func(q *queue.Queue, when string) {
		t.Helper()
		recs := readAll(t, q)
		if got, want := seqs(recs), []uint64{1, 2, 4, 6, 8, 10, 11, 12, 13, 14}; !cmp.Equal(got, want) {
			t.Errorf("%s: seqs %v, want %v", when, got, want)
		}
		var wantIDs []string
		for _, n := range []int{1, 2, 4, 6, 8, 10, 7, 3, 5, 9} {
			wantIDs = append(wantIDs, evs[n-1].ID)
		}
		if got := idsOf(t, recs); !cmp.Equal(got, wantIDs) {
			t.Errorf("%s: ids %v, want %v", when, got, wantIDs)
		}
		for _, r := range recs[6:] {
			if r.Channel != "iot" {
				t.Errorf("%s: requeued seq %d has channel %q", when, r.Seq, r.Channel)
			}
		}
		if st := q.Stats(); st.Depth != 10 || st.QuarantineDepth != 0 || st.QuarantineBytes != 0 || st.NextSeq != 15 {
			t.Errorf("%s: stats %+v, want 10 queued, empty quarantine, next 15", when, st)
		}
		if n := q.ChannelIndexCount("iot"); n != 10 {
			t.Errorf("%s: drop index covers %d events, want 10", when, n)
		}
	}
	check(q, "open")
	if st := q.Stats(); st.Requeued != 4 {
		t.Errorf("requeued %d, want 4", st.Requeued)
	}
	closeQ(t, q)
	q = open(t, queue.Options{Dir: dir, Overflow: map[string]queue.OverflowPolicy{"iot": queue.OverflowDropOldest}})
	defer closeQ(t, q)
	check(q, "reopened")
	if n, _, err := q.RetryQuarantined(0); n != 0 || err != nil {
		t.Errorf("retry of an empty quarantine = %d, %v", n, err)
	}
}

// TestRetryQuarantinedWakesWaiter: a forwarder waiting at the tail sees
// requeued events.
func TestRetryQuarantinedWakesWaiter(t *testing.T) {
	q := open(t, queue.Options{})
	defer closeQ(t, q)
	if err := q.Append(t.Context(), events("pos", 1, 1)); err != nil {
		t.Fatal(err)
	}
	if ok, err := q.Quarantine(1, "x"); !ok || err != nil {
		t.Fatal(ok, err)
	}
	done := make(chan error, 1)
	go func() { done <- q.Wait(t.Context(), 2) }()
	if _, _, err := q.RetryQuarantined(1); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait did not return after the retry")
	}
	if st := q.Stats(); st.HeadSeq != 2 || st.Depth != 1 {
		t.Errorf("stats %+v, want the event queued at seq 2", st)
	}
}

// TestRetryQuarantinedLargeEvents: a retry of more events than one Badger
// transaction holds moves them all, in several transactions.
func TestRetryQuarantinedLargeEvents(t *testing.T) {
	q := open(t, queue.Options{MemTableBytes: queue.MinMemTableBytes})
	defer closeQ(t, q)
	evs := events("pos", 1, 12)
	for i := range evs {
		evs[i].Properties = map[string]any{"blob": strings.Repeat("x", 200<<10)}
	}
	if err := q.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	for seq := uint64(1); seq <= 12; seq++ {
		if ok, err := q.Quarantine(seq, "too large for the hub"); !ok || err != nil {
			t.Fatal(seq, ok, err)
		}
	}
	if recs, next, err := q.ListQuarantined(0, 100); err != nil || len(recs) != 12 || next != 0 {
		t.Errorf("list = %d records, next %d, %v; want all 12 (2.4 MB is under the list's byte bound)", len(recs), next, err)
	}
	n, first, err := q.RetryQuarantined(0)
	if err != nil || n != 12 || first != 13 {
		t.Fatalf("RetryQuarantined = %d, %d, %v", n, first, err)
	}
	if got := seqs(readAll(t, q)); !cmp.Equal(got, span(13, 24)) {
		t.Errorf("seqs %v, want 13..24", got)
	}
}

// quarantineChildEnv switches the test binary into the process of
// TestQuarantineSIGKILL; its value is the queue directory.
const quarantineChildEnv = "UNICO_QUEUE_TEST_QUARANTINE_CHILD"

const quarantineChildEvents = 200

// runQuarantineChild moves random events into the quarantine and all of
// them back, printing a line per round, until killed.
func runQuarantineChild() int {
	q, err := queue.Open(queue.Options{Dir: os.Getenv(quarantineChildEnv)})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if q.Stats().NextSeq == 1 {
		if err := q.Append(context.Background(), events("pos", 0, quarantineChildEvents)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	w := bufio.NewWriter(os.Stdout)
	for round := 0; ; round++ {
		recs, err := q.Read(0, 1000, 0)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for _, r := range recs {
			if rand.IntN(3) == 0 {
				if _, err := q.Quarantine(r.Seq, "child"); err != nil {
					fmt.Fprintln(os.Stderr, err)
					return 1
				}
			}
		}
		if _, _, err := q.RetryQuarantined(0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Fprintln(w, round)
		w.Flush()
	}
}

// TestQuarantineSIGKILL kills a process that keeps moving events between
// the queue and the quarantine: after every kill each event is in exactly
// one of the two, with its bytes.
func TestQuarantineSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("re-executes the test binary and kills it")
	}
	dir := t.TempDir()
	want := map[string][]byte{}
	for _, e := range events("pos", 0, quarantineChildEvents) {
		want[e.ID] = encoded(t, e)
	}
	for cycle := range 3 {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), quarantineChildEnv+"="+dir)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		killAfter := 1 + rand.IntN(5)
		lines := 0
		deadline := time.AfterFunc(60*time.Second, func() { cmd.Process.Kill() })
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines++
			if lines == killAfter {
				// Let the next round get under way, then kill it.
				time.AfterFunc(time.Duration(rand.IntN(20))*time.Millisecond, func() { cmd.Process.Signal(syscall.SIGKILL) })
			}
		}
		deadline.Stop()
		err = cmd.Wait()
		if lines < killAfter {
			t.Fatalf("cycle %d: child stopped after %d rounds (%v): %s", cycle, lines, err, stderr.String())
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("cycle %d: child was not killed: %v", cycle, err)
		}

		q := open(t, queue.Options{Dir: dir})
		found := map[string]int{}
		queued := readAll(t, q)
		for i, id := range idsOf(t, queued) {
			found[id]++
			if !bytes.Equal(queued[i].Data, want[id]) {
				t.Errorf("cycle %d: queued %s changed", cycle, id)
			}
		}
		quarantined := listAll(t, q)
		for _, r := range quarantined {
			var e protocol.Event
			if err := protocol.UnmarshalEvent(r.Data, &e); err != nil {
				t.Fatalf("cycle %d: quarantined seq %d: %v", cycle, r.Seq, err)
			}
			found[e.ID]++
			if !bytes.Equal(r.Data, want[e.ID]) {
				t.Errorf("cycle %d: quarantined %s changed", cycle, e.ID)
			}
		}
		for id := range want {
			if found[id] != 1 {
				t.Errorf("cycle %d: event %s stored %d times, want once", cycle, id, found[id])
			}
		}
		st := q.Stats()
		if st.Depth != int64(len(queued)) || st.QuarantineDepth != int64(len(quarantined)) || len(found) != quarantineChildEvents {
			t.Errorf("cycle %d: stats %+v, read %d queued and %d quarantined", cycle, st, len(queued), len(quarantined))
		}
		t.Logf("cycle %d: killed after %d rounds: %d queued, %d quarantined", cycle, lines, len(queued), len(quarantined))
		closeQ(t, q)
	}
}
