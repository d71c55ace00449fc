package cache

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestSmallestMemtable applies batches to a cache with the smallest
// memtable: a batch of many profiles is split over several transactions
// and all of it lands; a profile that fits MaxProfileBytes but whose record
// and index entries exceed one transaction (15% of the memtable) is skipped
// and counted, not applied in part, and the batch around it still lands.
func TestSmallestMemtable(t *testing.T) {
	dir := t.TempDir()
	c := openTest(t, dir, func(o *Options) { o.MemTableBytes = MinMemTableBytes; o.BlockCacheBytes = 1 << 20 })
	var ps = batch(1)
	for i := range 3000 {
		p := prof(fmt.Sprintf("p%d", i), fmt.Sprintf("email:u%d@example.com", i))
		p.Traits["bio"] = strings.Repeat("b", 400)
		ps.Profiles = append(ps.Profiles, p)
	}
	if ok, err := c.Apply(ps); !ok || err != nil {
		t.Fatalf("Apply(3000 profiles) = %v, %v", ok, err)
	}
	if st := c.Stats(); st.Profiles != 3000 || st.ProfilesSkipped != 0 {
		t.Fatalf("after the large batch: %d profiles, %d skipped; want 3000, 0", st.Profiles, st.ProfilesSkipped)
	}

	big := prof("big")
	for i := range MaxIdentifiersPerProfile {
		big.Identifiers = append(big.Identifiers, prof("x", fmt.Sprintf("email:%s%d@example.com", strings.Repeat("v", 180), i)).Identifiers...)
	}
	big.Traits["bio"] = strings.Repeat("b", 200<<10)
	if ok, err := c.Apply(batch(2, prof("before", "email:before@example.com"), big, prof("after", "email:after@example.com"))); !ok || err != nil {
		t.Fatalf("Apply(big) = %v, %v", ok, err)
	}
	st := c.Stats()
	if st.ProfilesSkipped != 1 || st.Profiles != 3002 || st.Applied != 2 {
		t.Fatalf("after the big profile: %d profiles, %d skipped, applied seq %d; want 3002, 1, 2", st.Profiles, st.ProfilesSkipped, st.Applied)
	}
	if _, _, err := c.Lookup("email", strings.Repeat("v", 180)+"0@example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("an identifier of the skipped profile: err %v, want ErrNotFound", err)
	}
	for _, e := range []string{"before@example.com", "after@example.com", "u2999@example.com"} {
		if _, _, err := c.Lookup("email", e); err != nil {
			t.Errorf("Lookup(%s): %v", e, err)
		}
	}
}
