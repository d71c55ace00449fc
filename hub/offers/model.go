package offers

import (
	"cmp"
	"iter"
	"slices"
	"time"
)

// Purchase is one product bought by a profile at a time.
type Purchase struct {
	// Product is the product's id.
	Product string
	// Name is the product's display name, if known.
	Name string
	// At is when the order happened.
	At time.Time
}

// Rule is a learnt association "bought X → buys Y within Window".
type Rule struct {
	// X is the antecedent product, Y the consequent.
	X, Y string
	// Pair is the number of profiles that bought Y at the same time as or
	// within Window after X.
	Pair int
	// SupportX and SupportY are the numbers of profiles that bought X and Y.
	SupportX, SupportY int
	// Confidence is Pair/SupportX.
	Confidence float64
	// Lift is Confidence divided by SupportY/Profiles.
	Lift float64
}

// Stats describes a built model.
type Stats struct {
	// Profiles is the number of profiles with at least one purchase.
	Profiles int
	// Purchases is the number of distinct (product, time) purchases used.
	Purchases int
	// Products is the number of distinct products seen; Tracked of them got
	// pair counters (support ≥ MinSupport, capped at MaxProducts).
	Products, Tracked int
	// Pairs is the number of distinct pairs counted; Rules how many became
	// rules.
	Pairs, Rules int
	// PairsDropped counts pair counters dropped on reaching MaxPairs; when
	// non-zero the model may depend on the input order.
	PairsDropped int
	// PurchasesDropped counts purchases beyond MaxPurchasesPerProfile.
	PurchasesDropped int
}

// rule is a Rule inside a model, by product index.
type rule struct {
	y          uint32
	pair       int32
	confidence float64
	lift       float64
	score      float64
}

// Model is an immutable set of association rules. The zero of its methods'
// answers (no rules, no offers) is what an empty model gives.
type Model struct {
	cfg     Config
	ids     []string // product ids by index (tracked products only)
	names   []string
	support []int32
	index   map[string]uint32
	rules   [][]rule // by antecedent index, best first
	stats   Stats
}

func emptyModel(c Config) *Model {
	return &Model{cfg: c, index: map[string]uint32{}}
}

// Stats returns figures about the model.
func (m *Model) Stats() Stats { return m.stats }

func (m *Model) rule(x uint32, r rule) Rule {
	return Rule{
		X: m.ids[x], Y: m.ids[r.y], Pair: int(r.pair),
		SupportX: int(m.support[x]), SupportY: int(m.support[r.y]),
		Confidence: r.confidence, Lift: r.lift,
	}
}

// Rules returns the rules with antecedent x, best first by the configured
// metric, ties by consequent id.
func (m *Model) Rules(x string) []Rule {
	i, ok := m.index[x]
	if !ok {
		return nil
	}
	out := make([]Rule, 0, len(m.rules[i]))
	for _, r := range m.rules[i] {
		out = append(out, m.rule(i, r))
	}
	return out
}

// Top returns the n best rules of the model by the configured metric, ties
// by X then Y.
func (m *Model) Top(n int) []Rule {
	type ref struct {
		x uint32
		r rule
	}
	var all []ref
	for x, rs := range m.rules {
		for _, r := range rs {
			all = append(all, ref{uint32(x), r})
		}
	}
	slices.SortFunc(all, func(a, b ref) int {
		if c := cmp.Compare(b.r.score, a.r.score); c != 0 {
			return c
		}
		if c := cmp.Compare(m.ids[a.x], m.ids[b.x]); c != 0 {
			return c
		}
		return cmp.Compare(m.ids[a.r.y], m.ids[b.r.y])
	})
	out := make([]Rule, 0, min(n, len(all)))
	for _, a := range all[:min(n, len(all))] {
		out = append(out, m.rule(a.x, a.r))
	}
	return out
}

// Name returns the display name the model knows for product id.
func (m *Model) Name(id string) string {
	if i, ok := m.index[id]; ok {
		return m.names[i]
	}
	return ""
}

// item is a purchase inside the builder: a product index and a time in
// Unix nanoseconds.
type item struct {
	p uint32
	t int64
}

// Build learns a model from purchase histories, one per profile, without
// touching the engine's current model (see Install). The histories are read
// once; the builder keeps a compact copy of them (16 bytes per distinct
// purchase plus one entry per distinct product) for its two counting passes.
// The result does not depend on the order of the histories or of the
// purchases within one, unless Stats.PairsDropped is non-zero.
func (e *Engine) Build(histories iter.Seq[[]Purchase]) *Model {
	return build(e.cfg, histories)
}

