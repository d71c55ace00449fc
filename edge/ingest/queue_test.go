package ingest

import (
	"encoding/json"
	"testing"

	"github.com/unico-cdp/unico/edge/queue"
)

func openQueue(t testing.TB, quota int64) *queue.Queue {
	t.Helper()
	q, err := queue.Open(queue.Options{Dir: t.TempDir(), QuotaBytes: quota})
	if err != nil {
		t.Fatalf("open queue: %v", err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// TestWithQueue runs ingest on the real Badger queue: accepted events are
// readable from it after the 200, a full queue gives 429 and a closed one
// 503.
func TestWithQueue(t *testing.T) {
	t.Run("accepted events are queued", func(t *testing.T) {
		q := openQueue(t, 0)
		ts := startServer(t, Config{}, q)
		if r := ts.do(t, "POST", "/v1/batch", nil, []byte(goodBatch)); r.code != 200 {
			t.Fatalf("code %d: %s", r.code, r.body)
		}
		recs, err := q.Read(0, 100, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 2 {
			t.Fatalf("queue holds %d records, want 2", len(recs))
		}
		if st := q.Stats(); st.Depth != 2 {
			t.Fatalf("depth %d, want 2", st.Depth)
		}
	})
	t.Run("full queue gives 429", func(t *testing.T) {
		q := openQueue(t, 1)
		ts := startServer(t, Config{RetryAfter: 7e9}, q)
		r := ts.do(t, "POST", "/v1/batch", nil, []byte(goodBatch))
		if r.code != 429 || r.header.Get("Retry-After") != "7" {
			t.Fatalf("got %d Retry-After %q: %s", r.code, r.header.Get("Retry-After"), r.body)
		}
		if st := q.Stats(); st.Depth != 0 {
			t.Fatalf("depth %d after 429", st.Depth)
		}
	})
	t.Run("closed queue gives 503", func(t *testing.T) {
		q := openQueue(t, 0)
		ts := startServer(t, Config{}, q)
		if err := q.Close(); err != nil {
			t.Fatal(err)
		}
		r := ts.do(t, "POST", "/v1/track", nil, []byte(trackMsg))
		if r.code != 503 || r.header.Get("Retry-After") != "5" {
			t.Fatalf("got %d Retry-After %q: %s", r.code, r.header.Get("Retry-After"), r.body)
		}
	})
	t.Run("status renders queue stats", func(t *testing.T) {
		q := openQueue(t, 0)
		ts := startServer(t, Config{Status: func() any { return q.Stats() }}, q)
		ts.do(t, "POST", "/v1/track", nil, []byte(trackMsg))
		r := ts.do(t, "GET", "/v1/status", nil, nil)
		var st queue.Stats
		if err := json.Unmarshal(r.body, &st); err != nil || st.Depth != 1 {
			t.Fatalf("status %d %s: %v", r.code, r.body, err)
		}
	})
}

var _ Appender = (*queue.Queue)(nil)
