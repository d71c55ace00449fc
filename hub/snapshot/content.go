package snapshot

import (
	"time"

	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/protocol"
)

// build turns a profile into the snapshot edges hold.
func (m *Manager) build(v *store.View) protocol.ProfileSnapshot {
	s := protocol.ProfileSnapshot{ProfileID: v.ID, UpdatedAt: v.UpdatedAt}
	if len(v.Identifiers) > 0 {
		s.Identifiers = make([]protocol.Identifier, 0, len(v.Identifiers))
		for _, x := range v.Identifiers {
			if m.hash[x.Type] {
				x.Value = protocol.HashIdentifier(m.cfg.HashSalt, x.Value)
			}
			s.Identifiers = append(s.Identifiers, x)
		}
	}
	for _, k := range m.cfg.Traits {
		if t, ok := v.Traits[k]; ok {
			if s.Traits == nil {
				s.Traits = make(map[string]any, len(m.cfg.Traits))
			}
			s.Traits[k] = t.Value
		}
	}
	cp, d := &v.Computed, &v.Derived
	c := map[string]any{
		"orders":              cp.Orders,
		"revenue":             cp.Revenue.Float(),
		"average_order_value": d.AverageOrderValue,
		"rfm":                 d.RFM,
		"recency_score":       d.Recency,
		"frequency_score":     d.Frequency,
		"monetary_score":      d.Monetary,
		"days_since_purchase": d.DaysSincePurchase,
	}
	if !cp.LastPurchaseAt.IsZero() {
		c["last_purchase_at"] = cp.LastPurchaseAt.UTC().Format(time.RFC3339)
	}
	if d.FavouriteSite != "" {
		c["favourite_site"] = d.FavouriteSite
	}
	if cp.LastContact != nil && cp.LastContact.Reason != "" {
		c["last_contact_reason"] = cp.LastContact.Reason
	}
	if len(cp.Channels) > 0 {
		ch := make(map[string]any, len(cp.Channels))
		for k, n := range cp.Channels.All() {
			ch[k] = n
		}
		c["channels"] = ch
	}
	s.Computed = c
	if len(v.Consent) > 0 {
		s.Consent = make(map[string]bool, len(v.Consent))
		for k, cs := range v.Consent {
			s.Consent[k] = cs.Granted
		}
	}
	if m.cfg.Segments != nil {
		s.Segments = m.cfg.Segments(v)
	}
	if m.cfg.Offers != nil {
		s.Offers = m.cfg.Offers(v)
	}
	return s
}

// regionOf returns the region of edge id; an edge without one is its own.
func (m *Manager) regionOf(edge string) string {
	if r, ok := m.cfg.Regions[edge]; ok {
		return r
	}
	return "\x00" + edge
}

// holds reports whether edge e should hold profile v under the scope.
func (m *Manager) holds(e *edge, v *store.View) bool {
	switch m.cfg.Scope {
	case ScopeAll:
		return true
	case ScopeRegion:
		r := m.regionOf(e.st.Edge)
		for id, n := range v.Computed.Edges.All() {
			if n > 0 && m.regionOf(id) == r {
				return true
			}
		}
		return false
	default:
		return v.Computed.Edges.Get(e.st.Edge) > 0
	}
}

// targets returns the numbers of the known edges that should hold v,
// sorted.
func (m *Manager) targets(v *store.View) []uint32 {
	var out []uint32
	switch m.cfg.Scope {
	case ScopeAll:
		for n := range m.byNum {
			out = append(out, n)
		}
	case ScopeRegion:
		seen := map[string]bool{}
		for id, n := range v.Computed.Edges.All() {
			r := m.regionOf(id)
			if n <= 0 || seen[r] {
				continue
			}
			seen[r] = true
			for _, e := range m.byRegion[r] {
				out = append(out, e.st.Num)
			}
		}
	default:
		for id, n := range v.Computed.Edges.All() {
			if n <= 0 {
				continue
			}
			for _, e := range m.byEdgeID[id] {
				out = append(out, e.st.Num)
			}
		}
	}
	sortNums(out)
	return out
}

// builtSnap is a snapshot built for one version of a profile.
type builtSnap struct {
	updated time.Time
	events  int64
	at      time.Time
	snap    protocol.ProfileSnapshot
}

// maxBuilt bounds the snapshots kept for reuse across edges; builtTTL keeps
// offers (which depend on the time and the offers model) fresh.
const (
	maxBuilt = 20000
	builtTTL = 30 * time.Second
)

// buildCached is build for one profile version, computed once for all the
// edges that receive it in a short time: with many edges holding the same
// profile, reading its offers dominates otherwise.
func (m *Manager) buildCached(v *store.View) protocol.ProfileSnapshot {
	now := m.cfg.Now()
	if b, ok := m.built[v.ID]; ok && b.updated.Equal(v.UpdatedAt) && b.events == v.Computed.Events && now.Sub(b.at) < builtTTL {
		return b.snap
	}
	snap := m.build(v)
	if m.built == nil || len(m.built) >= maxBuilt {
		m.built = make(map[string]builtSnap)
	}
	m.built[v.ID] = builtSnap{updated: v.UpdatedAt, events: v.Computed.Events, at: now, snap: snap}
	return snap
}