func build(c Config, histories iter.Seq[[]Purchase]) *Model {
	var (
		index   = map[string]uint32{}
		ids     []string
		names   []string
		nameAt  []int64
		items   []item
		offs    = []int{0}
		stats   Stats
		scratch []item
	)
	// Pass 0: intern products, keep each profile's purchases sorted by
	// time then product, deduplicated, the most recent
	// MaxPurchasesPerProfile of them.
	for h := range histories {
		scratch = scratch[:0]
		for _, p := range h {
			if p.Product == "" {
				continue
			}
			i, ok := index[p.Product]
			if !ok {
				i = uint32(len(ids))
				index[p.Product] = i
				ids = append(ids, p.Product)
				names = append(names, "")
				nameAt = append(nameAt, 0)
			}
			t := p.At.UnixNano()
			// The name of the latest purchase wins; at equal times the
			// smallest non-empty name, so the choice is order-independent.
			if p.Name != "" && (names[i] == "" || t > nameAt[i] || (t == nameAt[i] && p.Name < names[i])) {
				names[i], nameAt[i] = p.Name, t
			}
			scratch = append(scratch, item{i, t})
		}
		if len(scratch) == 0 {
			continue
		}
		slices.SortFunc(scratch, compareItems(ids))
		scratch = slices.Compact(scratch)
		if n := len(scratch) - c.MaxPurchasesPerProfile; n > 0 {
			stats.PurchasesDropped += n
			scratch = scratch[n:]
		}
		items = append(items, scratch...)
		offs = append(offs, len(items))
	}
	profiles := len(offs) - 1
	stats.Profiles, stats.Purchases, stats.Products = profiles, len(items), len(ids)

	// Pass 1: support, each profile counted once per product.
	support := make([]int32, len(ids))
	seen := make([]int32, len(ids)) // profile number + 1 that last counted it
	for pr := range profiles {
		for _, it := range items[offs[pr]:offs[pr+1]] {
			if seen[it.p] != int32(pr+1) {
				seen[it.p] = int32(pr + 1)
				support[it.p]++
			}
		}
	}

	// Tracked products: support ≥ MinSupport, the MaxProducts best by
	// support then id.
	var tracked []uint32
	for i, s := range support {
		if int(s) >= c.MinSupport {
			tracked = append(tracked, uint32(i))
		}
	}
	slices.SortFunc(tracked, func(a, b uint32) int {
		if c := cmp.Compare(support[b], support[a]); c != 0 {
			return c
		}
		return cmp.Compare(ids[a], ids[b])
	})
	if len(tracked) > c.MaxProducts {
		tracked = tracked[:c.MaxProducts]
	}
	slices.SortFunc(tracked, func(a, b uint32) int { return cmp.Compare(ids[a], ids[b]) })
	remap := make([]int32, len(ids)) // old index → tracked index, -1 if not tracked
	for i := range remap {
		remap[i] = -1
	}
	m := &Model{cfg: c, index: make(map[string]uint32, len(tracked))}
	for n, i := range tracked {
		remap[i] = int32(n)
		m.ids = append(m.ids, ids[i])
		m.names = append(m.names, names[i])
		m.support = append(m.support, support[i])
		m.index[ids[i]] = uint32(n)
	}
	stats.Tracked = len(tracked)

	// Pass 2: pairs X→Y with t(X) ≤ t(Y) ≤ t(X)+Window, each profile
	// counted once per pair.
	pairs := map[uint64]int32{}
	window := int64(c.Window)
	var keys []uint64
	var hist []item
	for pr := range profiles {
		hist = hist[:0]
		for _, it := range items[offs[pr]:offs[pr+1]] {
			if r := remap[it.p]; r >= 0 {
				hist = append(hist, item{uint32(r), it.t})
			}
		}
		keys = keys[:0]
		lo := 0
		for _, x := range hist {
			for hist[lo].t < x.t {
				lo++
			}
			for _, y := range hist[lo:] {
				if y.t-x.t > window {
					break
				}
				if y.p != x.p {
					keys = append(keys, uint64(x.p)<<32|uint64(y.p))
				}
			}
		}
		slices.Sort(keys)
		for _, k := range slices.Compact(keys) {
			pairs[k]++
		}
		if len(pairs) > c.MaxPairs {
			stats.PairsDropped += prunePairs(pairs, c.MaxPairs*3/4)
		}
	}
	stats.Pairs = len(pairs)

	// Rules.
	m.rules = make([][]rule, len(m.ids))
	n := float64(profiles)
	// Map order does not matter: each antecedent's rules are sorted below
	// with a total order.
	for k, cnt := range pairs {
		if int(cnt) < c.MinSupport {
			continue
		}
		x, y := uint32(k>>32), uint32(k)
		conf := float64(cnt) / float64(m.support[x])
		lift := conf / (float64(m.support[y]) / n)
		if conf < c.MinConfidence || lift < c.MinLift {
			continue
		}
		r := rule{y: y, pair: cnt, confidence: conf, lift: lift, score: lift}
		if c.Metric == MetricConfidence {
			r.score = conf
		}
		m.rules[x] = append(m.rules[x], r)
	}
	for x, rs := range m.rules {
		slices.SortFunc(rs, func(a, b rule) int {
			if c := cmp.Compare(b.score, a.score); c != 0 {
				return c
			}
			return cmp.Compare(m.ids[a.y], m.ids[b.y])
		})
		if len(rs) > c.MaxPairsPerProduct {
			rs = slices.Clip(rs[:c.MaxPairsPerProduct])
		}
		m.rules[x] = rs
		stats.Rules += len(rs)
	}
	m.stats = stats
	return m
}

func compareItems(ids []string) func(a, b item) int {
	return func(a, b item) int {
		if c := cmp.Compare(a.t, b.t); c != 0 {
			return c
		}
		return cmp.Compare(ids[a.p], ids[b.p])
	}
}

// prunePairs drops the pairs with the lowest counts until at most keep
// remain and returns how many it dropped.
func prunePairs(pairs map[uint64]int32, keep int) int {
	dropped := 0
	for floor := int32(1); len(pairs) > keep; floor++ {
		for k, v := range pairs {
			if v <= floor {
				delete(pairs, k)
				dropped++
			}
		}
	}
	return dropped
}
