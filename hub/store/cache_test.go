package store

import (
	"slices"
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
}
