package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/unico-cdp/unico/protocol"
)

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for none
	}{
		{"ok defaults", Config{Dir: "x"}, ""},
		{"no dir", Config{}, "Dir"},
		{"bad scope", Config{Dir: "x", Scope: "planet"}, "Scope"},
		{"region without regions", Config{Dir: "x", Scope: ScopeRegion}, "Regions"},
		{"negative window", Config{Dir: "x", Window: -1}, "Window"},
		{"huge batch", Config{Dir: "x", BatchProfiles: 9000}, "BatchProfiles"},
		{"negative timeout", Config{Dir: "x", AckTimeout: -time.Second}, "AckTimeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.cfg.withDefaults()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if c.Scope != ScopeSite || c.BatchProfiles != 200 || c.Window != 4 || c.AckTimeout != 10*time.Second ||
					c.PollInterval != 200*time.Millisecond || len(c.HashTypes) != 2 || len(c.Traits) != 5 {
					t.Fatalf("defaults: %+v", c)
				}
				return
			}
			if !errors.Is(err, ErrInvalidConfig) || !contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want ErrInvalidConfig naming %s", err, tt.want)
			}
		})
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func TestHashIdentifier(t *testing.T) {
	// sha256("salt" + "ana@example.com")
	got := protocol.HashIdentifier("salt", "ana@example.com")
	if len(got) != 64 || got != protocol.HashIdentifier("salt", "ana@example.com") || got == protocol.HashIdentifier("pepper", "ana@example.com") {
		t.Fatalf("HashIdentifier = %q", got)
	}
}

func TestContent(t *testing.T) {
	r := newRig(t, Config{HashSalt: "s"})
	r.connect("e1")
	r.src.put("p1", map[string]int64{"e1": 2}, "Ana")
	r.sync()
	got := r.edges["e1"].profiles["p1"]
	want := protocol.ProfileSnapshot{
		ProfileID: "p1",
		Identifiers: []protocol.Identifier{
			{Type: "email", Value: protocol.HashIdentifier("s", "p1@example.com")},
			{Type: "loyalty_id", Value: "L-p1"},
		},
		Traits: map[string]any{"name": "Ana"},
		Computed: map[string]any{
			"orders": int64(1), "revenue": 12.5, "average_order_value": 0.0, "rfm": "",
			"recency_score": int64(0), "frequency_score": int64(0), "monetary_score": int64(0), "days_since_purchase": int64(0),
		},
		Consent: map[string]bool{"marketing": true},
	}
	if d := cmp.Diff(sprintValues(want.Computed), sprintValues(got.Computed)); d != "" {
		t.Fatalf("computed (-want +got):\n%s", d)
	}
	want.Computed, got.Computed = nil, nil
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("snapshot (-want +got):\n%s", d)
	}
}

// sprintValues turns map values into strings, so that numbers compare
// by value whatever width msgpack decoded them to.
func sprintValues(m map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range m {
		out[k] = fmt.Sprint(v)
	}
	return out
}

