package queue_test

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"testing"

	"github.com/unico-cdp/unico/edge/queue"
)

// residentFileKiB returns RssFile of this process.
func residentFileKiB(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("RssFile:")); ok {
			n, err := strconv.ParseInt(string(bytes.TrimSuffix(bytes.TrimSpace(v), []byte(" kB"))), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// pageOutMeasured runs q's page-out and returns the bytes it advised and
// this process's resident file pages (KiB) before and after; it skips the
// test where the kernel cannot page out.
func pageOutMeasured(t *testing.T, q *queue.Queue) (advised, before, after int64) {
	t.Helper()
	before = residentFileKiB(t)
	advised, err := q.PageOut()
	if errors.Is(err, queue.ErrPageOutUnsupported) {
		t.Skip("SKIP: the kernel has no MADV_PAGEOUT")
	}
	if err != nil {
		t.Fatal(err)
	}
	after = residentFileKiB(t)
	t.Logf("advised %d KiB of mappings; resident file pages %d KiB -> %d KiB", advised>>10, before, after)
	return advised, before, after
}

// TestPageOutLowersResidentFiles fills a queue until Badger has written
// tables, reads it all back, and checks that a page-out advises the mapped
// tables and lowers the process's resident file pages, with every event
// still readable afterwards.
func TestPageOutLowersResidentFiles(t *testing.T) {
	// A relative directory, as the agent's default --data-dir is.
	t.Chdir(t.TempDir())
	q := open(t, queue.Options{Dir: "q", PageOutInterval: -1, MemTableBytes: queue.MinMemTableBytes})
	defer closeQ(t, q)
	const n = 40_000
	for i := 0; i < n; i += 500 {
		if err := q.Append(t.Context(), events("pos", i, 500)); err != nil {
			t.Fatal(err)
		}
	}
	readAll := func() int {
		got := 0
		for from := uint64(1); ; {
			recs, err := q.Read(from, 1000, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) == 0 {
				return got
			}
			got += len(recs)
			from = recs[len(recs)-1].Seq + 1
		}
	}
	if got := readAll(); got != n {
		t.Fatalf("read %d events, want %d", got, n)
	}
	advised, before, after := pageOutMeasured(t, q)
	if advised == 0 {
		t.Fatal("no mapped table file was advised")
	}
	if after >= before {
		t.Errorf("resident file pages %d KiB after page-out, %d KiB before: want fewer", after, before)
	}
	if got := readAll(); got != n {
		t.Fatalf("after page-out read %d events, want %d", got, n)
	}
}

// TestPageOutDirCoversSiblings: a queue whose PageOutDir is the parent
// directory pages out another database's files under it (the agent's
// profile cache beside its queue).
func TestPageOutDirCoversSiblings(t *testing.T) {
	t.Chdir(t.TempDir())
	q := open(t, queue.Options{Dir: "data/queue", PageOutDir: "data", PageOutInterval: -1, MemTableBytes: queue.MinMemTableBytes})
	defer closeQ(t, q)
	other := open(t, queue.Options{Dir: "data/other", PageOutInterval: -1, MemTableBytes: queue.MinMemTableBytes})
	defer closeQ(t, other)
	const n = 40_000
	for i := 0; i < n; i += 500 {
		if err := other.Append(t.Context(), events("pos", i, 500)); err != nil {
			t.Fatal(err)
		}
	}
	for from := uint64(1); ; {
		recs, err := other.Read(from, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		from = recs[len(recs)-1].Seq + 1
	}
	_, before, after := pageOutMeasured(t, q)
	// The sibling holds some 12 MiB of resident table and value-log
	// pages; the empty queue's own files a few KiB.
	if before-after < 4<<10 {
		t.Errorf("resident file pages %d KiB after the empty queue's page-out, %d KiB before: the sibling's files were not paged out", after, before)
	}
}
