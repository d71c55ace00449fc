package identity

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/unico-cdp/unico/protocol"
	"pgregory.net/rapid"
)

func id(t, v string) protocol.Identifier { return protocol.Identifier{Type: t, Value: v} }

func ev(eid string, ids ...protocol.Identifier) *protocol.Event {
	return &protocol.Event{ID: eid, Type: protocol.TypeTrack, Identifiers: ids}
}

// genEvents draws events over a small identifier space so that links,
// limits and sharing all happen.
func genEvents(t *rapid.T) []*protocol.Event {
	types := []string{protocol.IDUserID, protocol.IDLoyaltyID, protocol.IDEmail, protocol.IDPhone, protocol.IDAnonymousID}
	n := rapid.IntRange(1, 40).Draw(t, "n")
	evs := make([]*protocol.Event, n)
	for i := range evs {
		k := rapid.IntRange(1, 4).Draw(t, "k")
		e := &protocol.Event{ID: fmt.Sprintf("e%03d", i), Type: protocol.TypeTrack}
		for j := 0; j < k; j++ {
			typ := rapid.SampledFrom(types).Draw(t, "type")
			val := fmt.Sprintf("%s-%d", typ[:2], rapid.IntRange(0, 6).Draw(t, "val"))
			e.Identifiers = append(e.Identifiers, id(typ, val))
		}
		evs[i] = e
	}
	return evs
}

func TestPartitionOrderIndependent(t *testing.T) {
	r := DefaultRules()
	rapid.Check(t, func(t *rapid.T) {
		evs := genEvents(t)
		want := Partition(evs, r, Options{})
		// Shuffle and duplicate.
		perm := rapid.Permutation(evs).Draw(t, "perm")
		dups := rapid.SliceOfN(rapid.SampledFrom(evs), 0, 10).Draw(t, "dups")
		got := Partition(append(perm, dups...), r, Options{})
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("partition depends on order (-want +got):\n%s", diff)
		}
		// Limits hold in every group.
		for _, g := range got.Groups {
			counts := map[string]int{}
			for _, x := range g {
				counts[x.Type]++
			}
			for typ, c := range counts {
				if max := r.Rule(typ).MaxPerProfile; max > 0 && c > max {
					t.Fatalf("group %v holds %d %s, limit %d", g, c, typ, max)
				}
			}
		}
	})
}

func TestSharedCardNeverFuses(t *testing.T) {
	r := DefaultRules()
	var evs []*protocol.Event
	for i := 0; i < 20; i++ {
		evs = append(evs, ev(fmt.Sprintf("e%02d", i), id("loyalty_id", "STORE-CARD"), id("email", fmt.Sprintf("c%d@example.org", i))))
	}
	res := Partition(evs, r, Options{})
	if len(res.Groups) != 20 {
		t.Fatalf("got %d profiles, want 20: %v", len(res.Groups), res.Groups)
	}
	if diff := cmp.Diff([]protocol.Identifier{id("loyalty_id", "STORE-CARD")}, res.Shared); diff != "" {
		t.Fatalf("shared (-want +got):\n%s", diff)
	}
}

func TestPartitionCases(t *testing.T) {
	r := DefaultRules()
	tests := []struct {
		name     string
		events   []*protocol.Event
		isolated []protocol.Identifier
		groups   [][]protocol.Identifier
		refused  []Decision
	}{
		{
			name: "chain links anonymous, email and loyalty",
			events: []*protocol.Event{
				ev("1", id("anonymous_id", "a1"), id("email", "x@y.z")),
				ev("2", id("loyalty_id", "L1"), id("email", "x@y.z")),
			},
			groups: [][]protocol.Identifier{{id("anonymous_id", "a1"), id("email", "x@y.z"), id("loyalty_id", "L1")}},
		},
		{
			name: "second loyalty card is refused, weaker link loses",
			events: []*protocol.Event{
				ev("1", id("loyalty_id", "L1"), id("email", "x@y.z")),
				ev("2", id("loyalty_id", "L2"), id("email", "x@y.z")),
			},
			groups: [][]protocol.Identifier{
				{id("email", "x@y.z"), id("loyalty_id", "L1")},
				{id("loyalty_id", "L2")},
			},
			refused: []Decision{{EventID: "2", A: id("loyalty_id", "L2"), B: id("email", "x@y.z"), Reason: ReasonLimit, Type: "loyalty_id"}},
		},
		{
			name:   "never-link values are ignored",
			events: []*protocol.Event{ev("1", id("loyalty_id", "0000000000"), id("email", "a@b.c")), ev("2", id("loyalty_id", "0000000000"), id("email", "d@e.f"))},
			groups: [][]protocol.Identifier{{id("email", "a@b.c")}, {id("email", "d@e.f")}},
		},
		{
			name:     "isolated identifier stays alone",
			events:   []*protocol.Event{ev("1", id("email", "a@b.c"), id("phone", "+15550001111"))},
			isolated: []protocol.Identifier{id("phone", "+15550001111")},
			groups:   [][]protocol.Identifier{{id("email", "a@b.c")}, {id("phone", "+15550001111")}},
			refused:  []Decision{{EventID: "1", A: id("email", "a@b.c"), B: id("phone", "+15550001111"), Reason: ReasonIsolated}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			iso := map[protocol.Identifier]bool{}
			for _, x := range tt.isolated {
				iso[x] = true
			}
			res := Partition(tt.events, r, Options{Isolated: func(x protocol.Identifier) bool { return iso[x] }})
			if diff := cmp.Diff(tt.groups, res.Groups); diff != "" {
				t.Errorf("groups (-want +got):\n%s", diff)
			}
			var refused []Decision
			for _, d := range res.Decisions {
				if !d.Linked {
					refused = append(refused, d)
				}
			}
			if diff := cmp.Diff(tt.refused, refused); diff != "" {
				t.Errorf("refused (-want +got):\n%s", diff)
			}
		})
	}
}
