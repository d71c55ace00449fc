package queue_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/unico-cdp/unico/edge/queue"
	"github.com/unico-cdp/unico/protocol"
)

// vlogBytes sums the sizes of the value-log files in dir.
func vlogBytes(t *testing.T, dir string) (total int64, files int) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			continue // deleted meanwhile
		}
		total += fi.Size()
	}
	return total, len(paths)
}

// TestDiskReclaimedAfterAck streams events through the queue (append,
// read, ack) well past many value-log files: value-log GC must give the
// disk of acked events back, so that the value log stays a few files long
// instead of holding everything ever queued.
func TestDiskReclaimedAfterAck(t *testing.T) {
	const (
		fileBytes = 1 << 20
		rounds    = 100
		perRound  = 1000
	)
	dir := t.TempDir()
	opts := queue.Options{Dir: dir, MemTableBytes: queue.MinMemTableBytes, GCInterval: time.Hour, PageOutInterval: -1}
	queue.SetValueLogFileBytes(&opts, fileBytes)
	q := open(t, opts)
	defer closeQ(t, q)
	blob := strings.Repeat("x", 200)
	var written int64
	maxFiles := 0
	for r := range rounds {
		evs := events("pos", r*perRound, perRound)
		for i := range evs {
			evs[i].Properties = map[string]any{"blob": blob}
		}
		if err := q.Append(t.Context(), evs); err != nil {
			t.Fatal(err)
		}
		st := q.Stats()
		recs, err := q.Read(st.HeadSeq, perRound, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != perRound {
			t.Fatalf("round %d: read %d events, want %d", r, len(recs), perRound)
		}
		for _, rec := range recs {
			written += int64(len(rec.Data))
		}
		if err := q.Ack(recs[0].Seq, recs[len(recs)-1].Seq); err != nil {
			t.Fatal(err)
		}
		q.GCRound()
		_, n := vlogBytes(t, dir)
		maxFiles = max(maxFiles, n)
	}
	if d := q.Stats().Depth; d != 0 {
		t.Fatalf("queue_depth %d after acking everything", d)
	}
	total, n := vlogBytes(t, dir)
	t.Logf("%d MiB of events streamed through; value log now %d files, %.1f MiB (at most %d files on the way)",
		written>>20, n, float64(total)/(1<<20), maxFiles)
	if written < 20*fileBytes {
		t.Fatalf("only %d bytes written: the test does not cross enough value-log files", written)
	}
	// Garbage is rewritten once compaction has counted it, which lags the
	// acks by up to three memtables of keys (two level-0 tables and the
	// live memtable: some 30,000 events, 9 MiB here) plus the file being
	// written; far below the 30+ files written. (With compaction unable
	// to drop deleted events, all of them stay.)
	if n > 14 {
		t.Errorf("value log holds %d files (%.1f MiB) after %.1f MiB were streamed and acked: acked events are not reclaimed",
			n, float64(total)/(1<<20), float64(written)/(1<<20))
	}
}

// TestStoredBytesExact appends events whose values straddle the varint
// boundaries of Badger's value-log entry header: the bytes the queue counts
// on append must equal what a reopened queue recounts from the keys alone,
// and acking everything must bring them back to exactly 0.
func TestStoredBytesExact(t *testing.T) {
	dir := t.TempDir()
	opts := queue.Options{Dir: dir, PageOutInterval: -1}
	q := open(t, opts)
	var evs []protocol.Event
	for i, n := range []int{0, 10, 60, 100, 120, 127, 128, 200, 16200, 16383, 16384, 16500, 300_000} {
		e := event("pos", i)
		e.Properties = map[string]any{"blob": strings.Repeat("y", n)}
		evs = append(evs, e)
	}
	if err := q.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, e := range evs {
		want += queue.RecordSize(len(encoded(t, e)), "pos")
	}
	if got := q.Stats().Bytes; got != want {
		t.Errorf("after append: %d bytes counted, want %d", got, want)
	}
	closeQ(t, q)
	q = open(t, opts)
	defer closeQ(t, q)
	st := q.Stats()
	if st.Bytes != want || st.Depth != int64(len(evs)) {
		t.Errorf("after reopen: %d events, %d bytes; want %d, %d", st.Depth, st.Bytes, len(evs), want)
	}
	if st.OldestReceivedAt.IsZero() {
		t.Error("after reopen: oldest received-at unknown")
	}
	if err := q.Ack(st.HeadSeq, st.NextSeq-1); err != nil {
		t.Fatal(err)
	}
	if st := q.Stats(); st.Bytes != 0 || st.Depth != 0 {
		t.Errorf("after acking everything: %d events, %d bytes; want 0, 0", st.Depth, st.Bytes)
	}
}
