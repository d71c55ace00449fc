package cache

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unico-cdp/unico/protocol"
)

func TestApplyOrdering(t *testing.T) {
	type step struct {
		b    *protocol.SnapshotBatch
		want bool // applied
	}
	full := func(b *protocol.SnapshotBatch) *protocol.SnapshotBatch { b.FullSync = true; return b }
	tests := []struct {
		name     string
		steps    []step
		applied  uint64
		profiles int64
		ignored  map[string]uint64
		lookups  map[string]string // "type:value" → profile id, "" for not found
	}{
		{
			name:     "in order",
			steps:    []step{{batch(1, prof("p1", "email:a@x.io")), true}, {batch(2, prof("p2", "loyalty_id:L2")), true}},
			applied:  2,
			profiles: 2,
			ignored:  map[string]uint64{},
			lookups:  map[string]string{"email:a@x.io": "p1", "loyalty_id:L2": "p2", "loyalty_id:L3": ""},
		},
		{
			name: "duplicate is ignored",
			steps: []step{
				{batch(1, prof("p1", "email:a@x.io")), true},
				{batch(1, prof("p1", "email:other@x.io")), false},
				{batch(0, prof("p9", "email:z@x.io")), false},
			},
			applied:  1,
			profiles: 1,
			ignored:  map[string]uint64{ReasonDuplicate: 2},
			lookups:  map[string]string{"email:a@x.io": "p1", "email:other@x.io": "", "email:z@x.io": ""},
		},
		{
			name: "gap is ignored until filled",
			steps: []step{
				{batch(1, prof("p1", "email:a@x.io")), true},
				{batch(3, prof("p3", "email:c@x.io")), false},
				{batch(2, prof("p2", "email:b@x.io")), true},
				{batch(3, prof("p3", "email:c@x.io")), true},
			},
			applied:  3,
			profiles: 3,
			ignored:  map[string]uint64{ReasonGap: 1},
			lookups:  map[string]string{"email:a@x.io": "p1", "email:b@x.io": "p2", "email:c@x.io": "p3"},
		},
		{
			name:     "first batch must be seq 1",
			steps:    []step{{batch(2, prof("p1", "email:a@x.io")), false}},
			applied:  0,
			profiles: 0,
			ignored:  map[string]uint64{ReasonGap: 1},
			lookups:  map[string]string{"email:a@x.io": ""},
		},
		{
			name: "tombstone deletes profile and index",
			steps: []step{
				{batch(1, prof("p1", "email:a@x.io", "loyalty_id:L1"), prof("p2", "email:b@x.io")), true},
				{batch(2, tomb("p1"), tomb("never-seen")), true},
			},
			applied:  2,
			profiles: 1,
			ignored:  map[string]uint64{},
			lookups:  map[string]string{"email:a@x.io": "", "loyalty_id:L1": "", "email:b@x.io": "p2"},
		},
		{
			name: "re-index when identifiers change",
			steps: []step{
				{batch(1, prof("p1", "email:a@x.io", "loyalty_id:L1")), true},
				{batch(2, prof("p1", "email:new@x.io", "loyalty_id:L1")), true},
			},
			applied:  2,
			profiles: 1,
			ignored:  map[string]uint64{},
			lookups:  map[string]string{"email:a@x.io": "", "email:new@x.io": "p1", "loyalty_id:L1": "p1"},
		},
		{
			name: "identifier moves to another profile (merge)",
			steps: []step{
				{batch(1, prof("p1", "email:a@x.io"), prof("p2", "loyalty_id:L2")), true},
				// p1 merged into p2: p2 now holds both, p1 tombstoned
				// after, which must not remove p2's entry.
				{batch(2, prof("p2", "loyalty_id:L2", "email:a@x.io"), tomb("p1")), true},
			},
			applied:  2,
			profiles: 1,
			ignored:  map[string]uint64{},
			lookups:  map[string]string{"email:a@x.io": "p2", "loyalty_id:L2": "p2"},
		},
		{
			name: "same profile twice in one batch: last wins",
			steps: []step{
				{batch(1, prof("p1", "email:a@x.io"), prof("p1", "email:b@x.io")), true},
			},
			applied:  1,
			profiles: 1,
			ignored:  map[string]uint64{},
			lookups:  map[string]string{"email:a@x.io": "", "email:b@x.io": "p1"},
		},
		{
			name: "full sync pages with tombstones for profiles that left",
			steps: []step{
				{batch(1, prof("p1", "email:a@x.io"), prof("old", "email:old@x.io")), true},
				{full(batch(2, prof("p1", "email:a@x.io"), prof("p2", "email:b@x.io"))), true},
				{full(batch(3, prof("p3", "email:c@x.io"), tomb("old"))), true},
				{full(batch(3, prof("p3", "email:c@x.io"), tomb("old"))), false},
			},
			applied:  3,
			profiles: 3,
			ignored:  map[string]uint64{ReasonDuplicate: 1},
			lookups:  map[string]string{"email:a@x.io": "p1", "email:b@x.io": "p2", "email:c@x.io": "p3", "email:old@x.io": ""},
		},
		{
			name: "invalid profiles and identifiers are skipped, batch applies",
			steps: []step{
				{batch(1, prof(""), prof(strings.Repeat("x", 300)), prof("p1", "email:a@x.io", ":empty-type", "email:", "loyalty_id:"+strings.Repeat("9", 300))), true},
			},
			applied:  1,
			profiles: 1,
			ignored:  map[string]uint64{},
			lookups:  map[string]string{"email:a@x.io": "p1"},
		},
		{
			name:     "empty batch advances the seq",
			steps:    []step{{batch(1), true}},
			applied:  1,
			profiles: 0,
			ignored:  map[string]uint64{},
			lookups:  map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openTest(t, "", nil)
			for i, s := range tt.steps {
				got, err := c.Apply(s.b)
				if err != nil {
					t.Fatalf("step %d: Apply: %v", i, err)
				}
				if got != s.want {
					t.Errorf("step %d (seq %d): applied = %v, want %v", i, s.b.Seq, got, s.want)
				}
			}
			st := c.Stats()
			if st.Applied != tt.applied || c.Applied() != tt.applied {
				t.Errorf("applied = %d, want %d", st.Applied, tt.applied)
			}
			if st.Profiles != tt.profiles {
				t.Errorf("profiles = %d, want %d", st.Profiles, tt.profiles)
			}
			if diff := cmp.Diff(tt.ignored, st.Ignored); diff != "" {
				t.Errorf("ignored (-want +got):\n%s", diff)
			}
			for q, want := range tt.lookups {
				typ, v, _ := strings.Cut(q, ":")
				p, _, err := c.Lookup(typ, v)
				switch {
				case want == "" && !errors.Is(err, ErrNotFound):
					t.Errorf("Lookup(%s) = %v, %v; want ErrNotFound", q, p, err)
				case want != "" && err != nil:
					t.Errorf("Lookup(%s): %v; want %s", q, err, want)
				case want != "" && p.ProfileID != want:
					t.Errorf("Lookup(%s) = %s, want %s", q, p.ProfileID, want)
				}
			}
			assertIndexConsistent(t, c)
		})
	}
}

