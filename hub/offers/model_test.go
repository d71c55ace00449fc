package offers

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"pgregory.net/rapid"

	"github.com/unico-cdp/unico/protocol"
)

var t0 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func day(n int) time.Time { return t0.Add(time.Duration(n) * 24 * time.Hour) }

func newEngine(t interface {
	Helper()
	Fatalf(string, ...any)
}, cfg Config) *Engine {
	t.Helper()
	e, err := New(cfg, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return e
}

func seqOf(hs [][]Purchase) func(func([]Purchase) bool) { return slices.Values(hs) }

func buy(at time.Time, products ...string) []Purchase {
	var out []Purchase
	for _, p := range products {
		out = append(out, Purchase{Product: p, At: at})
	}
	return out
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{name: "zero is defaults"},
		{name: "bad metric", cfg: Config{Metric: "support"}, wantErr: "metric"},
		{name: "negative window", cfg: Config{Window: -time.Hour}, wantErr: "window"},
		{name: "negative top_n", cfg: Config{TopN: -1}, wantErr: "top_n"},
		{name: "confidence above 1", cfg: Config{MinConfidence: 1.5}, wantErr: "min_confidence"},
		{name: "negative max_pairs", cfg: Config{MaxPairs: -1}, wantErr: "max_pairs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := New(tt.cfg, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				c := e.Config()
				if c.Window != DefaultWindow || c.TopN != DefaultTopN || c.MinSupport != DefaultMinSupport || c.Metric != MetricLift ||
					!slices.Equal(c.ProductKeys, []string{"product_id", "sku"}) || !slices.Contains(c.OrderEvents, "Order Completed") {
					t.Errorf("defaults not applied: %+v", c)
				}
				return
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New error = %v, want ErrConfig naming %q", err, tt.wantErr)
			}
		})
	}
}

func TestBuildCounts(t *testing.T) {
	e := newEngine(t, Config{MinSupport: 1, MinLift: -1})
	hs := [][]Purchase{
		// A then B within the window, twice: counts once.
		slices.Concat(buy(day(0), "A"), buy(day(3), "B"), buy(day(5), "B")),
		// A and B in one basket: both directions.
		buy(day(0), "A", "B"),
		// B then A after the window: no pair.
		slices.Concat(buy(day(0), "B"), buy(day(40), "A")),
		// C only.
		buy(day(1), "C"),
	}
	m := e.Build(seqOf(hs))
	st := m.Stats()
	if st.Profiles != 4 || st.Products != 3 || st.Tracked != 3 {
		t.Errorf("stats = %+v", st)
	}
	// support A=3, B=3, C=1; N=4.
	want := []Rule{
		{X: "A", Y: "B", Pair: 2, SupportX: 3, SupportY: 3, Confidence: 2.0 / 3, Lift: (2.0 / 3) / (3.0 / 4)},
	}
	if diff := cmp.Diff(want, m.Rules("A"), cmpopts.EquateApprox(0, 1e-12)); diff != "" {
		t.Errorf("Rules(A) (-want +got):\n%s", diff)
	}
	want = []Rule{
		{X: "B", Y: "A", Pair: 1, SupportX: 3, SupportY: 3, Confidence: 1.0 / 3, Lift: (1.0 / 3) / (3.0 / 4)},
	}
	if diff := cmp.Diff(want, m.Rules("B"), cmpopts.EquateApprox(0, 1e-12)); diff != "" {
		t.Errorf("Rules(B) (-want +got):\n%s", diff)
	}
	if r := m.Rules("C"); len(r) != 0 {
		t.Errorf("Rules(C) = %v, want none", r)
	}
}

func TestHeavyBuyerCountsOnce(t *testing.T) {
	e := newEngine(t, Config{})
	var heavy []Purchase
	for i := range 100 {
		heavy = append(heavy, buy(day(i), "X", "Y")...)
	}
	m := e.Build(seqOf([][]Purchase{heavy, buy(day(0), "X"), buy(day(0), "Y")}))
	if r := m.Rules("X"); len(r) != 0 {
		t.Errorf("one heavy buyer made rules: %v", r)
	}
}

