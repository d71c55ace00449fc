package store

import (
	"maps"
	"slices"
	"sync"

	"github.com/unico-cdp/unico/protocol"
)

// cache keeps decoded nodes and profiles that the writer used recently, so
// that resolving an event rarely reads and decodes from Badger. Only the
// writer (under Store.mu) uses it. Entries are replaced, never mutated: a
// transaction works on clones and installs them after a successful commit,
// so a failed commit leaves the cache as it was.
//
// Readers other than the writer (the snapshot manager's Changes) may look
// up committed profiles with committed; mu orders the writer's changes to
// the profiles map against them. The writer itself reads without mu.
type cache struct {
	maxNodes, maxProfiles int
	nodes                 map[protocol.Identifier]*node
	mu                    sync.RWMutex
	profiles              map[string]*record
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

func (n *node) clone() *node {
	c := *n
	if n.Seen != nil {
		c.Seen = make(map[string][]uint64, len(n.Seen))
		for k, v := range n.Seen {
			c.Seen[k] = slices.Clone(v)
		}
	}
	return &c
}

func (r *record) clone() *record {
	c := *r
	p := &c.P
	p.Identifiers = slices.Clone(r.P.Identifiers)
	p.Traits = maps.Clone(r.P.Traits)
	p.Consent = maps.Clone(r.P.Consent)
	p.Computed.SiteVisits = maps.Clone(r.P.Computed.SiteVisits)
	p.Computed.Channels = maps.Clone(r.P.Computed.Channels)
	p.Computed.Edges = maps.Clone(r.P.Computed.Edges)
	p.Computed.Purchases = slices.Clone(r.P.Computed.Purchases)
	if r.P.Computed.LastContact != nil {
		lc := *r.P.Computed.LastContact
		p.Computed.LastContact = &lc
	}
	return &c
}

// install records the committed state of a transaction.
func (c *cache) install(t *tx) {
	for x := range t.nodes {
		c.nodes[x] = t.nodes[x]
	}
	c.mu.Lock()
	defer c.mu.Unlock()
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
		drop := len(c.nodes) - c.maxNodes*9/10
		for k := range c.nodes {
			if drop == 0 {
				break
			}
			delete(c.nodes, k)
			drop--
		}
	}
	if len(c.profiles) > c.maxProfiles {
		drop := len(c.profiles) - c.maxProfiles*9/10
		for k := range c.profiles {
			if drop == 0 {
				break
			}
			delete(c.profiles, k)
			drop--
		}
	}
}

func (c *cache) reset() {
	clear(c.nodes)
	c.mu.Lock()
	clear(c.profiles)
	c.mu.Unlock()
}