// assertIndexConsistent checks that the profile count on disk matches
// Stats and that every index entry points at a profile holding it.
func assertIndexConsistent(t *testing.T, c *Cache) {
	t.Helper()
	profiles, index := dumpForTest(t, c)
	if int64(len(profiles)) != c.Stats().Profiles {
		t.Errorf("profiles on disk %d, Stats %d", len(profiles), c.Stats().Profiles)
	}
	for id, pid := range index {
		p, ok := profiles[pid]
		if !ok {
			t.Errorf("index %v points at missing profile %s", id, pid)
			continue
		}
		found := false
		for _, x := range p.Identifiers {
			found = found || x == id
		}
		if !found {
			t.Errorf("index %v points at %s which does not hold it", id, pid)
		}
	}
}

func TestFullSyncRecorded(t *testing.T) {
	clk := &fixedClock{t: t0}
	c := openTest(t, "", func(o *Options) { o.Now = clk.Now })
	if _, err := c.Apply(batch(1, prof("p1"))); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); !st.LastFullSyncAt.IsZero() || !st.LastSnapshotAt.Equal(t0) {
		t.Fatalf("after a delta: %+v", st)
	}
	clk.t = t0.Add(time.Hour)
	b := batch(2, prof("p2"))
	b.FullSync = true
	if _, err := c.Apply(b); err != nil {
		t.Fatal(err)
	}
	if st := c.Stats(); !st.LastFullSyncAt.Equal(clk.t) || !st.LastSnapshotAt.Equal(clk.t) {
		t.Fatalf("after a full sync page: %+v", st)
	}
}

