package snapshot

import (
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/unico-cdp/unico/hub/profile"
	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/internal/testkit"
	"github.com/unico-cdp/unico/protocol"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func testLogger(t testing.TB) *slog.Logger { return testkit.Logger(t, slog.LevelInfo) }

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, timeout, what, cond)
}

// fakeSource is an in-memory profile store with change marks.
type fakeSource struct {
	mu       sync.Mutex
	profiles map[string]*store.View
	redirect map[string]string
	marks    map[string]uint64
	version  uint64
	clearErr error
}

func newFakeSource() *fakeSource {
	return &fakeSource{profiles: map[string]*store.View{}, redirect: map[string]string{}, marks: map[string]uint64{}}
}

// put sets profile id with events per edge and a name trait.
func (f *fakeSource) put(id string, edges map[string]int64, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	v := &store.View{Profile: profile.Profile{
		ID:          id,
		Identifiers: []protocol.Identifier{{Type: "email", Value: id + "@example.com"}, {Type: "loyalty_id", Value: "L-" + id}},
		Traits:      map[string]profile.Trait{"name": {Value: name}, "email": {Value: id + "@example.com"}},
		Consent:     map[string]profile.Consent{"marketing": {Granted: true}},
		Computed:    profile.Computed{Edges: profile.CountsOf(edges), Orders: 1, Revenue: profile.MoneyOf(12.5)},
	}}
	f.profiles[id] = v
	f.mark(id)
}

func (f *fakeSource) mark(id string) {
	f.version++
	f.marks[id] = f.version
}

func (f *fakeSource) remove(id, into string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.profiles, id)
	if into != "" {
		f.redirect[id] = into
	}
	f.mark(id)
}

func (f *fakeSource) Changes(limit int) ([]store.Change, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.marks))
	for id := range f.marks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var out []store.Change
	for _, id := range ids {
		if len(out) == limit {
			break
		}
		c := store.Change{ProfileID: id, Version: f.marks[id], Profile: f.profiles[id], MergedInto: f.redirect[id]}
		out = append(out, c)
	}
	return out, nil
}

func (f *fakeSource) ClearChanges(cs []store.Change) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.clearErr != nil {
		err := f.clearErr
		f.clearErr = nil
		return err
	}
	for _, c := range cs {
		if f.marks[c.ProfileID] == c.Version {
			delete(f.marks, c.ProfileID)
		}
	}
	return nil
}

func (f *fakeSource) Profile(id string) (*store.View, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range 10 {
		if v, ok := f.profiles[id]; ok {
			return v, nil
		}
		next, ok := f.redirect[id]
		if !ok {
			break
		}
		id = next
	}
	return nil, store.ErrNotFound
}

func (f *fakeSource) Profiles(cursor string, limit int) ([]*store.View, store.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.profiles))
	for id := range f.profiles {
		if id > cursor {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var page store.Page
	if len(ids) > limit {
		ids = ids[:limit]
		page.Next = ids[limit-1]
	}
	out := make([]*store.View, len(ids))
	for i, id := range ids {
		out[i] = f.profiles[id]
	}
	return out, page, nil
}

// fakePub records published batches per topic.
type fakePub struct {
	mu      sync.Mutex
	batches map[string][]*protocol.SnapshotBatch
	fail    error
}

func (p *fakePub) Publish(topic string, payload []byte, _ time.Duration) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.fail != nil {
		return p.fail
	}
	var b protocol.SnapshotBatch
	if err := protocol.Unmarshal(payload, &b, protocol.Limits{}); err != nil {
		return err
	}
	if p.batches == nil {
		p.batches = map[string][]*protocol.SnapshotBatch{}
	}
	p.batches[topic] = append(p.batches[topic], &b)
	return nil
}

func (p *fakePub) take(topic string) []*protocol.SnapshotBatch {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.batches[topic]
	delete(p.batches, topic)
	return b
}

