package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/unico-cdp/unico/hub/identity"
	"github.com/unico-cdp/unico/hub/profile"
	"github.com/unico-cdp/unico/protocol"
)

var errTooLarge = errors.New("identity component too large")

// component is the raw identity component around some identifiers: every
// profile reachable through events that share identifiers, and all their
// events.
type component struct {
	pids   []string
	pidSet map[string]bool
	idents map[protocol.Identifier]bool
	events map[string]*protocol.Event
	// timeline and cross are the keys found on the timelines of pids and
	// in the cross references of idents, each with its scan prefix:
	// rewrite leaves alone those it would write again (a timeline key
	// whose entries all stay with its profile) and deletes the rest.
	timeline, cross map[string][]byte
	// where tells where each event's timeline entry was: the profile,
	// and the key holding it (empty: the profile's open page).
	where map[string]entryPlace
	// pageOf lists the event ids of each page key of timeline.
	pageOf map[string][]string
}

// entryPlace is where a timeline entry was found.
type entryPlace struct {
	pid, key string
}

// gather loads the component of seeds. Every event that mentions an
// identifier is either on the timeline of the identifier's profile or
// cross-referenced from the identifier, so following both reaches all.
func (t *tx) gather(seeds []protocol.Identifier, extra *protocol.Event) (*component, error) {
	c := &component{
		pidSet: map[string]bool{}, idents: map[protocol.Identifier]bool{}, events: map[string]*protocol.Event{},
		timeline: map[string][]byte{}, cross: map[string][]byte{},
		where: map[string]entryPlace{}, pageOf: map[string][]string{},
	}
	limit := t.s.rules.MaxComponentEvents
	var queue []protocol.Identifier
	visitEvent := func(e *protocol.Event) error {
		if _, ok := c.events[e.ID]; ok {
			return nil
		}
		if len(c.events) >= limit {
			return errTooLarge
		}
		c.events[e.ID] = e
		for _, x := range t.s.rules.Identifiers(e) {
			if !c.idents[x] {
				c.idents[x] = true
				queue = append(queue, x)
			}
		}
		return nil
	}
	if extra != nil {
		if err := visitEvent(extra); err != nil {
			return nil, err
		}
	}
	for _, x := range seeds {
		if !c.idents[x] {
			c.idents[x] = true
			queue = append(queue, x)
		}
	}
	for len(queue) > 0 {
		x := queue[0]
		queue = queue[1:]
		n, err := t.node(x)
		if err != nil {
			return nil, err
		}
		var eventIDs []string
		if n.P != "" && !c.pidSet[n.P] {
			c.pidSet[n.P] = true
			c.pids = append(c.pids, n.P)
			rec, err := t.profile(n.P)
			if err != nil {
				return nil, err
			}
			for _, y := range rec.P.Identifiers {
				if !c.idents[y] {
					c.idents[y] = true
					queue = append(queue, y)
				}
			}
			if err := eachPageEntry(rec.TL, func(en tlEntry) {
				c.where[en.ID] = entryPlace{pid: n.P}
				eventIDs = append(eventIDs, en.ID)
			}); err != nil {
				return nil, fmt.Errorf("open timeline page of %s: %w", n.P, err)
			}
			p := timelinePrefix(n.P)
			if err := t.scan(p, func(k, v []byte) error {
				key := string(k)
				c.timeline[key] = p
				if len(v) == 0 {
					id := string(k[len(p)+8:])
					c.where[id] = entryPlace{pid: n.P, key: key}
					eventIDs = append(eventIDs, id)
					return nil
				}
				return eachPageEntry(v, func(en tlEntry) {
					c.where[en.ID] = entryPlace{pid: n.P, key: key}
					c.pageOf[key] = append(c.pageOf[key], en.ID)
					eventIDs = append(eventIDs, en.ID)
				})
			}); err != nil {
				return nil, err
			}
		}
		cp := crossPrefix(x)
		if err := t.scan(cp, func(k, _ []byte) error {
			c.cross[string(k)] = cp
			eventIDs = append(eventIDs, string(k[len(cp):]))
			return nil
		}); err != nil {
			return nil, err
		}
		for _, id := range eventIDs {
			if _, ok := c.events[id]; ok {
				continue
			}
			if len(c.events) >= limit {
				return nil, errTooLarge
			}
			e, err := t.loadEvent(id)
			if err != nil {
				return nil, err
			}
			if err := visitEvent(e); err != nil {
				return nil, err
			}
		}
	}
	return c, nil
}