func TestRestartSurvives(t *testing.T) {
	dir := t.TempDir()
	clk := &fixedClock{t: t0}
	o := Options{Dir: dir, Now: clk.Now, Logger: testLogger(t)}
	c, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	p := prof("p1", "email:a@x.io", "loyalty_id:L1")
	p.Offers = []protocol.Offer{{Product: "pillow-cover", Score: 0.8, Reason: "bought pillows"}}
	p.Consent = map[string]bool{"marketing": true}
	p.Computed = map[string]any{"orders": int64(3)}
	full := batch(2, prof("p2", "email:b@x.io"))
	full.FullSync = true
	for _, b := range []*protocol.SnapshotBatch{batch(1, p), full, batch(3, tomb("p2"))} {
		if ok, err := c.Apply(b); !ok || err != nil {
			t.Fatalf("Apply seq %d: %v %v", b.Seq, ok, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Apply(batch(4)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Apply after Close: %v, want ErrClosed", err)
	}
	if _, _, err := c.Lookup("email", "a@x.io"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Lookup after Close: %v, want ErrClosed", err)
	}

	clk.t = t0.Add(time.Hour)
	c2, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	st := c2.Stats()
	want := Stats{Profiles: 1, Applied: 3, LastSnapshotAt: t0, LastFullSyncAt: t0, Ignored: map[string]uint64{}}
	if diff := cmp.Diff(want, st); diff != "" {
		t.Errorf("stats after reopen (-want +got):\n%s", diff)
	}
	got, recv, err := c2.Lookup("loyalty_id", "L1")
	if err != nil {
		t.Fatal(err)
	}
	if !recv.Equal(t0) {
		t.Errorf("received = %v, want %v", recv, t0)
	}
	p.UpdatedAt = p.UpdatedAt.UTC()
	if diff := cmp.Diff(&p, got); diff != "" {
		t.Errorf("profile after reopen (-want +got):\n%s", diff)
	}
	if ok, _ := c2.Apply(batch(3)); ok {
		t.Error("seq 3 applied twice after reopen")
	}
	if ok, err := c2.Apply(batch(4)); !ok || err != nil {
		t.Errorf("seq 4 after reopen: %v %v", ok, err)
	}
}

func TestLookupHashingAndNormalisation(t *testing.T) {
	const salt = "tenant-salt"
	hash := func(v string) string { return protocol.HashIdentifier(salt, v) }
	tests := []struct {
		name      string
		salt      string
		types     []string
		stored    []string // identifiers as the hub sends them
		typ, q    string
		want      string // profile id or "" for ErrNotFound
		wantError error
	}{
		{name: "email hashed, query with spaces and upper case", salt: salt,
			stored: []string{"email:" + hash("ana@example.com")}, typ: "email", q: "  Ana@Example.COM ", want: "p1"},
		{name: "national phone hashed", salt: salt,
			stored: []string{"phone:" + hash("+393331234567")}, typ: "phone", q: "333 123 4567", want: "p1"},
		{name: "international phone with 00 prefix", salt: salt,
			stored: []string{"phone:" + hash("+393331234567")}, typ: "phone", q: "0039 333-123-4567", want: "p1"},
		{name: "loyalty id not hashed by default", salt: salt,
			stored: []string{"loyalty_id:L-77"}, typ: "loyalty_id", q: "L-77", want: "p1"},
		{name: "configured hashed type", salt: salt, types: []string{"loyalty_id"},
			stored: []string{"loyalty_id:" + hash("L-77")}, typ: "loyalty_id", q: "L-77", want: "p1"},
		{name: "email no longer hashed when types exclude it", salt: salt, types: []string{},
			stored: []string{"email:ana@example.com"}, typ: "email", q: "ANA@example.com", want: "p1"},
		{name: "empty salt still hashes, as the hub does", salt: "",
			stored: []string{"email:" + protocol.HashIdentifier("", "ana@example.com")}, typ: "email", q: " Ana@example.com", want: "p1"},
		{name: "wrong salt misses", salt: "other",
			stored: []string{"email:" + hash("ana@example.com")}, typ: "email", q: "ana@example.com"},
		{name: "raw value of hashed type misses", salt: salt,
			stored: []string{"email:ana@example.com"}, typ: "email", q: "ana@example.com"},
		{name: "empty value", salt: salt, typ: "email", q: "", wantError: ErrInvalid},
		{name: "too long value", salt: salt, typ: "loyalty_id", q: strings.Repeat("1", 257), wantError: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := openTest(t, "", func(o *Options) {
				o.HashSalt, o.HashTypes, o.DefaultCountryCode = tt.salt, tt.types, "39"
			})
			if _, err := c.Apply(batch(1, prof("p1", tt.stored...))); err != nil {
				t.Fatal(err)
			}
			p, _, err := c.Lookup(tt.typ, tt.q)
			switch {
			case tt.wantError != nil:
				if !errors.Is(err, tt.wantError) {
					t.Fatalf("err = %v, want %v", err, tt.wantError)
				}
			case tt.want == "":
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("got %v, %v; want ErrNotFound", p, err)
				}
			case err != nil:
				t.Fatal(err)
			case p.ProfileID != tt.want:
				t.Fatalf("profile %s, want %s", p.ProfileID, tt.want)
			}
		})
	}
}

func TestLargeBatchSplitsTransactions(t *testing.T) {
	c := openTest(t, "", nil)
	big := strings.Repeat("v", 2000)
	var ps []protocol.ProfileSnapshot
	for i := range 3000 {
		p := prof(fmt.Sprintf("p%05d", i), fmt.Sprintf("email:u%d@x.io", i), fmt.Sprintf("loyalty_id:L%d", i))
		p.Traits["blob"] = big
		ps = append(ps, p)
	}
	b := batch(1, ps...)
	b.FullSync = true
	if ok, err := c.Apply(b); !ok || err != nil {
		t.Fatalf("Apply: %v %v", ok, err)
	}
	if n := c.Stats().Profiles; n != 3000 {
		t.Fatalf("profiles = %d, want 3000", n)
	}
	if p, _, err := c.Lookup("loyalty_id", "L2999"); err != nil || p.ProfileID != "p02999" {
		t.Fatalf("Lookup: %v %v", p, err)
	}
}
