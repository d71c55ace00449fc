package store

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/unico-cdp/unico/hub/identity"
	"github.com/unico-cdp/unico/hub/profile"
	"github.com/unico-cdp/unico/protocol"
)

// TestRefusedRepeatWithFreshIdentifier: a family's e-mail seen with two
// loyalty cards is refused once; a later event of the second card with the
// e-mail and a new browser's anonymous id is attached without a
// re-partition, the anonymous id joins the card's profile with the link in
// its merge history, and the store holds what one holds that received the
// events the other way round.
func TestRefusedRepeatWithFreshIdentifier(t *testing.T) {
	fam, l1, l2 := id(protocol.IDEmail, "family@x.co"), id(protocol.IDLoyaltyID, "L1"), id(protocol.IDLoyaltyID, "L2")
	anon := id(protocol.IDAnonymousID, "a-new")
	evs := []protocol.Event{
		order("e001", 1, 10, "s1", l1, fam),
		order("e002", 2, 20, "s1", l2, fam),
		order("e003", 3, 30, "s2", l2, fam, anon),
	}
	s := open(t)
	commit(t, s, evs[0], evs[1])
	before := s.Stats()
	commit(t, s, evs[2])
	after := s.Stats()
	if after.Repartitions != before.Repartitions || after.RefusedRepeats != before.RefusedRepeats+1 {
		t.Fatalf("repartitions %d → %d, refused repeats %d → %d; want the repeat attached", before.Repartitions, after.Repartitions, before.RefusedRepeats, after.RefusedRepeats)
	}
	card, err := s.Lookup(l2)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Lookup(anon); err != nil || got.ID != card.ID {
		t.Fatalf("anonymous id in profile %v (%v), want the card's %s", got, err, card.ID)
	}
	merges, err := s.Merges(card.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(merges, func(m MergeRecord) bool {
		return m.EventID == "e003" && slices.ContainsFunc(m.Links, func(d identity.Decision) bool { return d.B == anon && d.Linked })
	}) {
		t.Fatalf("no merge record links %s by e003: %+v", anon, merges)
	}
	r := open(t)
	commit(t, r, evs[2])
	commit(t, r, evs[1])
	commit(t, r, evs[0])
	if diff := cmp.Diff(snap(t, r), snap(t, s)); diff != "" {
		t.Fatalf("store content depends on arrival order (-reversed +in order):\n%s", diff)
	}
}

// TestRefusedRepeatsOrderIndependence: households whose members share
// e-mails and phones across loyalty cards, browsing from new browsers most
// of the time (the case the repeat shortcut takes with fresh identifiers),
// end up as identity.Partition says, whatever the order of arrival.
func TestRefusedRepeatsOrderIndependence(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(2, 30).Draw(rt, "n")
		evs := make([]protocol.Event, n)
		for i := range evs {
			ids := []protocol.Identifier{
				id(protocol.IDLoyaltyID, fmt.Sprintf("L%d", rapid.IntRange(0, 2).Draw(rt, "card"))),
				id(protocol.IDEmail, fmt.Sprintf("fam%d@x.co", rapid.IntRange(0, 1).Draw(rt, "email"))),
			}
			if rapid.Bool().Draw(rt, "phone") {
				ids = append(ids, id(protocol.IDPhone, fmt.Sprintf("+4470%d", rapid.IntRange(0, 1).Draw(rt, "phone-v"))))
			}
			switch rapid.IntRange(0, 3).Draw(rt, "anon") {
			case 0, 1: // a new browser
				ids = append(ids, id(protocol.IDAnonymousID, fmt.Sprintf("new-%d", i)))
			case 2: // a browser seen before
				ids = append(ids, id(protocol.IDAnonymousID, fmt.Sprintf("old-%d", rapid.IntRange(0, 2).Draw(rt, "old"))))
			}
			evs[i] = order(fmt.Sprintf("e%03d", rapid.IntRange(0, 999).Draw(rt, "id")), rapid.IntRange(0, 50).Draw(rt, "min"), 10, "s1", ids...)
		}
		slices.SortFunc(evs, func(a, b protocol.Event) int { return compareStrings(a.ID, b.ID) })
		evs = slices.CompactFunc(evs, func(a, b protocol.Event) bool { return a.ID == b.ID })
		arrival := rapid.Permutation(evs).Draw(rt, "arrival")
		a, b := openCheck(rt, t), openCheck(rt, t)
		for _, e := range arrival {
			commit(t, a, e)
		}
		for _, e := range evs {
			commit(t, b, e)
		}
		sa := snap(t, a)
		if diff := cmp.Diff(snap(t, b), sa); diff != "" {
			rt.Fatalf("store content depends on arrival order (-by id +drawn order):\n%s", diff)
		}
		ptrs := make([]*protocol.Event, len(evs))
		for i := range evs {
			ptrs[i] = &evs[i]
		}
		var got [][]protocol.Identifier
		for _, pc := range sa {
			got = append(got, pc.Identifiers)
		}
		slices.SortFunc(got, func(x, y []protocol.Identifier) int { return profile.CompareIdentifiers(x[0], y[0]) })
		if diff := cmp.Diff(identity.Partition(ptrs, a.Rules(), identity.Options{}).Groups, got); diff != "" {
			rt.Fatalf("store partition differs from identity.Partition (-want +got):\n%s", diff)
		}
	})
}

