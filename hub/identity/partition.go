package identity

import (
	"cmp"
	"slices"
	"strings"

	"github.com/unico-cdp/unico/protocol"
)

// Decision reasons.
const (
	ReasonLinked   = "linked"
	ReasonLimit    = "limit"    // the union would exceed a type's MaxPerProfile
	ReasonIsolated = "isolated" // an admin split the identifier off
)

// Decision records one link made or refused, and the event that asked for it.
type Decision struct {
	EventID string              `json:"event_id"`
	A       protocol.Identifier `json:"a"` // the event's strongest identifier
	B       protocol.Identifier `json:"b"`
	Linked  bool                `json:"linked"`
	Reason  string              `json:"reason"`
	// Type is the identifier type whose limit refused the link.
	Type string `json:"type,omitempty"`
}

// Options are the facts Partition takes from outside the events.
type Options struct {
	// Shared reports identifiers known to be shared from events outside the
	// set (the hub's global view). Nil means none.
	Shared func(protocol.Identifier) bool
	// Isolated reports identifiers an admin has split off: they form their
	// own profile and never link. Nil means none.
	Isolated func(protocol.Identifier) bool
}

// Result is a partition of identifiers into profiles.
type Result struct {
	// Groups are the profiles' identifier sets, each sorted by type and
	// value, the groups sorted by their first identifier.
	Groups [][]protocol.Identifier
	// Conflicted[i] is true when group i is an end of a refused link.
	Conflicted []bool
	// Shared lists identifiers that link nothing, sorted.
	Shared []protocol.Identifier
	// Owner maps an event id to the group that holds the event: the group
	// of its strongest non-shared identifier; absent when it has none.
	Owner map[string]int
	// Decisions lists the links made between different groups-to-be and
	// the links refused, in the canonical order they were considered.
	Decisions []Decision
}

type edge struct {
	a, b    protocol.Identifier
	prio    int
	eventID string
}

// Degrees counts, for each identifier, the distinct values of each limited
// type seen with it. It is what decides sharedness.
type Degrees map[protocol.Identifier]map[string]map[string]struct{}

// Observe records the co-occurrences of one event's linkable identifiers.
func (d Degrees) Observe(r *Rules, ids []protocol.Identifier) {
	for _, x := range ids {
		for _, y := range ids {
			if x == y || !r.Limited(y.Type) {
				continue
			}
			m := d[x]
			if m == nil {
				m = make(map[string]map[string]struct{})
				d[x] = m
			}
			s := m[y.Type]
			if s == nil {
				s = make(map[string]struct{})
				m[y.Type] = s
			}
			s[y.Value] = struct{}{}
		}
	}
}

// SharedBy reports whether x is shared according to counts, the number of
// distinct values of each limited type seen with x.
func (r *Rules) SharedBy(x protocol.Identifier, counts func(typ string) int) bool {
	th := r.Rule(x.Type).SharedAfter
	if th <= 0 {
		return false
	}
	for t, tr := range r.Types {
		if tr.MaxPerProfile > 0 && counts(t) > th {
			return true
		}
	}
	return false
}