// repartition recomputes the profiles of e's component with
// identity.Partition and rewrites them.
func (t *tx) repartition(e *protocol.Event, ids []protocol.Identifier) error {
	c, err := t.gather(ids, e)
	if err != nil {
		return err
	}
	return t.rewrite(c, e.ID, "repartition")
}

// rewrite replaces the profiles of component c by the partition of its
// events.
func (t *tx) rewrite(c *component, causeEvent, reason string) error {
	r := t.s.rules
	evs := make([]*protocol.Event, 0, len(c.events))
	for _, e := range c.events {
		evs = append(evs, e)
	}
	res := identity.Partition(evs, r, identity.Options{
		Shared:   func(x protocol.Identifier) bool { n, err := t.node(x); return err == nil && n.Shared },
		Isolated: func(x protocol.Identifier) bool { n, err := t.node(x); return err == nil && n.Isolated },
	})
	t.s.repartitions.Add(1)

	// Old state: remember each identifier's profile, then clear the merge
	// histories of the component. Timeline entries and cross references
	// that stay are left alone, the others deleted at the end.
	oldP := make(map[protocol.Identifier]string, len(c.idents))
	for x := range c.idents {
		n, err := t.node(x)
		if err != nil {
			return err
		}
		oldP[x] = n.P
	}
	old := make(map[string]*record, len(c.pids))
	for _, pid := range c.pids {
		rec, err := t.profile(pid)
		if err != nil {
			return err
		}
		old[pid] = rec
		p := mergePrefix(pid)
		if err := t.scan(p, func(k, _ []byte) error { return t.delIn(p, k) }); err != nil {
			return err
		}
	}

	// New profiles: reuse the oldest old profile id among a group's
	// identifiers so that ids stay stable across re-partitions.
	at := t.s.opts.Now().UTC()
	taken := map[string]bool{}
	recs := make([]*record, len(res.Groups))
	for gi, g := range res.Groups {
		var best *record
		for _, x := range g {
			o := old[oldP[x]]
			if o == nil || taken[o.P.ID] {
				continue
			}
			if best == nil || o.P.CreatedAt.Before(best.P.CreatedAt) || (o.P.CreatedAt.Equal(best.P.CreatedAt) && o.P.ID < best.P.ID) {
				best = o
			}
		}
		var rec *record
		if best != nil {
			taken[best.P.ID] = true
			rec = &record{P: profile.Profile{ID: best.P.ID, CreatedAt: best.P.CreatedAt}}
			t.profiles[rec.P.ID] = rec
			t.dirtyP[rec.P.ID] = true
		} else {
			rec = t.newProfile(at)
		}
		rec.Conflicted = res.Conflicted[gi]
		for _, x := range g {
			rec.P.AddIdentifier(x)
			// Most nodes of a re-partitioned component keep their
			// profile: only those that change are written.
			if n, _ := t.node(x); n.P != rec.P.ID {
				n, err := t.nodeW(x)
				if err != nil {
					return err
				}
				n.P = rec.P.ID
			}
		}
		recs[gi] = rec
	}
	for _, x := range res.Shared {
		n, err := t.node(x)
		if err != nil {
			return err
		}
		if n.P != "" || !n.Shared {
			if n, err = t.nodeW(x); err != nil {
				return err
			}
			n.P, n.Shared, n.Seen = "", true, nil
		}
	}
	groupOf := make(map[protocol.Identifier]int)
	for gi, g := range res.Groups {
		for _, x := range g {
			groupOf[x] = gi
		}
	}
	// Events: fold into their owner, cross-reference the rest. A timeline
	// key stays where all the entries it holds stay with their profile;
	// the other entries go to their owner's open page.
	slices.SortFunc(evs, func(a, b *protocol.Event) int { return compareStrings(a.ID, b.ID) })
	ownerPID := func(id string) string {
		if gi, ok := res.Owner[id]; ok {
			return recs[gi].P.ID
		}
		return ""
	}
	stays := func(id string) bool {
		w, ok := c.where[id]
		if !ok || w.key == "" || ownerPID(id) != w.pid {
			return false
		}
		for _, other := range c.pageOf[w.key] {
			if ownerPID(other) != w.pid {
				return false
			}
		}
		return true
	}
	for _, e := range evs {
		gi, ok := res.Owner[e.ID]
		if !ok {
			continue
		}
		rec := recs[gi]
		t.fold(rec, e)
		if stays(e.ID) {
			delete(c.timeline, c.where[e.ID].key)
		} else if err := t.addTimeline(rec, entryOf(e), c.timeline); err != nil {
			return err
		}
		for _, x := range r.Identifiers(e) {
			if g, ok := groupOf[x]; ok && g != gi {
				if err := t.keepOrSet(c.cross, crossPrefix(x), crossKey(x, e.ID)); err != nil {
					return err
				}
			}
		}
	}
	for _, stale := range []map[string][]byte{c.timeline, c.cross} {
		for k, p := range stale {
			if err := t.delIn(p, []byte(k)); err != nil {
				return err
			}
		}
	}
	// Old profiles not reused redirect to the new profile of their
	// strongest identifier.
	for pid, o := range old {
		if taken[pid] {
			continue
		}
		into := ""
		ids := slices.Clone(o.P.Identifiers)
		r.SortStrongest(ids)
		for _, x := range ids {
			if gi, ok := groupOf[x]; ok {
				into = recs[gi].P.ID
				break
			}
		}
		if err := t.deleteProfile(pid, into); err != nil {
			return err
		}
	}
	// Merge history: the canonical decisions that concern each profile.
	for gi, rec := range recs {
		mr := MergeRecord{At: at, EventID: causeEvent, Reason: reason}
		for _, d := range res.Decisions {
			ga, okA := groupOf[d.A]
			gb, okB := groupOf[d.B]
			if (okA && ga == gi) || (okB && gb == gi) {
				mr.Links = append(mr.Links, d)
			}
		}
		for pid := range old {
			if pid != rec.P.ID && !taken[pid] {
				// Profiles that disappeared into this group.
				for _, x := range old[pid].P.Identifiers {
					if g, ok := groupOf[x]; ok && g == gi {
						mr.Absorbed = append(mr.Absorbed, pid)
						break
					}
				}
			}
		}
		slices.Sort(mr.Absorbed)
		rec.MergeSeq = 0
		if len(mr.Links) > 0 || len(mr.Absorbed) > 0 {
			if err := t.addMerge(rec, mr); err != nil {
				return err
			}
		}
	}
	return nil
}

