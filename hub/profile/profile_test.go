package profile

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"

	"github.com/unico-cdp/unico/protocol"
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

// TestReadsProperties checks ReadsProperties against Apply: events whose
// properties it says Apply does not read, and every event's context, can
// be left out without changing the profiles Apply builds.
func TestReadsProperties(t *testing.T) {
	c := NewClassifier(Rules{})
	genProps := rapid.Custom(func(t *rapid.T) map[string]any {
		m := map[string]any{}
		if rapid.Bool().Draw(t, "revenue?") {
			m[rapid.SampledFrom([]string{"revenue", "total", "value"}).Draw(t, "revenue key")] = rapid.SampledFrom([]any{12.5, int64(7), "9"}).Draw(t, "revenue")
		}
		if rapid.Bool().Draw(t, "products?") {
			var list []any
			for i := range rapid.IntRange(0, 3).Draw(t, "products") {
				list = append(list, map[string]any{"product_id": rapid.SampledFrom([]any{"P1", "P2", int64(3), 4.0}).Draw(t, "product"), "name": "n" + strconv.Itoa(i)})
			}
			m["products"] = list
		}
		if rapid.Bool().Draw(t, "product?") {
			m["sku"] = rapid.SampledFrom([]string{"S1", "S2", ""}).Draw(t, "sku")
			m["name"] = "item"
		}
		if rapid.Bool().Draw(t, "reason?") {
			m["reason"] = rapid.SampledFrom([]any{"billing", "returns", 3}).Draw(t, "reason")
		}
		return m
	})
	genEvent := rapid.Custom(func(t *rapid.T) protocol.Event {
		e := protocol.Event{
			ID:         rapid.StringMatching(`e[0-9]{1,3}`).Draw(t, "id"),
			Type:       rapid.SampledFrom([]string{protocol.TypeTrack, protocol.TypeIdentify, protocol.TypePage}).Draw(t, "type"),
			Name:       rapid.SampledFrom([]string{"Order Completed", "pos.sale", "Call Completed", "contact.email", "presence.enter", "Home", ""}).Draw(t, "name"),
			Channel:    rapid.SampledFrom([]string{protocol.ChannelPOS, protocol.ChannelContactCenter, "web", ""}).Draw(t, "channel"),
			Source:     protocol.Source{Edge: "e1", Site: rapid.SampledFrom([]string{"S1", "S2", ""}).Draw(t, "site")},
			Context:    map[string]any{"store_id": "S1", "device": map[string]any{"id": "d1"}},
			OccurredAt: time.Unix(int64(rapid.IntRange(0, 100).Draw(t, "at")), 0).UTC(),
		}
		if rapid.Bool().Draw(t, "properties?") {
			e.Properties = genProps.Draw(t, "properties")
		}
		if rapid.Bool().Draw(t, "traits?") {
			e.Traits = map[string]any{"first_name": rapid.SampledFrom([]string{"Ada", "Bo"}).Draw(t, "first name")}
		}
		return e
	})
	rapid.Check(t, func(t *rapid.T) {
		var full, lean Profile
		for _, e := range rapid.SliceOfN(genEvent, 1, 20).Draw(t, "events") {
			c.Apply(&full, &e)
			e.Context = nil
			if !c.ReadsProperties(e.Type, e.Name, e.Channel) {
				e.Properties = nil
			}
			c.Apply(&lean, &e)
		}
		if diff := cmp.Diff(full, lean); diff != "" {
			t.Fatalf("profile differs without the properties Apply does not read (-full +lean):\n%s", diff)
		}
	})
}
