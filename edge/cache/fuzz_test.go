package cache

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// FuzzApply feeds arbitrary payloads through the syncer's decode and apply
// path, then forces the decoded batch's seq to the next expected one so
// that its contents are applied too. It must never panic, and the index
// must stay consistent with the stored profiles.
func FuzzApply(f *testing.F) {
	seed := func(b *protocol.SnapshotBatch) {
		p, err := protocol.Marshal(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p)
	}
	p1 := prof("p1", "email:a@x.io", "loyalty_id:L1")
	p1.Offers = []protocol.Offer{{Product: "x", Score: 1}}
	p1.Consent = map[string]bool{"ads": false}
	p1.Computed = map[string]any{"ltv": 12.5, "nested": map[string]any{"a": []any{1, "b"}}, "nan": math.NaN()}
	seed(batch(1, p1, prof("p2", "phone:+391234567890")))
	seed(batch(2, tomb("p1"), prof("p2", "email:a@x.io")))
	seed(&protocol.SnapshotBatch{Seq: 3, FullSync: true, Profiles: []protocol.ProfileSnapshot{prof(strings.Repeat("z", 300))}})
	seed(batch(1))
	f.Add([]byte{})
	f.Add([]byte("US\x81"))

	c := openTest(f, "", nil)
	var acks int
	s, err := NewSyncer(c, SyncerConfig{Tenant: "t", EdgeID: "store-1",
		Publish: func(string, []byte, time.Duration) error { acks++; return nil }}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		s.process(payload)
		var b protocol.SnapshotBatch
		if protocol.Unmarshal(payload, &b, protocol.Limits{}) != nil {
			return
		}
		b.Seq = c.Applied() + 1
		if ok, err := c.Apply(&b); !ok || err != nil {
			t.Fatalf("Apply at next seq: %v %v", ok, err)
		}
		for _, p := range b.Profiles {
			for _, id := range p.Identifiers {
				if !validIdentifier(id.Type, id.Value) {
					continue
				}
				// Lookups of applied identifiers never fail other than
				// by ErrNotFound (a later profile in the batch may own
				// them, or the type is hashed/normalised).
				if _, _, err := c.Lookup(id.Type, id.Value); err != nil && err != ErrNotFound && err != ErrInvalid {
					t.Fatalf("Lookup %v: %v", id, err)
				}
			}
		}
		if c.Applied()%16 == 0 {
			assertIndexConsistent(t, c)
		}
	})
}
