package store

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

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

// TestAbandonedTxLeavesCache: a transaction that resolves events and is
// then dropped without being written (resolveBatches returns an error
// half way) must leave no trace in the nodes and profiles the cache
// holds, which it shares until it changes them (tx.nodeW, record.clone).
func TestAbandonedTxLeavesCache(t *testing.T) {
	s := open(t)
	a, b := id(protocol.IDEmail, "a@x.com"), id(protocol.IDEmail, "b@x.com")
	c1, c2 := id(protocol.IDLoyaltyID, "L1"), id(protocol.IDLoyaltyID, "L2")
	phone, anon := id(protocol.IDPhone, "+3311"), id(protocol.IDAnonymousID, "anon-1")
	card, mail := id(protocol.IDLoyaltyID, "L9"), func(i int) protocol.Identifier { return id(protocol.IDEmail, fmt.Sprintf("m%d@x.com", i)) }
	commit(t, s, order("e1", 1, 10, "s1", c1, a), order("e2", 2, 10, "s1", b, anon), order("e3", 3, 10, "s2", a, id(protocol.IDAnonymousID, "anon-0")),
		order("e7", 7, 10, "s4", card, mail(1)), order("e8", 8, 10, "s4", card, mail(2)), order("e9", 9, 10, "s4", card, mail(3)))
	encoded := func() map[string]string {
		s.cache.mu.RLock()
		defer s.cache.mu.RUnlock()
		out := map[string]string{}
		for x, n := range s.cache.nodes {
			out["node "+x.String()] = string(encodeNode(nil, n))
		}
		for pid, r := range s.cache.profiles {
			enc, err := encodeRecord(nil, r)
			if err != nil {
				t.Fatal(err)
			}
			out["profile "+pid] = string(enc)
		}
		return out
	}
	before := encoded()
	if len(before) < 10 {
		t.Fatalf("the cache holds %d nodes and profiles, want 8 nodes and 3 profiles", len(before))
	}
	s.mu.Lock()
	tx := s.newTx()
	for _, e := range []protocol.Event{
		// A late event of the card's profile: it goes first in the
		// profile's open timeline page, whose array has room to spare.
		order("e0", 0, 10, "s4", mail(1)),
		order("e4", 4, 10, "s1", a, b, phone), // links the two profiles: one absorbs the other, nodes move
		order("e5", 5, 10, "s3", anon, id(protocol.IDAnonymousID, "anon-2")),
		order("e6", 6, 10, "s3", c1, c2),          // a refused link: re-partition
		order("e10", 10, 10, "s4", card, mail(4)), // the card becomes shared: its profile splits
	} {
		if _, err := tx.addEvent(&e, nil); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Unlock()
	if len(tx.dirtyN) == 0 || len(tx.dirtyP) == 0 {
		t.Fatalf("the transaction changed %d nodes and %d profiles, want some of each", len(tx.dirtyN), len(tx.dirtyP))
	}
	if d := cmp.Diff(before, encoded()); d != "" {
		t.Fatalf("a transaction that was never written changed the cache (-before +after):\n%s", d)
	}
}
