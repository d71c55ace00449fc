package profile

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// addPurchasesSorting is the definition addPurchases implements: the union
// sorted newest first, duplicates once, the newest MaxRecentPurchases.
func addPurchasesSorting(a, b []Purchase) []Purchase {
	out := append(slices.Clone(a), b...)
	slices.SortFunc(out, comparePurchases)
	out = slices.CompactFunc(out, func(x, y Purchase) bool { return x.Product == y.Product && x.At.Equal(y.At) })
	return out[:min(len(out), MaxRecentPurchases)]
}

func TestAddPurchases(t *testing.T) {
	gen := rapid.Custom(func(t *rapid.T) Purchase {
		return Purchase{
			Product: rapid.SampledFrom([]string{"A", "B", "C"}).Draw(t, "product"),
			Name:    rapid.SampledFrom([]string{"", "x", "y"}).Draw(t, "name"),
			At:      time.Unix(int64(rapid.IntRange(0, 20).Draw(t, "at")), 0),
		}
	})
	rapid.Check(t, func(t *rapid.T) {
		// Purchases merged one order at a time, in any order, with the
		// list kept between merges as the profile keeps it.
		orders := rapid.SliceOfN(rapid.SliceOfN(gen, 1, 4), 0, 40).Draw(t, "orders")
		var got, all []Purchase
		for _, o := range orders {
			got = addPurchases(got, o)
			all = append(all, o...)
		}
		if diff := cmp.Diff(addPurchasesSorting(nil, all), got); diff != "" {
			t.Fatalf("merged one order at a time (-whole union +incremental):\n%s", diff)
		}
		// An unsorted list (not one addPurchases wrote) is sorted first.
		raw := rapid.SliceOfN(gen, 0, 10).Draw(t, "raw")
		more := rapid.SliceOfN(gen, 1, 4).Draw(t, "more")
		if diff := cmp.Diff(addPurchasesSorting(raw, more), addPurchases(raw, more)); diff != "" {
			t.Fatalf("unsorted input (-want +got):\n%s", diff)
		}
	})
}
