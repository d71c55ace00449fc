package store

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// vlogBytes is the size of the value-log files in dir.
func vlogBytes(t *testing.T, dir string) int64 {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

// TestValueLogGC rewrites a profile larger than the value threshold many
// times, so that its old versions fill value-log files with garbage, and
// checks that a GC round reclaims them and the profile reads back whole.
func TestValueLogGC(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Dir: dir, valueLogFileSize: 1 << 20}
	big := strings.Repeat("x", 6<<10)
	// The first event gives the profile a large trait; every later one
	// (small itself) rewrites the whole profile. Each reopen flushes the
	// memtable into a level-0 table, so that compaction sees the old
	// versions.
	const rounds, perRound = 6, 100
	n := 0
	for range rounds {
		s, err := Open(opts)
		if err != nil {
			t.Fatal(err)
		}
		for range perRound {
			e := order(fmt.Sprintf("o%04d", n), n, 1, "s1", id("email", "big@example.com"))
			if n == 0 {
				e.Traits = map[string]any{"notes": big}
			}
			commit(t, s, e)
			n++
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// Compaction tells Badger which value-log entries are garbage.
	if err := s.db.Flatten(1); err != nil {
		t.Fatal(err)
	}
	before := vlogBytes(t, dir)
	rewritten := s.gcRound()
	after := vlogBytes(t, dir)
	t.Logf("value log %d → %d bytes, %d files rewritten", before, after, rewritten)
	if rewritten == 0 || after >= before {
		t.Fatalf("GC round rewrote %d files, value log %d → %d bytes", rewritten, before, after)
	}
	v, err := s.Lookup(id("email", "big@example.com"))
	if err != nil {
		t.Fatal(err)
	}
	if got := v.Traits["notes"].Value; got != big || v.Computed.Events != int64(n) {
		t.Fatalf("after GC: notes of %d bytes (want %d), %d events (want %d)", len(fmt.Sprint(got)), len(big), v.Computed.Events, n)
	}
}

func TestOpenValueThresholdRange(t *testing.T) {
	for _, v := range []int{-1, MaxValueThreshold + 1} {
		if s, err := Open(Options{Dir: t.TempDir(), ValueThreshold: v}); err == nil {
			s.Close()
			t.Errorf("ValueThreshold %d accepted", v)
		}
	}
	s, err := Open(Options{Dir: t.TempDir(), ValueThreshold: MaxValueThreshold})
	if err != nil {
		t.Fatalf("ValueThreshold %d: %v", MaxValueThreshold, err)
	}
	s.Close()
}
