package cache

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/unico-cdp/unico/internal/testkit"
	"github.com/unico-cdp/unico/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// fasthttp refreshes its Date header from one process-wide
		// goroutine that never ends.
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"),
		// A stopped fasthttp worker pool's cleaner notices the stop only
		// after its current sleep (MaxIdleWorkerDuration, 10s).
		goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.(*workerPool).Start.func2"),
	)
}

func testLogger(t testing.TB) *slog.Logger { return testkit.Logger(t, slog.LevelDebug) }

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, timeout, what, cond)
}

// fixedClock is a settable clock.
type fixedClock struct{ t time.Time }

func (c *fixedClock) Now() time.Time { return c.t }

var t0 = time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)

// openTest opens a cache in dir (a new temp dir when empty) and closes it
// at cleanup. Identifiers are not hashed unless mod sets HashTypes (nil
// for the defaults).
func openTest(t testing.TB, dir string, mod func(*Options)) *Cache {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	clk := &fixedClock{t: t0}
	o := Options{Dir: dir, Logger: testLogger(t), Now: clk.Now, NoSync: true, HashTypes: []string{}}
	if mod != nil {
		mod(&o)
	}
	c, err := Open(o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// prof builds a snapshot of profile id holding identifiers "type:value".
func prof(id string, ids ...string) protocol.ProfileSnapshot {
	p := protocol.ProfileSnapshot{ProfileID: id, UpdatedAt: t0.Add(-time.Minute),
		Traits: map[string]any{"name": "n-" + id}, Segments: []string{"s1"}}
	for _, s := range ids {
		typ, v, _ := strings.Cut(s, ":")
		p.Identifiers = append(p.Identifiers, protocol.Identifier{Type: typ, Value: v})
	}
	return p
}

func tomb(id string) protocol.ProfileSnapshot {
	return protocol.ProfileSnapshot{ProfileID: id, Tombstone: true}
}

func batch(seq uint64, ps ...protocol.ProfileSnapshot) *protocol.SnapshotBatch {
	return &protocol.SnapshotBatch{EdgeID: "store-1", Seq: seq, Profiles: ps}
}
