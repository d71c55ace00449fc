package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/unico-cdp/unico/hub/identity"
	"github.com/unico-cdp/unico/hub/profile"
	"github.com/unico-cdp/unico/protocol"
)

// openCheck opens a store closed when one property check ends.
func openCheck(rt *rapid.T, t *testing.T) *Store {
	// Small timeline pages: profiles of a few events fill them.
	s, err := Open(Options{Dir: t.TempDir(), timelinePage: rapid.IntRange(1, 5).Draw(rt, "page")})
	if err != nil {
		rt.Fatal(err)
	}
	rt.Cleanup(func() { s.Close() })
	return s
}

func open(t testing.TB) *Store {
	t.Helper()
	s, err := Open(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

var base = time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)

func order(id string, minute int, revenue float64, site string, ids ...protocol.Identifier) protocol.Event {
	return protocol.Event{
		ID: id, Type: protocol.TypeTrack, Name: "Order Completed", Channel: protocol.ChannelPOS,
		Source: protocol.Source{Tenant: "t", Site: site, Edge: "e1"}, Identifiers: ids,
		Properties: map[string]any{"revenue": revenue, "products": []any{map[string]any{"product_id": fmt.Sprintf("P%d", minute%4)}}},
		Traits:     map[string]any{"name": id},
		Consent:    map[string]bool{"marketing": minute%2 == 0},
		OccurredAt: base.Add(time.Duration(minute) * time.Minute), ReceivedAt: base,
	}
}

func id(t, v string) protocol.Identifier { return protocol.Identifier{Type: t, Value: v} }

// snapshot is the order-independent content of a store: each profile's
// identifiers and summaries, keyed by its smallest identifier.
type snapshot map[string]profileContent

type profileContent struct {
	Identifiers []protocol.Identifier
	Traits      map[string]profile.Trait
	Consent     map[string]profile.Consent
	Computed    profile.Computed
	Events      []string
}

func snap(t testing.TB, s *Store) snapshot {
	t.Helper()
	out := snapshot{}
	cursor := ""
	for {
		views, page, err := s.Profiles(cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range views {
			evs := timeline(t, s, v.ID)
			var ids []string
			for _, e := range evs {
				ids = append(ids, e.ID)
			}
			slices.Sort(ids)
			out[v.Identifiers[0].String()] = profileContent{v.Identifiers, v.Traits, v.Consent, v.Computed, ids}
		}
		if page.Next == "" {
			return out
		}
		cursor = page.Next
	}
}

// timeline returns the events of profile id, newest first, read in one
// page; it checks their order and that pages of two and of three events
// give the same list.
func timeline(t testing.TB, s *Store, id string) []protocol.Event {
	t.Helper()
	all, page, err := s.Events(id, "", 100000)
	if err != nil {
		t.Fatal(err)
	}
	if page.Next != "" {
		t.Fatalf("timeline of %s: a next page after all events", id)
	}
	for i := 1; i < len(all); i++ {
		if compareTL(entryOf(&all[i-1]), entryOf(&all[i])) <= 0 {
			t.Fatalf("timeline of %s out of order at %d: %v before %v", id, i, entryOf(&all[i-1]), entryOf(&all[i]))
		}
	}
	for _, limit := range []int{2, 3} {
		var paged []string
		cursor := ""
		for range len(all) + 2 {
			evs, page, err := s.Events(id, cursor, limit)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				paged = append(paged, e.ID)
			}
			if cursor = page.Next; cursor == "" {
				break
			}
		}
		var want []string
		for _, e := range all {
			want = append(want, e.ID)
		}
		if !slices.Equal(paged, want) {
			t.Fatalf("timeline of %s in pages of %d:\n%v\nin one:\n%v", id, limit, paged, want)
		}
	}
	return all
}

func commit(t testing.TB, s *Store, evs ...protocol.Event) Result {
	t.Helper()
	res, err := s.Commit(context.Background(), &protocol.Batch{Tenant: "t", EdgeID: "e1", Events: evs})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// drawOrders draws 1 to maxN orders, each with 1 to 3 identifiers of
// types whose values are 0 to maxValue, at sites s0 to s<sites-1>.
func drawOrders(rt *rapid.T, types []string, maxN, maxValue, sites int) []protocol.Event {
	n := rapid.IntRange(1, maxN).Draw(rt, "n")
	var evs []protocol.Event
	for i := 0; i < n; i++ {
		k := rapid.IntRange(1, 3).Draw(rt, "k")
		var ids []protocol.Identifier
		for j := 0; j < k; j++ {
			typ := rapid.SampledFrom(types).Draw(rt, "type")
			ids = append(ids, id(typ, fmt.Sprintf("%s-%d", typ[:2], rapid.IntRange(0, maxValue).Draw(rt, "v"))))
		}
		evs = append(evs, order(fmt.Sprintf("e%03d", i), rapid.IntRange(0, 50).Draw(rt, "min"), float64(rapid.IntRange(1, 9999).Draw(rt, "rev"))/100, fmt.Sprintf("s%d", i%sites), ids...))
	}
	return evs
}

func TestStoreOrderIndependence(t *testing.T) {
	types := []string{protocol.IDUserID, protocol.IDLoyaltyID, protocol.IDEmail, protocol.IDPhone, protocol.IDAnonymousID}
	rapid.Check(t, func(rt *rapid.T) {
		evs := drawOrders(rt, types, 30, 5, 3)
		// Closed at the end of each check: stores left open until the
		// test ends would all run their background work meanwhile.
		a := openCheck(rt, t)
		for _, e := range evs {
			commit(t, a, e)
		}
		perm := rapid.Permutation(evs).Draw(rt, "perm")
		dups := rapid.SliceOfN(rapid.SampledFrom(evs), 0, 8).Draw(rt, "dups")
		// b gets them pipelined: CommitAsync without waiting, in small
		// transactions, so that most resolve on top of pending ones, and
		// with node and event caches small enough to evict.
		b, err := Open(Options{Dir: t.TempDir(), MaxTxnEvents: rapid.IntRange(1, 3).Draw(rt, "txn"),
			timelinePage: rapid.IntRange(1, 5).Draw(rt, "page"),
			CacheNodes:   rapid.IntRange(1, 60).Draw(rt, "cacheNodes"), CacheEvents: rapid.IntRange(1, 20).Draw(rt, "cacheEvents")})
		if err != nil {
			rt.Fatal(err)
		}
		defer b.Close()
		all := append(perm, dups...)
		var wg sync.WaitGroup
		var dupsSeen atomic.Int64
		errs := make(chan error, len(all))
		for len(all) > 0 {
			k := min(len(all), rapid.IntRange(1, 5).Draw(rt, "batch"))
			wg.Add(1)
			b.CommitAsync(context.Background(), []*protocol.Batch{{Tenant: "t", EdgeID: "e1", Events: all[:k]}}, func(res []Result, err error) {
				defer wg.Done()
				if err != nil {
					errs <- err
				}
				dupsSeen.Add(int64(res[0].Duplicates))
			})
			all = all[k:]
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			rt.Fatal(err)
		}
		if dupsSeen.Load() != int64(len(dups)) {
			rt.Fatalf("%d duplicates reported, want %d", dupsSeen.Load(), len(dups))
		}
		sa, sb := snap(t, a), snap(t, b)
		if diff := cmp.Diff(sa, sb); diff != "" {
			rt.Fatalf("store content depends on arrival order (-in order +shuffled):\n%s", diff)
		}
		// And it is what Partition says for the whole set.
		ptrs := make([]*protocol.Event, len(evs))
		for i := range evs {
			ptrs[i] = &evs[i]
		}
		res := identity.Partition(ptrs, a.Rules(), identity.Options{})
		var want, got [][]protocol.Identifier
		want = res.Groups
		for _, pc := range sa {
			got = append(got, pc.Identifiers)
		}
		slices.SortFunc(got, func(x, y []protocol.Identifier) int { return profile.CompareIdentifiers(x[0], y[0]) })
		if diff := cmp.Diff(want, got); diff != "" {
			rt.Fatalf("store partition differs from identity.Partition (-want +got):\n%s", diff)
		}
		if a.Stats().Events != int64(len(evs)) || b.Stats().Events != int64(len(evs)) {
			rt.Fatalf("events counted %d and %d, want %d", a.Stats().Events, b.Stats().Events, len(evs))
		}
	})
}

// TestFailedCommitDropsLaterOnes fails some of Badger's commits while
// groups are pipelined: a failed transaction's group hears the error, so
// do the groups resolved on top of it (never written), and once the
// failed groups are sent again the store holds what an undisturbed one
// holds. A group resolved after the failure was known does not fail.
func TestFailedCommitDropsLaterOnes(t *testing.T) {
	types := []string{protocol.IDLoyaltyID, protocol.IDEmail, protocol.IDPhone, protocol.IDAnonymousID}
	rapid.Check(t, func(rt *rapid.T) {
		evs := drawOrders(rt, types, 25, 4, 1)
		// Closed at the end of each check: stores left open until the
		// test ends would all run their background work meanwhile.
		a := openCheck(rt, t)
		for _, e := range evs {
			commit(t, a, e)
		}
		failing := map[int]bool{}
		for _, c := range rapid.SliceOfN(rapid.IntRange(0, 12), 1, 4).Draw(rt, "failing") {
			failing[c] = true
		}
		var commits, failed atomic.Int64
		var b *Store
		// submitted is set once a round has handed all its groups over.
		var submitted atomic.Bool
		b, err := Open(Options{Dir: t.TempDir(), MaxTxnEvents: rapid.IntRange(1, 3).Draw(rt, "txn"),
			timelinePage: rapid.IntRange(1, 5).Draw(rt, "page"),
			CacheNodes:   rapid.IntRange(1, 60).Draw(rt, "cacheNodes"),
			commitFault: func() error {
				if !failing[int(commits.Add(1))-1] {
					return nil
				}
				failed.Add(1)
				// Fail once the writer has queued a transaction on top of
				// this one, or has no more to submit (or is stuck).
				for deadline := time.Now().Add(2 * time.Second); !submitted.Load() && time.Now().Before(deadline); {
					b.pipeMu.Lock()
					queued := b.queued != nil
					b.pipeMu.Unlock()
					if queued {
						break
					}
					time.Sleep(50 * time.Microsecond)
				}
				return errors.New("injected write error")
			}})
		if err != nil {
			rt.Fatal(err)
		}
		defer b.Close()
		var groups [][]protocol.Event
		for rest := evs; len(rest) > 0; {
			k := min(len(rest), rapid.IntRange(1, 4).Draw(rt, "group"))
			groups, rest = append(groups, rest[:k]), rest[k:]
		}
		for round := 0; len(groups) > 0; round++ {
			if round > 2*len(failing)+1 {
				rt.Fatalf("groups still failing after %d rounds", round)
			}
			var mu sync.Mutex
			var wg sync.WaitGroup
			var again [][]protocol.Event
			submitted.Store(false)
			for _, g := range groups {
				wg.Add(1)
				b.CommitAsync(context.Background(), []*protocol.Batch{{Tenant: "t", EdgeID: "e1", Events: g}}, func(_ []Result, err error) {
					defer wg.Done()
					if err != nil {
						mu.Lock()
						again = append(again, g)
						mu.Unlock()
					}
				})
			}
			submitted.Store(true)
			wg.Wait()
			groups = again
		}
		if diff := cmp.Diff(snap(t, a), snap(t, b)); diff != "" {
			rt.Fatalf("store after failed commits and retries differs (-undisturbed +retried):\n%s", diff)
		}
		if got := b.Stats().Events; got != int64(len(evs)) {
			rt.Fatalf("events counted %d, want %d (%d commits failed)", got, len(evs), failed.Load())
		}
	})
}

func TestStoreStitchAndTotals(t *testing.T) {
	s := open(t)
	commit(t, s,
		order("o1", 1, 10.10, "s1", id("anonymous_id", "web-1")),
		order("o2", 2, 20.20, "s2", id("loyalty_id", "L1")),
	)
	commit(t, s, protocol.Event{ID: "i1", Type: protocol.TypeIdentify, Identifiers: []protocol.Identifier{id("anonymous_id", "web-1"), id("email", "ana@example.org")}, OccurredAt: base, ReceivedAt: base})
	commit(t, s, protocol.Event{ID: "i2", Type: protocol.TypeIdentify, Identifiers: []protocol.Identifier{id("loyalty_id", "L1"), id("email", "ana@example.org")}, OccurredAt: base, ReceivedAt: base})
	v, err := s.Lookup(id("email", "ana@example.org"))
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Identifiers) != 3 || v.Computed.Orders != 2 || v.Computed.Revenue != profile.MoneyOf(30.30) || v.Computed.Events != 4 {
		t.Fatalf("profile = %+v", v)
	}
	if s.Stats().Profiles != 1 {
		t.Fatalf("profiles = %d, want 1", s.Stats().Profiles)
	}
	merges, err := s.Merges(v.ID)
	if err != nil {
		t.Fatal(err)
	}
	var linkEvents []string
	for _, m := range merges {
		for _, l := range m.Links {
			linkEvents = append(linkEvents, l.EventID)
		}
	}
	slices.Sort(linkEvents)
	if diff := cmp.Diff([]string{"i1", "i2"}, linkEvents); diff != "" {
		t.Fatalf("merge history events (-want +got):\n%s", diff)
	}
	// Duplicates do not count twice.
	res := commit(t, s, order("o1", 1, 10.10, "s1", id("anonymous_id", "web-1")))
	if res.Duplicates != 1 || res.Accepted != 0 {
		t.Fatalf("replay: %+v", res)
	}
	v, _ = s.Lookup(id("email", "ana@example.org"))
	if v.Computed.Orders != 2 {
		t.Fatalf("orders after replay = %d", v.Computed.Orders)
	}
}

func TestStoreSharedCardAndUnmerge(t *testing.T) {
	s := open(t)
	for i := 0; i < 10; i++ {
		commit(t, s, order(fmt.Sprintf("o%d", i), i, 5, "s1", id("loyalty_id", "STORE-GENERIC"), id("email", fmt.Sprintf("c%d@example.org", i))))
	}
	if got := s.Stats().Profiles; got != 10 {
		t.Fatalf("profiles = %d, want 10 (a shared card must not fuse customers)", got)
	}
	info, err := s.Identifier(id("loyalty_id", "STORE-GENERIC"))
	if err != nil || !info.Shared {
		t.Fatalf("store card: %+v, %v", info, err)
	}
	// Unmerge: a phone wrongly linked to a customer is split off.
	commit(t, s, order("p1", 30, 7, "s1", id("email", "c1@example.org"), id("phone", "+447700900001")))
	v, _ := s.Lookup(id("email", "c1@example.org"))
	if len(v.Identifiers) != 2 {
		t.Fatalf("before unmerge: %v", v.Identifiers)
	}
	if err := s.Isolate(id("phone", "+447700900001")); err != nil {
		t.Fatal(err)
	}
	v, _ = s.Lookup(id("email", "c1@example.org"))
	pv, _ := s.Lookup(id("phone", "+447700900001"))
	if len(v.Identifiers) != 1 || pv == nil || pv.ID == v.ID {
		t.Fatalf("after unmerge: %v / %v", v, pv)
	}
	// The event that carried both stays with the strongest identifier.
	if v.Computed.Orders != 2 {
		t.Fatalf("orders of c1 after unmerge = %d, want 2", v.Computed.Orders)
	}
}

func TestStoreSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, order("o1", 1, 10, "s1", id("email", "a@b.co"), id("loyalty_id", "L9")))
	s.Close()
	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Stats(); st.Profiles != 1 || st.Events != 1 {
		t.Fatalf("stats after reopen: %+v", st)
	}
	// Change marks not yet cleared survive the restart.
	if cs, err := s.Changes(10); err != nil || len(cs) != 1 || cs[0].Profile == nil {
		t.Fatalf("changes after reopen: %+v %v", cs, err)
	}
	if res := commit(t, s, order("o1", 1, 10, "s1", id("email", "a@b.co"))); res.Duplicates != 1 {
		t.Fatalf("dedupe after reopen: %+v", res)
	}
}