func TestMembership(t *testing.T) {
	type step struct {
		do   func(r *rig)
		want map[string][]string // edge → profile ids held
	}
	put := func(id string, edges map[string]int64) func(r *rig) {
		return func(r *rig) { r.src.put(id, edges, id) }
	}
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"site", Config{}, []step{
			{put("a", map[string]int64{"e1": 1}), map[string][]string{"e1": {"a"}, "e2": {}, "e3": {}}},
			{put("b", map[string]int64{"e1": 1, "e2": 3}), map[string][]string{"e1": {"a", "b"}, "e2": {"b"}, "e3": {}}},
		}},
		{"region", Config{Scope: ScopeRegion, Regions: map[string]string{"e1": "north", "e2": "north", "e3": "south"}}, []step{
			{put("a", map[string]int64{"e1": 1}), map[string][]string{"e1": {"a"}, "e2": {"a"}, "e3": {}}},
			{put("b", map[string]int64{"e3": 1}), map[string][]string{"e1": {"a"}, "e2": {"a"}, "e3": {"b"}}},
		}},
		{"all", Config{Scope: ScopeAll}, []step{
			{put("a", map[string]int64{"e1": 1}), map[string][]string{"e1": {"a"}, "e2": {"a"}, "e3": {"a"}}},
		}},
		{"leaving is a tombstone", Config{}, []step{
			{put("a", map[string]int64{"e1": 1, "e2": 1}), map[string][]string{"e1": {"a"}, "e2": {"a"}, "e3": {}}},
			{put("a", map[string]int64{"e2": 1}), map[string][]string{"e1": {}, "e2": {"a"}, "e3": {}}},
		}},
		{"merged away is a tombstone", Config{}, []step{
			{func(r *rig) { put("a", map[string]int64{"e1": 1})(r); put("b", map[string]int64{"e2": 1})(r) },
				map[string][]string{"e1": {"a"}, "e2": {"b"}, "e3": {}}},
			{func(r *rig) { r.src.remove("a", "b"); put("b", map[string]int64{"e1": 1, "e2": 1})(r) },
				map[string][]string{"e1": {"b"}, "e2": {"b"}, "e3": {}}},
		}},
		{"deleted is a tombstone", Config{Scope: ScopeAll}, []step{
			{put("a", map[string]int64{"e1": 1}), map[string][]string{"e1": {"a"}, "e2": {"a"}, "e3": {"a"}}},
			{func(r *rig) { r.src.remove("a", "") }, map[string][]string{"e1": {}, "e2": {}, "e3": {}}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t, tt.cfg)
			for _, e := range []string{"e1", "e2", "e3"} {
				r.connect(e)
			}
			r.sync()
			for i, s := range tt.steps {
				s.do(r)
				r.sync()
				got := map[string][]string{}
				for id, c := range r.edges {
					got[id] = c.ids()
				}
				if d := cmp.Diff(s.want, got); d != "" {
					t.Fatalf("step %d (-want +got):\n%s", i, d)
				}
				// The cached memberships are what the member keys say.
				if err := r.m.db.View(func(txn *badger.Txn) error {
					for pid, cached := range r.m.members {
						disk, err := readMembers(txn, pid)
						if err != nil {
							return err
						}
						if d := cmp.Diff(disk, cached, cmpopts.EquateEmpty()); d != "" {
							t.Errorf("step %d: members of %s (-disk +cache):\n%s", i, pid, d)
						}
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestCoalesce(t *testing.T) { withIndexBudgets(t, testCoalesce) }

func testCoalesce(t *testing.T) {
	r := newRig(t, Config{})
	r.connect("e1")
	r.sync()
	for i := range 10 {
		if i == 5 {
			// The pending entry is found again after a restart.
			r.reopen()
		}
		r.src.put("a", map[string]int64{"e1": int64(i + 1)}, "v"+string(rune('0'+i)))
		if _, err := r.m.processChanges(); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.m.edges["t/e1"].st.Outbox; got != 1 {
		t.Fatalf("outbox after 10 changes = %d, want 1", got)
	}
	got := r.round()["e1"]
	if len(got) != 1 || len(got[0].Profiles) != 1 || got[0].Profiles[0].Traits["name"] != "v9" {
		t.Fatalf("batches = %+v, want one snapshot of the latest content", got)
	}
}

// diskIndex reads e's index keys.
func diskIndex(t *testing.T, m *Manager, e *edge) map[string]uint64 {
	t.Helper()
	out := map[string]uint64{}
	prefix := numPrefix(kIndex, e.st.Num)
	if err := m.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key()[len(prefix):])] = binary.BigEndian.Uint64(v)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// withIndexBudgets runs test with the default budget of index mirrors, one
// that the test's outbox outgrows, and none.
func withIndexBudgets(t *testing.T, test func(t *testing.T)) {
	for _, budget := range []int{maxIndexed, 50, 0} {
		t.Run(fmt.Sprintf("budget=%d", budget), func(t *testing.T) {
			defer func(old int) { maxIndexed = old }(maxIndexed)
			maxIndexed = budget
			test(t)
		})
	}
}

func TestCrashSafety(t *testing.T) { withIndexBudgets(t, testCrashSafety) }

func testCrashSafety(t *testing.T) {
	r := newRig(t, Config{BatchProfiles: 10, Window: 2})
	r.connect("e1")
	r.sync()
	for _, id := range ids(100, "p") {
		r.src.put(id, map[string]int64{"e1": 1}, id)
	}
	// Clearing the marks fails once: the changes are repeated, and
	// coalesce with the entries already durable.
	r.src.clearErr = errors.New("disk full")
	if _, err := r.m.processChanges(); err == nil {
		t.Fatal("processChanges hid the ClearChanges error")
	}
	if _, err := r.m.processChanges(); err != nil {
		t.Fatal(err)
	}
	if got := r.m.edges["t/e1"].st.Outbox; got != 100 {
		t.Fatalf("outbox = %d, want 100", got)
	}
	// Two batches leave, the edge applies the first only.
	sent := r.round()["e1"]
	if len(sent) != 2 {
		t.Fatalf("sent %d batches, want the window of 2", len(sent))
	}
	r.edges["e1"].apply(sent[0])
	r.ack("e1", r.edges["e1"].applied)
	// The in-memory outbox index is what the index keys say, or is
	// dropped if the budget is smaller.
	e := r.m.edges["t/e1"]
	disk := diskIndex(t, r.m, e)
	switch {
	case len(disk) != 90:
		t.Fatalf("%d index keys, want 90", len(disk))
	case maxIndexed < 90 && e.index != nil:
		t.Fatalf("index of %d entries mirrored within a budget of %d", len(e.index), maxIndexed)
	case maxIndexed >= 90:
		if d := cmp.Diff(disk, e.index); d != "" {
			t.Fatalf("outbox index (-disk +memory):\n%s", d)
		}
	}
	if r.m.indexed != len(e.index) {
		t.Fatalf("indexed = %d, want %d", r.m.indexed, len(e.index))
	}
	before := r.m.edges["t/e1"].st
	r.reopen()
	after := r.m.edges["t/e1"].st
	if d := cmp.Diff(before, after); d != "" {
		t.Fatalf("state after reopen (-before +after):\n%s", d)
	}
	// The unacked batch is resent with the same seq after the timeout.
	r.clock.Add(time.Minute)
	got := r.round()["e1"]
	if len(got) == 0 || got[0].Seq != sent[1].Seq {
		t.Fatalf("after restart sent %v, want a resend of seq %d first", seqs(got), sent[1].Seq)
	}
	for _, b := range got {
		r.edges["e1"].apply(b)
	}
	r.ack("e1", r.edges["e1"].applied)
	r.sync()
	if d := cmp.Diff(ids(100, "p"), r.edges["e1"].ids()); d != "" {
		t.Fatalf("edge cache (-want +got):\n%s", d)
	}
	if got := r.m.edges["t/e1"].st.Outbox; got != 0 {
		t.Fatalf("outbox after acks = %d, want 0", got)
	}
	if e := r.m.edges["t/e1"]; e.index == nil || len(e.index) != 0 || r.m.indexed != 0 {
		t.Fatalf("index mirror after the outbox emptied: %v (%d indexed), want empty", e.index, r.m.indexed)
	}
}

func seqs(bs []*protocol.SnapshotBatch) []uint64 {
	var out []uint64
	for _, b := range bs {
		out = append(out, b.Seq)
	}
	return out
}

func TestResendAndOffline(t *testing.T) {
	r := newRig(t, Config{BatchProfiles: 5, Window: 2, AckTimeout: time.Second})
	r.connect("e1")
	r.sync()
	for _, id := range ids(30, "p") {
		r.src.put(id, map[string]int64{"e1": 1}, id)
	}
	// Offline: the window leaves once, then nothing until the timeout.
	if got := r.round()["e1"]; len(got) != 2 {
		t.Fatalf("first round sent %d batches, want 2", len(got))
	}
	if got := r.round()["e1"]; len(got) != 0 {
		t.Fatalf("sent %d batches within the ack timeout", len(got))
	}
	r.clock.Add(time.Second)
	if got := r.round()["e1"]; len(got) != 2 || got[0].Seq != 1 {
		t.Fatalf("after timeout sent %v, want seqs 1,2 again", seqs(got))
	}
	// Backoff: the next resend waits twice as long.
	r.clock.Add(time.Second)
	if got := r.round()["e1"]; len(got) != 0 {
		t.Fatalf("resent %v before the backoff", seqs(got))
	}
	// The edge comes back: its resume message triggers an immediate resend.
	r.connect("e1")
	if got := r.round()["e1"]; len(got) != 2 {
		t.Fatalf("after resume sent %v, want 2 batches", seqs(got))
	}
	r.connect("e1")
	r.clock.Add(time.Minute)
	r.sync()
	if d := cmp.Diff(ids(30, "p"), r.edges["e1"].ids()); d != "" {
		t.Fatalf("edge cache (-want +got):\n%s", d)
	}
	// Wiped cache: resume 0 → full sync with seqs from 1.
	r.edges["e1"] = newCache()
	r.connect("e1")
	r.sync()
	if d := cmp.Diff(ids(30, "p"), r.edges["e1"].ids()); d != "" {
		t.Fatalf("edge cache after wipe (-want +got):\n%s", d)
	}
	if r.edges["e1"].fulls == 0 {
		t.Fatalf("no full-sync batches after the wipe")
	}
	r.m.publishStatus(r.clock.Now())
	if st := r.m.Edges(); len(st) != 1 || st[0].FullSync || st[0].Outbox != 0 || st[0].Lag != 0 || st[0].Inflight != 0 {
		t.Fatalf("status = %+v", st)
	}
}

func TestPublishFailureKeepsBatch(t *testing.T) {
	r := newRig(t, Config{AckTimeout: time.Second})
	r.connect("e1")
	r.sync()
	r.src.put("a", map[string]int64{"e1": 1}, "a")
	r.pub.fail = errors.New("broker down")
	if _, err := r.m.processChanges(); err != nil {
		t.Fatal(err)
	}
	if err := r.m.pump(r.m.edges["t/e1"], r.clock.Now()); !errors.Is(err, errPublish) {
		t.Fatalf("pump err = %v, want errPublish", err)
	}
	r.pub.fail = nil
	r.clock.Add(time.Second)
	r.sync()
	if d := cmp.Diff([]string{"a"}, r.edges["e1"].ids()); d != "" {
		t.Fatalf("edge cache (-want +got):\n%s", d)
	}
}

func TestMaxEdges(t *testing.T) {
	r := newRig(t, Config{MaxEdges: 2})
	for _, e := range []string{"e1", "e2", "e3"} {
		r.connect(e)
	}
	if got := len(r.m.edges); got != 2 {
		t.Fatalf("edges = %d, want 2", got)
	}
}

// TestIndexBudget lets an offline edge's outbox outgrow the budget of
// index mirrors: its mirror is dropped, coalescing goes on through Badger,
// and once the edge is back and its outbox empty it is mirrored again.
func TestIndexBudget(t *testing.T) {
	defer func(old int) { maxIndexed = old }(maxIndexed)
	maxIndexed = 50
	r := newRig(t, Config{})
	r.connect("e1")
	r.sync()
	for range 2 {
		for _, id := range ids(100, "p") {
			r.src.put(id, map[string]int64{"e1": 1}, id)
		}
		if _, err := r.m.processChanges(); err != nil {
			t.Fatal(err)
		}
	}
	e := r.m.edges["t/e1"]
	if e.index != nil || r.m.indexed != 0 {
		t.Fatalf("mirror of %d entries (%d indexed) past a budget of 50", len(e.index), r.m.indexed)
	}
	if e.st.Outbox != 100 {
		t.Fatalf("outbox after two changes of 100 profiles = %d, want 100", e.st.Outbox)
	}
	if got := len(diskIndex(t, r.m, e)); got != 100 {
		t.Fatalf("%d index keys, want 100", got)
	}
	r.sync()
	if d := cmp.Diff(ids(100, "p"), r.edges["e1"].ids()); d != "" {
		t.Fatalf("edge cache (-want +got):\n%s", d)
	}
	if e.st.Outbox != 0 || e.index == nil || len(e.index) != 0 || len(diskIndex(t, r.m, e)) != 0 {
		t.Fatalf("after sync: outbox %d, mirror %v (dropped: %t), want both empty", e.st.Outbox, e.index, e.index == nil)
	}
}
