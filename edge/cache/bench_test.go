package cache

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// benchProfiles fills c with n profiles in full-sync pages of 500 and
// returns the profiles/s of the fill.
func benchProfiles(b *testing.B, c *Cache, n int) float64 {
	b.Helper()
	start := time.Now()
	seq := c.Applied()
	for i := 0; i < n; i += 500 {
		page := make([]protocol.ProfileSnapshot, 0, 500)
		for j := i; j < min(n, i+500); j++ {
			p := prof(fmt.Sprintf("prof-%07d", j), fmt.Sprintf("loyalty_id:L%07d", j),
				"email:"+protocol.HashIdentifier("salt", fmt.Sprintf("u%d@example.com", j)))
			p.Traits["tier"] = "gold"
			p.Computed = map[string]any{"orders_90d": int64(j % 17), "ltv": float64(j) / 3}
			p.Segments = []string{"loyal", "pillow-buyers"}
			p.Consent = map[string]bool{"marketing": true}
			p.Offers = []protocol.Offer{{Product: "pillow-cover", Score: 0.82, Reason: "bought pillow"}, {Product: "duvet", Score: 0.4}}
			page = append(page, p)
		}
		seq++
		if ok, err := c.Apply(&protocol.SnapshotBatch{Seq: seq, FullSync: true, Profiles: page}); !ok || err != nil {
			b.Fatalf("Apply: %v %v", ok, err)
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// BenchmarkLookup measures lookups by identifier over 100,000 cached
// profiles and reports p50 and p99 latency.
func BenchmarkLookup(b *testing.B) {
	const n = 100_000
	c := openTest(b, "", func(o *Options) { o.HashSalt, o.HashTypes = "salt", nil; o.NoSync = false })
	rate := benchProfiles(b, c, n)
	for _, kind := range []string{"loyalty_id", "email_hashed"} {
		b.Run(kind, func(b *testing.B) {
			b.ReportAllocs()
			lat := make([]time.Duration, 0, 1<<16)
			i := 0
			for b.Loop() {
				k := (i * 7919) % n
				i++
				typ, v := "loyalty_id", fmt.Sprintf("L%07d", k)
				if kind != "loyalty_id" {
					typ, v = "email", fmt.Sprintf(" U%d@Example.com", k)
				}
				t := time.Now()
				p, _, err := c.Lookup(typ, v)
				d := time.Since(t)
				if err != nil || p == nil {
					b.Fatalf("Lookup %s %s: %v", typ, v, err)
				}
				if len(lat) < cap(lat) {
					lat = append(lat, d)
				}
			}
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds()), "p50-ns")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			b.ReportMetric(rate, "fill-profiles/s")
		})
	}
}

// BenchmarkFullSync measures applying full-sync pages of 500 profiles with
// an fsync per page, as the syncer does.
func BenchmarkFullSync(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		c := openTest(b, "", func(o *Options) { o.NoSync = false })
		b.StartTimer()
		rate := benchProfiles(b, c, 20_000)
		b.ReportMetric(rate, "profiles/s")
	}
}