// Partition computes the profiles of events. The result depends only on the
// set of events (by id), the rules and opts.
func Partition(events []*protocol.Event, r *Rules, opts Options) Result {
	// Deduplicate by id; order by id so that everything below is canonical.
	evs := slices.Clone(events)
	slices.SortFunc(evs, func(a, b *protocol.Event) int { return strings.Compare(a.ID, b.ID) })
	evs = slices.CompactFunc(evs, func(a, b *protocol.Event) bool { return a.ID == b.ID })

	idsOf := make([][]protocol.Identifier, len(evs))
	deg := make(Degrees)
	for i, e := range evs {
		idsOf[i] = r.Identifiers(e)
		deg.Observe(r, idsOf[i])
	}
	shared := make(map[protocol.Identifier]bool)
	isShared := func(x protocol.Identifier) bool {
		if s, ok := shared[x]; ok {
			return s
		}
		s := (opts.Shared != nil && opts.Shared(x)) || r.SharedBy(x, func(t string) int { return len(deg[x][t]) })
		shared[x] = s
		return s
	}
	isolated := func(x protocol.Identifier) bool { return opts.Isolated != nil && opts.Isolated(x) }

	uf := newUnionFind(r)
	var edges []edge
	for i, e := range evs {
		var anchor protocol.Identifier
		hasAnchor := false
		for _, x := range idsOf[i] {
			if isShared(x) {
				continue
			}
			uf.add(x)
			if !hasAnchor {
				anchor, hasAnchor = x, true
				continue
			}
			edges = append(edges, edge{a: anchor, b: x, prio: r.Rule(x.Type).Priority, eventID: e.ID})
		}
	}
	slices.SortFunc(edges, func(x, y edge) int {
		if x.prio != y.prio {
			return y.prio - x.prio
		}
		if c := strings.Compare(x.eventID, y.eventID); c != 0 {
			return c
		}
		if c := compareID(x.b, y.b); c != 0 {
			return c
		}
		return compareID(x.a, y.a)
	})

	var res Result
	conflicted := make(map[protocol.Identifier]bool)
	for _, ed := range edges {
		ra, rb := uf.find(ed.a), uf.find(ed.b)
		if ra == rb {
			continue
		}
		d := Decision{EventID: ed.eventID, A: ed.a, B: ed.b}
		switch {
		case isolated(ed.a) || isolated(ed.b):
			d.Reason = ReasonIsolated
		default:
			if t, ok := uf.exceeds(ra, rb); ok {
				d.Reason, d.Type = ReasonLimit, t
			} else {
				uf.union(ra, rb)
				d.Linked, d.Reason = true, ReasonLinked
			}
		}
		if !d.Linked {
			conflicted[ed.a], conflicted[ed.b] = true, true
		}
		res.Decisions = append(res.Decisions, d)
	}

	// Collect groups.
	byRoot := make(map[protocol.Identifier][]protocol.Identifier)
	for x := range uf.parent {
		root := uf.find(x)
		byRoot[root] = append(byRoot[root], x)
	}
	for _, g := range byRoot {
		slices.SortFunc(g, compareID)
		res.Groups = append(res.Groups, g)
	}
	slices.SortFunc(res.Groups, func(a, b []protocol.Identifier) int { return compareID(a[0], b[0]) })
	groupOf := make(map[protocol.Identifier]int)
	res.Conflicted = make([]bool, len(res.Groups))
	for gi, g := range res.Groups {
		for _, x := range g {
			groupOf[x] = gi
			if conflicted[x] {
				res.Conflicted[gi] = true
			}
		}
	}
	for x, s := range shared {
		if s {
			res.Shared = append(res.Shared, x)
		}
	}
	slices.SortFunc(res.Shared, compareID)
	res.Owner = make(map[string]int, len(evs))
	for i, e := range evs {
		for _, x := range idsOf[i] {
			if !isShared(x) {
				res.Owner[e.ID] = groupOf[x]
				break
			}
		}
	}
	return res
}

func compareID(a, b protocol.Identifier) int {
	if c := cmp.Compare(a.Type, b.Type); c != 0 {
		return c
	}
	return cmp.Compare(a.Value, b.Value)
}

// unionFind keeps, per root, the count of identifiers of each limited type.
type unionFind struct {
	r      *Rules
	parent map[protocol.Identifier]protocol.Identifier
	counts map[protocol.Identifier]map[string]int
}

func newUnionFind(r *Rules) *unionFind {
	return &unionFind{r: r, parent: make(map[protocol.Identifier]protocol.Identifier), counts: make(map[protocol.Identifier]map[string]int)}
}

func (u *unionFind) add(x protocol.Identifier) {
	if _, ok := u.parent[x]; ok {
		return
	}
	u.parent[x] = x
	if u.r.Limited(x.Type) {
		u.counts[x] = map[string]int{x.Type: 1}
	}
}

func (u *unionFind) find(x protocol.Identifier) protocol.Identifier {
	for u.parent[x] != x {
		p := u.parent[x]
		u.parent[x] = u.parent[p]
		x = p
	}
	return x
}

// exceeds reports the first limited type (by name) whose limit the union of
// the sets rooted at a and b would exceed.
func (u *unionFind) exceeds(a, b protocol.Identifier) (string, bool) {
	ca, cb := u.counts[a], u.counts[b]
	var over []string
	for t, n := range ca {
		if n+cb[t] > u.r.Rule(t).MaxPerProfile {
			over = append(over, t)
		}
	}
	for t, n := range cb {
		if _, seen := ca[t]; !seen && n > u.r.Rule(t).MaxPerProfile {
			over = append(over, t)
		}
	}
	if len(over) == 0 {
		return "", false
	}
	slices.Sort(over)
	return over[0], true
}

func (u *unionFind) union(a, b protocol.Identifier) {
	// Deterministic root: the smaller identifier.
	if compareID(b, a) < 0 {
		a, b = b, a
	}
	u.parent[b] = a
	if cb := u.counts[b]; cb != nil {
		ca := u.counts[a]
		if ca == nil {
			ca = make(map[string]int)
			u.counts[a] = ca
		}
		for t, n := range cb {
			ca[t] += n
		}
		delete(u.counts, b)
	}
}