// cache is a test edge's profile cache, applied strictly in Seq order as
// the edge agent does.
type cache struct {
	applied  uint64
	profiles map[string]protocol.ProfileSnapshot
	fulls    int
}

func newCache() *cache { return &cache{profiles: map[string]protocol.ProfileSnapshot{}} }

// apply applies b if it is the next batch; it returns whether it did.
func (c *cache) apply(b *protocol.SnapshotBatch) bool {
	if b.Seq != c.applied+1 {
		return false
	}
	for _, p := range b.Profiles {
		if p.Tombstone {
			delete(c.profiles, p.ProfileID)
		} else {
			c.profiles[p.ProfileID] = p
		}
	}
	if b.FullSync {
		c.fulls++
	}
	c.applied = b.Seq
	return true
}

func (c *cache) ids() []string {
	out := make([]string, 0, len(c.profiles))
	for id := range c.profiles {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// rig drives a manager by hand (no Run goroutine) against a fake source
// and in-process test edges.
type rig struct {
	t     *testing.T
	m     *Manager
	src   *fakeSource
	pub   *fakePub
	clock *fakeClock
	cfg   Config
	edges map[string]*cache // by edge id, tenant "t"
}

func newRig(t *testing.T, cfg Config) *rig {
	t.Helper()
	r := &rig{t: t, src: newFakeSource(), pub: &fakePub{}, clock: &fakeClock{t: time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)}, edges: map[string]*cache{}}
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	cfg.Now = r.clock.Now
	r.cfg = cfg
	r.open()
	return r
}

func (r *rig) open() {
	r.t.Helper()
	m, err := New(r.cfg, r.src, r.pub, testLogger(r.t))
	if err != nil {
		r.t.Fatal(err)
	}
	r.m = m
	r.t.Cleanup(func() { m.Close() })
}

// reopen simulates a restart of the hub.
func (r *rig) reopen() {
	r.t.Helper()
	if err := r.m.Close(); err != nil {
		r.t.Fatal(err)
	}
	r.open()
}

// connect makes edge id known (its resume message with its applied seq).
func (r *rig) connect(id string) {
	r.t.Helper()
	c := r.edges[id]
	if c == nil {
		c = newCache()
		r.edges[id] = c
	}
	r.ack(id, c.applied)
}

func (r *rig) ack(id string, seq uint64) {
	r.t.Helper()
	if err := r.m.handleAck(ackMsg{tenant: "t", edge: id, seq: seq}, r.clock.Now()); err != nil {
		r.t.Fatal(err)
	}
}

// round processes changes and sends; it returns what was published per edge.
func (r *rig) round() map[string][]*protocol.SnapshotBatch {
	r.t.Helper()
	for {
		n, err := r.m.processChanges()
		if err != nil {
			r.t.Fatal(err)
		}
		if n < r.m.cfg.ChangesPerRound {
			break
		}
	}
	for _, e := range r.m.sortedEdges() {
		if err := r.m.pump(e, r.clock.Now()); err != nil {
			r.t.Fatal(err)
		}
	}
	out := map[string][]*protocol.SnapshotBatch{}
	for id := range r.edges {
		out[id] = r.pub.take(protocol.SnapshotTopic("t", id))
	}
	return out
}

// sync runs rounds, delivering every batch to the online edges and acking,
// until nothing more is published.
func (r *rig) sync(offline ...string) {
	r.t.Helper()
	for i := 0; ; i++ {
		if i > 10000 {
			r.t.Fatal("sync does not converge")
		}
		got := r.round()
		any := false
		for id, bs := range got {
			if slices.Contains(offline, id) {
				continue
			}
			for _, b := range bs {
				any = true
				r.edges[id].apply(b)
				r.ack(id, r.edges[id].applied)
			}
		}
		if !any {
			return
		}
	}
}

func ids(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%04d", prefix, i)
	}
	return out
}
