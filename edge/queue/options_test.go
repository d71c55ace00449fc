package queue_test

import (
	"strings"
	"testing"

	"github.com/unico-cdp/unico/edge/queue"
)

func TestOpenMemoryOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    queue.Options
		wantErr string
	}{
		{"defaults", queue.Options{}, ""},
		{"smallest memtable", queue.Options{MemTableBytes: queue.MinMemTableBytes, BlockCacheBytes: 1 << 20}, ""},
		{"memtable too small", queue.Options{MemTableBytes: queue.MinMemTableBytes - 1}, "MemTableBytes"},
		{"negative memtable", queue.Options{MemTableBytes: -1}, "MemTableBytes"},
		{"cache too small", queue.Options{BlockCacheBytes: 1<<20 - 1}, "BlockCacheBytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Dir = t.TempDir()
			q, err := queue.Open(tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					if q != nil {
						closeQ(t, q)
					}
					t.Fatalf("Open = %v, want an error naming %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			closeQ(t, q)
		})
	}
}

// TestLargestEventWithSmallestMemtable appends events of nearly
// MaxEventBytes to a queue with the smallest memtable: each fits one
// Badger transaction and reads back intact after a reopen.
func TestLargestEventWithSmallestMemtable(t *testing.T) {
	dir := t.TempDir()
	opts := queue.Options{Dir: dir, MemTableBytes: queue.MinMemTableBytes}
	q := open(t, opts)
	evs := events("pos", 0, 3)
	for i := range evs {
		evs[i].Properties = map[string]any{"blob": strings.Repeat("x", queue.MaxEventBytes-1024)}
	}
	if err := q.Append(t.Context(), evs); err != nil {
		t.Fatal(err)
	}
	closeQ(t, q)
	q = open(t, opts)
	defer closeQ(t, q)
	recs, err := q.Read(1, 10, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 {
		t.Fatalf("read %d records, want 3", len(recs))
	}
	for i, r := range recs {
		if want := encoded(t, evs[i]); string(r.Data) != string(want) {
			t.Errorf("record %d: %d bytes differ from the %d appended", i, len(r.Data), len(want))
		}
	}
}
