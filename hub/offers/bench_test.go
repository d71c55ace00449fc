package offers

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// synthetic draws n profiles over a catalogue of 5,000 products: 1 to 5
// orders over 60 days of 1 to 6 products, where buying product i often
// brings i+1 in the same or a later order.
func synthetic(n int) [][]Purchase {
	rng := rand.New(rand.NewPCG(1, 2))
	const catalogue = 5000
	ids := make([]string, catalogue+1)
	for i := range ids {
		ids[i] = fmt.Sprintf("P-%05d", i)
	}
	out := make([][]Purchase, n)
	for i := range out {
		var h []Purchase
		for range 1 + rng.IntN(5) {
			at := t0.Add(time.Duration(rng.IntN(60*24)) * time.Hour)
			for range 1 + rng.IntN(6) {
				// Popular products are more likely: squared uniform.
				u := rng.Float64()
				p := int(u * u * catalogue)
				h = append(h, Purchase{Product: ids[p], Name: "product", At: at})
				if rng.IntN(3) == 0 {
					h = append(h, Purchase{Product: ids[p+1], Name: "product", At: at.Add(time.Duration(rng.IntN(20*24)) * time.Hour)})
				}
			}
		}
		out[i] = h
	}
	return out
}

func BenchmarkBuild(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("profiles=%d", n), func(b *testing.B) {
			hs := synthetic(n)
			e := newEngine(b, Config{})
			b.ReportAllocs()
			var m *Model
			for b.Loop() {
				m = e.Build(seqOf(hs))
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "profiles/s")
			st := m.Stats()
			b.ReportMetric(float64(st.Pairs), "pairs")
			b.ReportMetric(float64(st.Rules), "rules")
		})
	}
}

func BenchmarkRecommend(b *testing.B) {
	hs := synthetic(100_000)
	e := newEngine(b, Config{})
	e.Install(e.Build(seqOf(hs)))
	now := t0.Add(60 * 24 * time.Hour)
	history := hs[7]
	for i := range history {
		history[i].At = now.Add(-time.Duration(i) * time.Hour)
	}
	if len(e.Recommend(history, now)) == 0 {
		b.Fatal("no offers")
	}
	b.ReportAllocs()
	for b.Loop() {
		e.Recommend(history, now)
	}
}