func TestChangesVersioned(t *testing.T) {
	s := open(t)
	commit(t, s, order("o1", 1, 10, "s1", id("email", "a@b.co")))
	cs, err := s.Changes(10)
	if err != nil || len(cs) != 1 || cs[0].Profile == nil {
		t.Fatalf("changes: %+v, %v", cs, err)
	}
	// The profile changes again before the first change is cleared.
	commit(t, s, order("o2", 2, 10, "s1", id("email", "a@b.co")))
	if err := s.ClearChanges(cs); err != nil {
		t.Fatal(err)
	}
	again, _ := s.Changes(10)
	if len(again) != 1 || again[0].Profile.Computed.Orders != 2 {
		t.Fatalf("the newer change must stay listed: %+v", again)
	}
	if err := s.ClearChanges(again); err != nil {
		t.Fatal(err)
	}
	if left, _ := s.Changes(10); len(left) != 0 {
		t.Fatalf("changes left: %+v", left)
	}
	// A merge lists the absorbed profile with where it went.
	commit(t, s, order("o3", 3, 10, "s1", id("loyalty_id", "L1")))
	commit(t, s, order("o4", 4, 10, "s1", id("loyalty_id", "L1"), id("email", "a@b.co")))
	cs, _ = s.Changes(10)
	merged := 0
	for _, c := range cs {
		if c.Profile == nil && c.MergedInto != "" {
			merged++
		}
	}
	if merged != 1 {
		t.Fatalf("want one merged-away profile among %+v", cs)
	}
}

// ClearChanges does not wait for a busy writer: the marks go with the
// writer's next commit, and a profile marked again in that very commit
// stays marked, also after a restart.
func TestClearChangesWhileWriterBusy(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, order("o1", 1, 10, "s1", id("email", "a@b.co")))
	commit(t, s, order("o2", 2, 10, "s1", id("email", "c@d.co")))
	cs, err := s.Changes(10)
	if err != nil || len(cs) != 2 {
		t.Fatalf("changes: %+v, %v", cs, err)
	}
	s.mu.Lock() // the writer is busy
	if err := s.ClearChanges(cs); err != nil {
		t.Fatal(err)
	}
	s.mu.Unlock()
	if left, _ := s.Changes(10); len(left) != 0 {
		t.Fatalf("cleared changes still listed: %+v", left)
	}
	// The next commit deletes both marks and marks a@b.co's profile again.
	commit(t, s, order("o3", 3, 10, "s1", id("email", "a@b.co")))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	left, err := s.Changes(10)
	if err != nil || len(left) != 1 || left[0].Profile == nil || left[0].Profile.Computed.Orders != 2 {
		t.Fatalf("after restart want only a@b.co's profile (2 orders) marked: %+v, %v", left, err)
	}
}
