// Package identity decides which identifiers belong to the same person.
//
// Identifiers seen together in one event are linked; a profile is a set of
// linked identifiers. Rules per identifier type bound what a profile may
// hold (at most one loyalty card, three e-mails, …), name values that never
// link (a till's "0000000000" card, test addresses), and mark an identifier
// as shared — a store's generic card, a family tablet — once it has been
// seen with more distinct people-identifiers than a threshold; shared
// identifiers link nothing.
//
// Partition computes the profiles of a set of events as a pure function of
// that set: the result does not depend on the order in which the events
// arrived or on duplicates. The hub's store runs cheap incremental unions
// while no rule is violated, and falls back to Partition over the affected
// events when one is — so the profiles it holds are always the ones
// Partition gives for all events seen.
package identity

import (
	"fmt"
	"slices"
	"strings"

	"github.com/unico-cdp/unico/protocol"
)

// TypeRule holds the rules for one identifier type.
type TypeRule struct {
	// Priority orders link strength: when two links conflict, the one whose
	// weaker identifier has the higher priority is made first.
	Priority int `json:"priority"`
	// MaxPerProfile bounds how many identifiers of this type one profile
	// holds; 0 means no limit.
	MaxPerProfile int `json:"max_per_profile"`
	// SharedAfter marks an identifier of this type as shared once it has
	// been seen with more than this many distinct values of any one
	// limited type (a type with MaxPerProfile > 0); 0 means never.
	SharedAfter int `json:"shared_after"`
	// NeverLink lists values that are ignored as identifiers.
	NeverLink []string `json:"never_link"`
}

// Rules are the identity rules of a tenant.
type Rules struct {
	Types map[string]TypeRule `json:"types"`
	// Default applies to types not in Types.
	Default TypeRule `json:"default"`
	// MaxComponentEvents bounds how many events one re-partition may load.
	MaxComponentEvents int `json:"max_component_events"`

	never map[protocol.Identifier]struct{}
}

// DefaultRules returns the rules Unico starts with.
func DefaultRules() *Rules {
	r := &Rules{
		Types: map[string]TypeRule{
			protocol.IDUserID:      {Priority: 100, MaxPerProfile: 1},
			protocol.IDLoyaltyID:   {Priority: 90, MaxPerProfile: 1, SharedAfter: 3, NeverLink: []string{"0", "0000000000", "1111111111", "9999999999"}},
			protocol.IDEmail:       {Priority: 70, MaxPerProfile: 3, SharedAfter: 4, NeverLink: []string{"test@example.com", "noreply@example.com", "none@none.com"}},
			protocol.IDPhone:       {Priority: 60, MaxPerProfile: 3, SharedAfter: 4, NeverLink: []string{"+0000000000", "+1111111111"}},
			protocol.IDDeviceID:    {Priority: 40, MaxPerProfile: 0, SharedAfter: 3},
			protocol.IDMACHash:     {Priority: 30, MaxPerProfile: 0, SharedAfter: 3},
			protocol.IDAnonymousID: {Priority: 20, MaxPerProfile: 0, SharedAfter: 2},
		},
		Default:            TypeRule{Priority: 10, SharedAfter: 3},
		MaxComponentEvents: 50000,
	}
	if err := r.Compile(); err != nil {
		panic(err) // the defaults are valid; a test keeps them so
	}
	return r
}

// Compile validates the rules and prepares lookups. Call it after changing
// a Rules value by hand.
func (r *Rules) Compile() error {
	r.never = make(map[protocol.Identifier]struct{})
	for t, tr := range r.Types {
		if !protocol.ValidName(t) {
			return fmt.Errorf("identity rules: type %q: invalid name", t)
		}
		if tr.MaxPerProfile < 0 || tr.SharedAfter < 0 {
			return fmt.Errorf("identity rules: type %q: negative limit", t)
		}
		for _, v := range tr.NeverLink {
			r.never[protocol.Identifier{Type: t, Value: v}] = struct{}{}
		}
	}
	if r.MaxComponentEvents <= 0 {
		r.MaxComponentEvents = 50000
	}
	return nil
}

// Rule returns the rule for type t.
func (r *Rules) Rule(t string) TypeRule {
	if tr, ok := r.Types[t]; ok {
		return tr
	}
	return r.Default
}

// Linkable reports whether id takes part in identity at all.
func (r *Rules) Linkable(id protocol.Identifier) bool {
	if id.Type == "" || strings.TrimSpace(id.Value) == "" {
		return false
	}
	_, never := r.never[id]
	return !never
}

// Limited reports whether type t has a per-profile limit.
func (r *Rules) Limited(t string) bool { return r.Rule(t).MaxPerProfile > 0 }

// Identifiers returns the linkable identifiers of e, deduplicated, strongest
// first (priority descending, then type and value ascending). The
// previousId of an alias call counts as an anonymous_id, the common case of
// Segment's alias (an anonymous visitor becoming a known user).
func (r *Rules) Identifiers(e *protocol.Event) []protocol.Identifier {
	out := make([]protocol.Identifier, 0, len(e.Identifiers)+1)
	for _, id := range e.Identifiers {
		if r.Linkable(id) && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	if e.Type == protocol.TypeAlias && e.PreviousID != "" {
		if id := (protocol.Identifier{Type: protocol.IDAnonymousID, Value: e.PreviousID}); r.Linkable(id) && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	r.SortStrongest(out)
	return out
}

// SortStrongest sorts ids by priority descending, then type and value.
func (r *Rules) SortStrongest(ids []protocol.Identifier) {
	slices.SortFunc(ids, func(a, b protocol.Identifier) int {
		pa, pb := r.Rule(a.Type).Priority, r.Rule(b.Type).Priority
		if pa != pb {
			return pb - pa
		}
		if c := strings.Compare(a.Type, b.Type); c != 0 {
			return c
		}
		return strings.Compare(a.Value, b.Value)
	})
}