// pillowPopulation is a synthetic population where pillow buyers often buy
// pillow covers 3 to 20 days later, and everyone buys popular unrelated
// products.
func pillowPopulation(n int) [][]Purchase {
	var hs [][]Purchase
	for i := range n {
		var h []Purchase
		start := day(i % 60)
		if i%5 == 0 { // 20% buy pillows
			h = append(h, Purchase{Product: "P-001", Name: "pillows", At: start})
			if i%10 == 0 { // half of them covers later
				h = append(h, Purchase{Product: "P-002", Name: "pillow covers", At: start.Add(time.Duration(3+i%17) * 24 * time.Hour)})
			}
		}
		if i%3 == 0 {
			h = append(h, Purchase{Product: "M-100", Name: "mug", At: start.Add(time.Hour)})
		}
		if i%4 == 0 {
			h = append(h, Purchase{Product: "T-200", Name: "towel", At: start.Add(2 * time.Hour)})
		}
		if i%7 == 0 {
			h = append(h, Purchase{Product: "P-002", Name: "pillow covers", At: start.Add(5 * 24 * time.Hour)})
		}
		if len(h) > 0 {
			hs = append(hs, h)
		}
	}
	return hs
}

func TestPillowScenario(t *testing.T) {
	e := newEngine(t, Config{})
	e.Install(e.Build(seqOf(pillowPopulation(1000))))
	now := day(100)
	got := e.Recommend([]Purchase{{Product: "P-001", Name: "pillows", At: now.Add(-time.Minute)}}, now)
	if len(got) == 0 || got[0].Product != "P-002" {
		t.Fatalf("offers after pillows = %+v, want pillow covers first", got)
	}
	if got[0].Reason != "bought pillows (P-001)" || got[0].Score <= 1 {
		t.Errorf("offer = %+v, want reason %q and lift > 1", got[0], "bought pillows (P-001)")
	}
	for _, o := range got {
		if o.Product == "P-001" {
			t.Errorf("pillows offered again: %+v", got)
		}
	}
	// Covers already bought within the window: not offered.
	got = e.Recommend([]Purchase{{Product: "P-001", At: now.Add(-2 * time.Hour)}, {Product: "P-002", At: now.Add(-time.Hour)}}, now)
	for _, o := range got {
		if o.Product == "P-001" || o.Product == "P-002" {
			t.Errorf("offered a product bought in the window: %+v", got)
		}
	}
	// Pillows bought long ago: no longer a reason.
	if got := e.Recommend([]Purchase{{Product: "P-001", At: now.Add(-60 * 24 * time.Hour)}}, now); len(got) != 0 {
		t.Errorf("offers from an old purchase: %+v", got)
	}
}

func TestRecommendRanking(t *testing.T) {
	// X→A and X→B have the same score; Z→C scores less.
	hs := [][]Purchase{
		buy(day(0), "X", "A", "B"), buy(day(0), "X", "A", "B"),
		buy(day(0), "Z", "C"), buy(day(0), "Z", "C"), buy(day(0), "Z"), buy(day(0), "C"),
		buy(day(0), "Q"), buy(day(0), "Q"),
	}
	tests := []struct {
		name    string
		cfg     Config
		history []Purchase
		want    []string
	}{
		{"ties by id", Config{TopN: 3}, buy(day(1), "X", "Z"), []string{"A", "B", "C"}},
		{"top n", Config{TopN: 1}, buy(day(1), "X", "Z"), []string{"A"}},
		{"excludes bought", Config{}, buy(day(1), "X", "A"), []string{"B"}},
		{"unknown product", Config{}, buy(day(1), "nope"), nil},
		{"future purchase ignored", Config{}, buy(day(3), "X"), nil},
		{"confidence metric", Config{Metric: MetricConfidence}, buy(day(1), "Z"), []string{"C"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, tt.cfg)
			e.Install(e.Build(seqOf(hs)))
			var got []string
			for _, o := range e.Recommend(tt.history, day(2)) {
				got = append(got, o.Product)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("offers (-want +got):\n%s", diff)
			}
		})
	}
}

func TestEmptyModel(t *testing.T) {
	e := newEngine(t, Config{})
	if got := e.Recommend(buy(day(0), "A"), day(0)); got != nil {
		t.Errorf("empty model offers %v", got)
	}
	if got := e.Model().Top(5); len(got) != 0 {
		t.Errorf("empty model rules %v", got)
	}
}