// TestTypeRun: counting a type's identifiers by binary search in a sorted
// list agrees with counting them one by one.
func TestTypeRun(t *testing.T) {
	typ := rapid.SampledFrom([]string{"", "a", "anonymous_id", "email", "email2", "phone", "z"})
	rapid.Check(t, func(t *rapid.T) {
		var p profile.Profile
		for _, x := range rapid.SliceOfN(rapid.Custom(func(t *rapid.T) protocol.Identifier {
			return protocol.Identifier{Type: typ.Draw(t, "type"), Value: rapid.StringN(0, 3, -1).Draw(t, "value")}
		}), 0, 40).Draw(t, "ids") {
			p.AddIdentifier(x)
		}
		want := typ.Draw(t, "count")
		n := 0
		for _, x := range p.Identifiers {
			if x.Type == want {
				n++
			}
		}
		if got := typeRun(p.Identifiers, want); got != n {
			t.Fatalf("typeRun(%v, %q) = %d, want %d", p.Identifiers, want, got, n)
		}
	})
}

// TestLimitedCountsFollowChanges: the cached counts of a record's limited
// identifiers follow every change of its list: inserts (in place when the
// list has room), clones, lists replaced; under the default rules and
// under rules whose default type has a limit too.
func TestLimitedCountsFollowChanges(t *testing.T) {
	typ := rapid.SampledFrom([]string{"anonymous_id", "email", "loyalty_id", "phone", "zz"})
	rapid.Check(t, func(t *rapid.T) {
		rules := identity.DefaultRules()
		if rapid.Bool().Draw(t, "limited-default") {
			rules.Default.MaxPerProfile = 2
		}
		r := &record{}
		ident := func(t *rapid.T) protocol.Identifier {
			return protocol.Identifier{Type: typ.Draw(t, "type"), Value: rapid.StringN(1, 3, -1).Draw(t, "value")}
		}
		for range rapid.IntRange(1, 30).Draw(t, "steps") {
			switch rapid.IntRange(0, 3).Draw(t, "change") {
			case 0:
				r.P.AddIdentifier(ident(t))
			case 1:
				r = r.clone()
			case 2:
				r.P.Identifiers = slices.Grow(r.P.Identifiers, 8)
			case 3:
				var p profile.Profile
				for range rapid.IntRange(0, 5).Draw(t, "n") {
					p.AddIdentifier(ident(t))
				}
				r.P.Identifiers = p.Identifiers
			}
			want := map[string]int{}
			for _, x := range r.P.Identifiers {
				if rules.Limited(x.Type) {
					want[x.Type]++
				}
			}
			got := map[string]int{}
			for _, c := range r.limitedCounts(rules) {
				got[c.typ] = c.n
			}
			if !cmp.Equal(got, want) {
				t.Fatalf("counts %v of %v, want %v", got, r.P.Identifiers, want)
			}
		}
	})
}
