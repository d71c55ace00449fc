package cache

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// TestIndexProperty applies random snapshots and tombstones of a few
// profiles over a small pool of identifiers, so that identifiers move
// between profiles, are dropped and come back, and checks every lookup
// against a model: an identifier belongs to the last profile whose applied
// snapshot listed it, unless that profile has since dropped it (in a newer
// snapshot or a tombstone) without another profile claiming it after.
func TestIndexProperty(t *testing.T) {
	// One cache for every check (opening Badger dominates otherwise):
	// each check has its own profiles and identifiers.
	c := openTest(t, "", nil)
	var seq uint64
	check := 0
	rapid.Check(t, func(rt *rapid.T) {
		check++
		pool := make([]string, 0, 6)
		for _, id := range []string{"email:a%d@x.io", "email:b%d@x.io", "phone:+1555000%d", "loyalty_id:L1-%d", "loyalty_id:L2-%d", "email:c%d@x.io"} {
			pool = append(pool, fmt.Sprintf(id, check))
		}
		model := map[string]string{}         // identifier → holder
		held := map[string]map[string]bool{} // profile → its current identifiers
		for range rapid.IntRange(1, 30).Draw(rt, "batches") {
			seq++
			b := batch(seq)
			for range rapid.IntRange(1, 3).Draw(rt, "profiles") {
				pid := fmt.Sprintf("c%d-p%d", check, rapid.IntRange(0, 3).Draw(rt, "pid"))
				if rapid.IntRange(0, 5).Draw(rt, "tomb") == 0 {
					b.Profiles = append(b.Profiles, tomb(pid))
					continue
				}
				var ids []string
				for _, id := range pool {
					if rapid.Bool().Draw(rt, "has") {
						ids = append(ids, id)
					}
				}
				b.Profiles = append(b.Profiles, prof(pid, ids...))
			}
			if ok, err := c.Apply(b); !ok || err != nil {
				rt.Fatalf("Apply(%d) = %v, %v", seq, ok, err)
			}
			for _, p := range b.Profiles {
				for id := range held[p.ProfileID] {
					if model[id] == p.ProfileID {
						delete(model, id)
					}
				}
				delete(held, p.ProfileID)
				if p.Tombstone {
					continue
				}
				held[p.ProfileID] = map[string]bool{}
				for _, id := range p.Identifiers {
					k := id.Type + ":" + id.Value
					model[k] = p.ProfileID
					held[p.ProfileID][k] = true
				}
			}
		}
		for _, id := range pool {
			typ, value, _ := strings.Cut(id, ":")
			got, _, err := c.Lookup(typ, value)
			switch want := model[id]; {
			case want == "" && !errors.Is(err, ErrNotFound):
				rt.Fatalf("Lookup(%s) = %v, %v; want not found", id, got, err)
			case want != "" && (err != nil || got.ProfileID != want):
				rt.Fatalf("Lookup(%s) = %v, %v; want %s", id, got, err, want)
			}
		}
	})
}