func TestBounds(t *testing.T) {
	var hs [][]Purchase
	for i := range 50 {
		var ps []string
		for j := range 10 {
			ps = append(ps, fmt.Sprintf("p%02d", (i+j)%30))
		}
		hs = append(hs, buy(day(0), ps...))
	}
	tests := []struct {
		name  string
		cfg   Config
		check func(t *testing.T, m *Model)
	}{
		{"max products", Config{MaxProducts: 5, MinLift: -1}, func(t *testing.T, m *Model) {
			if st := m.Stats(); st.Tracked != 5 || st.Products != 30 {
				t.Errorf("stats = %+v", st)
			}
		}},
		{"max pairs per product", Config{MaxPairsPerProduct: 2, MinLift: -1}, func(t *testing.T, m *Model) {
			for i := range 30 {
				if n := len(m.Rules(fmt.Sprintf("p%02d", i))); n > 2 {
					t.Errorf("p%02d has %d rules", i, n)
				}
			}
		}},
		{"max pairs", Config{MaxPairs: 40, MinSupport: 1, MinLift: -1}, func(t *testing.T, m *Model) {
			if st := m.Stats(); st.PairsDropped == 0 || st.Pairs > 40 {
				t.Errorf("stats = %+v", st)
			}
		}},
		{"max purchases per profile", Config{MaxPurchasesPerProfile: 3}, func(t *testing.T, m *Model) {
			if st := m.Stats(); st.Purchases != 150 || st.PurchasesDropped != 350 {
				t.Errorf("stats = %+v", st)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.check(t, newEngine(t, tt.cfg).Build(seqOf(hs)))
		})
	}
}

// genHistories draws a small population over a small catalogue.
func genHistories(t *rapid.T) [][]Purchase {
	products := []string{"a", "b", "c", "d", "e", "f"}
	return rapid.SliceOfN(rapid.Custom(func(t *rapid.T) []Purchase {
		return rapid.SliceOfN(rapid.Custom(func(t *rapid.T) Purchase {
			return Purchase{
				Product: rapid.SampledFrom(products).Draw(t, "product"),
				Name:    rapid.SampledFrom([]string{"", "x", "y"}).Draw(t, "name"),
				At:      day(rapid.IntRange(0, 60).Draw(t, "day")),
			}
		}), 1, 8).Draw(t, "history")
	}), 0, 30).Draw(t, "histories")
}

func TestPropertyOrderIndependent(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		cfg := Config{MinSupport: rapid.IntRange(1, 3).Draw(t, "min_support"), MinLift: -1,
			Metric: rapid.SampledFrom([]string{MetricLift, MetricConfidence}).Draw(t, "metric")}
		e := newEngine(t, cfg)
		hs := genHistories(t)
		shuffled := make([][]Purchase, len(hs))
		for i, j := range rapid.Permutation(intsTo(len(hs))).Draw(t, "perm") {
			shuffled[i] = slices.Clone(hs[j])
			slices.Reverse(shuffled[i])
		}
		a, b := e.Build(seqOf(hs)), e.Build(seqOf(shuffled))
		if diff := cmp.Diff(a.Top(1000), b.Top(1000)); diff != "" {
			t.Fatalf("rules depend on order (-a +b):\n%s", diff)
		}
		probe := genHistories(t)
		for _, h := range probe {
			now := day(30)
			if diff := cmp.Diff(a.Recommend(h, now), b.Recommend(h, now)); diff != "" {
				t.Fatalf("offers depend on order (-a +b):\n%s", diff)
			}
		}
	})
}

func intsTo(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestPropertyRuleSanity(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		e := newEngine(t, Config{MinSupport: 1, MinLift: -1, TopN: 10})
		hs := genHistories(t)
		m := e.Build(seqOf(hs))
		for _, r := range m.Top(1000) {
			if r.X == r.Y || r.Pair > r.SupportX || r.Pair > r.SupportY || r.Confidence > 1 || r.Confidence <= 0 ||
				r.SupportX > m.Stats().Profiles {
				t.Fatalf("bad rule %+v", r)
			}
		}
		for _, h := range genHistories(t) {
			now := day(30)
			offers := m.Recommend(h, now)
			recent := map[string]bool{}
			for _, p := range h {
				if !p.At.Before(now.Add(-e.Config().Window)) && !p.At.After(now) {
					recent[p.Product] = true
				}
			}
			if !slices.IsSortedFunc(offers, func(a, b protocol.Offer) int {
				if a.Score != b.Score {
					if a.Score > b.Score {
						return -1
					}
					return 1
				}
				if a.Product < b.Product {
					return -1
				}
				return 1
			}) {
				t.Fatalf("offers not ranked: %+v", offers)
			}
			for _, o := range offers {
				if recent[o.Product] {
					t.Fatalf("offered %s bought in window: %+v", o.Product, offers)
				}
			}
		}
	})
}