// keepOrSet writes k (no value) under prefix unless it is one of the keys
// in stale, which it takes out of stale instead: the key is there already.
func (t *tx) keepOrSet(stale map[string][]byte, prefix, k []byte) error {
	if _, ok := stale[string(k)]; ok {
		delete(stale, string(k))
		return nil
	}
	return t.setIn(prefix, k, nil)
}

// attachOnly is the fallback when a component is too large to
// re-partition: e joins the profile of its strongest identifier, new
// identifiers join it while limits allow, and nothing is merged.
func (t *tx) attachOnly(e *protocol.Event, active []protocol.Identifier) error {
	if len(active) == 0 {
		return nil
	}
	r := t.s.rules
	n0, err := t.node(active[0])
	if err != nil {
		return err
	}
	var rec *record
	if n0.P != "" {
		if rec, err = t.profile(n0.P); err != nil {
			return err
		}
	} else {
		rec = t.newProfile(t.s.opts.Now().UTC())
		if n0, err = t.nodeW(active[0]); err != nil {
			return err
		}
		n0.P = rec.P.ID
		rec.P.AddIdentifier(active[0])
	}
	counts := map[string]int{}
	for _, x := range rec.P.Identifiers {
		counts[x.Type]++
	}
	mr := MergeRecord{At: t.s.opts.Now().UTC(), EventID: e.ID, Reason: "component_too_large"}
	for _, x := range active[1:] {
		n, err := t.node(x)
		if err != nil {
			return err
		}
		if n.P == rec.P.ID {
			continue
		}
		max := r.Rule(x.Type).MaxPerProfile
		if n.P == "" && !n.Isolated && (max == 0 || counts[x.Type] < max) {
			if n, err = t.nodeW(x); err != nil {
				return err
			}
			n.P = rec.P.ID
			rec.P.AddIdentifier(x)
			counts[x.Type]++
			mr.Links = append(mr.Links, identity.Decision{EventID: e.ID, A: active[0], B: x, Linked: true, Reason: identity.ReasonLinked})
			continue
		}
		mr.Links = append(mr.Links, identity.Decision{EventID: e.ID, A: active[0], B: x, Reason: "component_too_large"})
		if err := t.setIn(crossPrefix(x), crossKey(x, e.ID), nil); err != nil {
			return err
		}
	}
	if err := t.addMerge(rec, mr); err != nil {
		return err
	}
	return t.own(rec, e)
}

func beUint64(b []byte) uint64           { return binary.BigEndian.Uint64(b) }
func beAppend(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
