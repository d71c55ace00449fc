package offers

import (
	"cmp"
	"slices"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// Recommend returns up to TopN offers for a profile with the given
// purchases, using the current model. See Model.Recommend.
func (e *Engine) Recommend(history []Purchase, now time.Time) []protocol.Offer {
	return e.model.Load().Recommend(history, now)
}

// Recommend returns up to TopN offers for a profile with the given
// purchases (in any order). The candidates are the consequents Y of the
// rules of every product X bought in [now-Window, now]; a candidate's score
// is the best metric over its X's (ties: the smallest X id gives the
// reason). Products bought in that span are never offered. Offers come best
// first, ties by product id; the reason names the X, as
// "bought pillows (P-001)".
func (m *Model) Recommend(history []Purchase, now time.Time) []protocol.Offer {
	if len(m.rules) == 0 {
		return nil
	}
	from := now.Add(-m.cfg.Window)
	type cand struct {
		y     uint32
		score float64
		x     uint32
	}
	var (
		bought  = make(map[string]struct{}, len(history))
		xs      []uint32
		xName   = map[uint32]string{}
		xNameAt = map[uint32]time.Time{}
	)
	for _, p := range history {
		if p.Product == "" || p.At.Before(from) || p.At.After(now) {
			continue
		}
		bought[p.Product] = struct{}{}
		x, ok := m.index[p.Product]
		if !ok {
			continue
		}
		xs = append(xs, x)
		// The latest purchase's name, smallest at equal times.
		if at, seen := xNameAt[x]; p.Name != "" && (!seen || xName[x] == "" || p.At.After(at) || (p.At.Equal(at) && p.Name < xName[x])) {
			xName[x], xNameAt[x] = p.Name, p.At
		}
	}
	slices.Sort(xs)
	xs = slices.Compact(xs)
	best := map[uint32]cand{}
	for _, x := range xs {
		for _, r := range m.rules[x] {
			if _, ok := bought[m.ids[r.y]]; ok {
				continue
			}
			c, ok := best[r.y]
			// xs ascend by index, which is id order, so the first X
			// reaching the best score is the smallest.
			if !ok || r.score > c.score {
				best[r.y] = cand{y: r.y, score: r.score, x: x}
			}
		}
	}
	cands := make([]cand, 0, len(best))
	for _, c := range best {
		cands = append(cands, c)
	}
	slices.SortFunc(cands, func(a, b cand) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(m.ids[a.y], m.ids[b.y])
	})
	cands = cands[:min(len(cands), m.cfg.TopN)]
	if len(cands) == 0 {
		return nil
	}
	out := make([]protocol.Offer, 0, len(cands))
	for _, c := range cands {
		name := xName[c.x]
		if name == "" {
			name = m.names[c.x]
		}
		out = append(out, protocol.Offer{Product: m.ids[c.y], Score: c.score, Reason: reason(name, m.ids[c.x])})
	}
	return out
}

func reason(name, id string) string {
	if name == "" || name == id {
		return "bought " + id
	}
	return "bought " + name + " (" + id + ")"
}
