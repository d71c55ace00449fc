package store

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/unico-cdp/unico/hub/profile"
	"github.com/unico-cdp/unico/protocol"
)

// TestCloneIndependent: changing clones the way the writer does (appending
// co-occurrence hashes, adding identifiers) changes neither the original
// nor another clone, also when the original's lists have spare capacity.
func TestCloneIndependent(t *testing.T) {
	seen := make([]uint64, 2, 10)
	seen[0], seen[1] = 1, 2
	n := &node{P: "p1", Seen: map[string][]uint64{"email": seen}}
	a, b := n.clone(), n.clone()
	a.Seen["email"] = append(a.Seen["email"], 3)
	b.Seen["email"] = append(b.Seen["email"], 4)
	a.Seen["phone"] = []uint64{5}
	if !slices.Equal(n.Seen["email"], []uint64{1, 2}) || len(n.Seen) != 1 {
		t.Fatalf("original node changed: %v", n.Seen)
	}
	if !slices.Equal(a.Seen["email"], []uint64{1, 2, 3}) || !slices.Equal(b.Seen["email"], []uint64{1, 2, 4}) {
		t.Fatalf("clones interfere: %v %v", a.Seen, b.Seen)
	}

	ids := make([]protocol.Identifier, 2, 10)
	ids[0], ids[1] = id("email", "a@x.co"), id("phone", "+391")
	r := &record{P: profile.Profile{ID: "p1", Identifiers: ids}}
	c, d := r.clone(), r.clone()
	c.P.AddIdentifier(id("anonymous_id", "z"))
	d.P.AddIdentifier(id("loyalty_id", "L1"))
	if len(r.P.Identifiers) != 2 || r.P.Identifiers[0] != ids[0] || r.P.Identifiers[1] != ids[1] {
		t.Fatalf("original profile changed: %v", r.P.Identifiers)
	}
	if c.P.Identifiers[0] != id("anonymous_id", "z") || d.P.Identifiers[1] != id("loyalty_id", "L1") || len(c.P.Identifiers) != 3 || len(d.P.Identifiers) != 3 {
		t.Fatalf("clones interfere: %v %v", c.P.Identifiers, d.P.Identifiers)
	}
	if ids[:3:3][2] != (protocol.Identifier{}) {
		t.Fatalf("a clone wrote the original's spare capacity: %v", ids[:3])
	}

	// Traits and consent are shared until a writer owns them.
	r.P.Traits = map[string]profile.Trait{"name": {Value: "Ana"}}
	r.P.Consent = map[string]profile.Consent{"marketing": {Granted: true}}
	e := r.clone()
	e.ownTraitsConsent()
	e.P.Traits["name"] = profile.Trait{Value: "Bea"}
	e.P.Consent["sms"] = profile.Consent{}
	if r.P.Traits["name"].Value != "Ana" || len(r.P.Consent) != 1 {
		t.Fatalf("a clone that owns its maps wrote the original's: %v %v", r.P.Traits, r.P.Consent)
	}
}

// TestReadersShareNoTraits: readers of a committed profile (the API, the
// snapshot manager) range over its traits, consent and counts while the
// writer folds events with new traits and consent into the same profile:
// the writer's record must not write the maps and counts it shares with
// the committed one (the race detector reports it when it does).
func TestReadersShareNoTraits(t *testing.T) {
	s := open(t)
	card := id(protocol.IDLoyaltyID, "L1")
	commit(t, s, order("e000", 0, 10, "s1", card))
	v, err := s.Lookup(card)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var reads atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			p, err := s.Profile(v.ID)
			if err != nil {
				t.Error(err)
				return
			}
			n := 0
			for range p.Traits {
				n++
			}
			for range p.Consent {
				n++
			}
			var counted int64
			for _, c := range []profile.Counts{p.Computed.Edges, p.Computed.Channels, p.Computed.SiteVisits} {
				for _, x := range c {
					counted += x.N
				}
			}
			if n > 0 && counted > 0 {
				reads.Add(1)
			}
		}
	}()
	for i := 1; i <= 100; i++ {
		e := order(fmt.Sprintf("e%03d", i), i, 10, "s1", card)
		e.Consent = map[string]bool{fmt.Sprintf("purpose-%d", i): true}
		commit(t, s, e)
	}
	close(stop)
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("the reader read no traits")
	}
}
