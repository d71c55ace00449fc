package store

import (
	"maps"
	"slices"
	"sync"

	"github.com/unico-cdp/unico/internal/evict"
	"github.com/unico-cdp/unico/protocol"
)

// cache keeps decoded nodes and profiles that the writer used recently, so
// that resolving an event rarely reads and decodes from Badger. It holds
// durable state only: a transaction reads its entries in place but changes
// clones (record.clone, tx.nodeW), and its changes are installed once
// Badger has committed it (from the commit's callback, while
// the writer may be resolving the next transaction), so a failed commit
// leaves the cache as it was. Entries are replaced, never mutated.
//
// Readers other than the writer (the profile API, the snapshot manager's
// Changes) look up committed profiles with committed.
type cache struct {
	maxNodes, maxProfiles int
	mu                    sync.RWMutex
	nodes                 map[protocol.Identifier]*node
	profiles              map[string]*record
	// nodesComplete holds while nodes has every stored node: it was
	// loaded whole at open and nothing was evicted since. Then an
	// identifier missing from it is new, and the writer need not ask
	// Badger.
	nodesComplete bool
}

// node returns the committed node of x, if cached, and whether the cache
// holds every node. The node must not be modified.
func (c *cache) node(x protocol.Identifier) (n *node, complete bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.nodes[x], c.nodesComplete
}

// committed returns the last committed record of pid, if cached. The
// record must not be modified.
func (c *cache) committed(pid string) *record {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.profiles[pid]
}

func newCache(maxNodes, maxProfiles int) *cache {
	return &cache{
		maxNodes: maxNodes, maxProfiles: maxProfiles,
		nodes:    make(map[protocol.Identifier]*node),
		profiles: make(map[string]*record),
	}
}

// clone returns a copy of n that may be changed without changing n. As in
// record.clone, lists are shared but clipped, so that appending to one
// reallocates it; nothing writes the elements of a list in place.
func (n *node) clone() *node {
	c := *n
	if n.Seen != nil {
		// The lists are shared, clipped: an append reallocates.
		c.Seen = make(map[string][]uint64, len(n.Seen))
		for k, v := range n.Seen {
			c.Seen[k] = slices.Clip(v)
		}
	}
	return &c
}

// clone returns a copy of r that may be changed without changing r.
func (r *record) clone() *record {
	c := *r
	p := &c.P
	// Shared, clipped: AddIdentifier's insert reallocates.
	p.Identifiers = slices.Clip(r.P.Identifiers)
	// Shared until written: few events carry traits or consent
	// (ownTraitsConsent).
	c.sharedTC = r.P.Traits != nil || r.P.Consent != nil
	// Own copies: Classifier.Apply adds to them in place.
	p.Computed.SiteVisits = r.P.Computed.SiteVisits.Clone()
	p.Computed.Channels = r.P.Computed.Channels.Clone()
	p.Computed.Edges = r.P.Computed.Edges.Clone()
	// Shared, clipped: purchases are merged into a new list.
	p.Computed.Purchases = slices.Clip(r.P.Computed.Purchases)
	if r.P.Computed.LastContact != nil {
		lc := *r.P.Computed.LastContact
		p.Computed.LastContact = &lc
	}
	return &c
}

// ownTraitsConsent gives r its own traits and consent maps, which a clone
// shares with its original until it writes them. Every writer of a
// record's traits or consent (profile.Classifier.Apply, profile.Merge)
// goes through tx.fold or tx.absorb, which call it first.
func (r *record) ownTraitsConsent() {
	if r.sharedTC {
		r.P.Traits = maps.Clone(r.P.Traits)
		r.P.Consent = maps.Clone(r.P.Consent)
		r.sharedTC = false
	}
}

// install records the committed state of a transaction.
func (c *cache) install(t *tx) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for x := range t.dirtyN {
		c.nodes[x] = t.nodes[x]
	}
	for _, x := range t.loadedN {
		c.nodes[x] = t.nodes[x]
	}
	for pid, r := range t.profiles {
		if r == nil {
			delete(c.profiles, pid)
			continue
		}
		c.profiles[pid] = r
	}
	c.evict()
}

func (c *cache) evict() {
	if len(c.nodes) > c.maxNodes {
		c.nodesComplete = false
		evict.Arbitrary(c.nodes, c.maxNodes*9/10)
	}
	if len(c.profiles) > c.maxProfiles {
		evict.Arbitrary(c.profiles, c.maxProfiles*9/10)
	}
}

func (c *cache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.nodes)
	clear(c.profiles)
	c.nodesComplete = false
}
