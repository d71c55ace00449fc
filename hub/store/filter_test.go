package store

import (
	"fmt"
	"testing"

	"pgregory.net/rapid"
)

// TestEventFilter: an added id is always "maybe" (no false negatives, also
// across layers and past the bound), and absent ids are rarely "maybe".
func TestEventFilter(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		maxEvents := rapid.IntRange(1, 200).Draw(t, "maxEvents")
		f := newEventFilter(maxEvents)
		f.first = rapid.IntRange(1, 20).Draw(t, "first")
		ids := rapid.SliceOfNDistinct(rapid.StringN(0, 40, -1), 0, 300, rapid.ID).Draw(t, "ids")
		for i, id := range ids {
			f.add(id)
			for _, old := range ids[:i+1] {
				if !f.mayContain(old) {
					t.Fatalf("%q added (of %d, bound %d) but not in the filter", old, i+1, maxEvents)
				}
			}
		}
		if len(ids) > maxEvents && !f.mayContain("never added") {
			t.Fatalf("filter past its bound (%d ids, bound %d) answered no", len(ids), maxEvents)
		}
	})
}

func TestEventFilterFalsePositives(t *testing.T) {
	f := newEventFilter(1 << 20)
	f.first = 1 << 15
	// Two full layers and part of a third.
	const n = 1<<15 + 1<<16 + 1<<15
	for i := range n {
		f.add(fmt.Sprintf("ev-%d", i))
	}
	if len(f.layers) != 3 {
		t.Fatalf("%d layers for %d ids, want 3", len(f.layers), n)
	}
	fp := 0
	const probes = 100_000
	for i := range probes {
		if f.mayContain(fmt.Sprintf("other-%d", i)) {
			fp++
		}
	}
	rate := float64(fp) / probes
	t.Logf("%d ids in %d layers; false positives %.3f%%", n, len(f.layers), rate*100)
	// Each layer stays under 1% at capacity; three of them under 3%.
	if rate > 0.03 {
		t.Fatalf("false-positive rate %.3f%%", rate*100)
	}
	if newEventFilter(-1).mayContain("x") != true {
		t.Fatal("a disabled filter must answer maybe")
	}
}
