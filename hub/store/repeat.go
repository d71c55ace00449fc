package store

import (
	"crypto/sha256"
	"fmt"
	"slices"

	"github.com/unico-cdp/unico/hub/identity"
	"github.com/unico-cdp/unico/protocol"
)

// Repeated refusals.
//
// When a link breaks a limit (a family's shared e-mail seen with two
// loyalty cards), every later event carrying the same identifiers would
// break it again, and re-partitioning its component each time costs a read
// of all the component's events. Such an event changes nothing, which is
// why it can be attached directly:
//
// Let O be a stored event with the same linkable, non-shared identifiers
// as the new event E, in the same order (the signature below), and
// O.ID < E.ID. E brings no new co-occurrence (plan.seen is empty), so no
// identifier's shared state changes, and none of its identifiers is
// isolated. In identity.Partition, E's edges are then O's edges (same
// anchor, same ends, same priorities) with a larger event id, so each comes
// right after its twin from O. After the twin, the two ends are either in
// one set already (E's edge is skipped) or were refused; sets only grow, so
// a refused union stays over the limit and E's edge is refused again. The
// union-find evolves exactly as without E: the groups are unchanged, and E
// belongs to the group of its first identifier. So E is folded into that
// profile and cross-referenced from the other identifiers' keys, as a
// re-partition would have done.
//
// E may also bring fresh identifiers: ones in no stored event (no node
// yet), of a type without a per-profile limit (an anonymous id of a new
// browser session), and not E's first. They are left out of the
// signature, and the co-occurrences E adds may only be theirs. In
// Partition such an identifier x is a set of its own until E's edge from
// the anchor to x, which nothing refuses: x is not isolated, not shared
// (plan.shared is empty), and a set of one identifier of an unlimited type
// adds to no limited count. The union gives the anchor's set one more
// identifier of an unlimited type, which changes no later decision, and
// x's degrees are its own (co-occurrences count limited types only). So
// the groups are those above with each fresh identifier in E's group,
// where attachRepeat puts it, recording the link.
//
// The signature key records, for the identifiers of an event that caused a
// limit re-partition (fresh ones left out), the smallest id of such an
// event.

// signatureKey is the key of an ordered identifier list.
func signatureKey(ids []protocol.Identifier) []byte {
	h := sha256.New()
	for _, x := range ids {
		h.Write([]byte(x.Type))
		h.Write([]byte{0})
		h.Write([]byte(x.Value))
		h.Write([]byte{0})
	}
	return h.Sum([]byte{tSignature})[:1+16]
}

// signatureOf splits p's active identifiers into e's signature and its
// fresh identifiers (see Repeated refusals). ok is false when e adds a
// co-occurrence to an identifier that is not fresh: then e is no repeat,
// though it may be the first event of its signature.
func (t *tx) signatureOf(p *plan) (sig, fresh []protocol.Identifier, ok bool) {
	r := t.s.rules
	for i, x := range p.active {
		if n := t.nodes[x]; i > 0 && n.P == "" && !n.Shared && !n.Isolated && !r.Limited(x.Type) {
			fresh = append(fresh, x)
			continue
		}
		sig = append(sig, x)
	}
	for x := range p.seen {
		if !slices.Contains(fresh, x) {
			return sig, fresh, false
		}
	}
	return sig, fresh, true
}

// repeatsRefusal reports whether e repeats the identifiers of a stored
// event with a smaller id that caused a limit re-partition. sig is e's
// signature: its non-shared linkable identifiers, strongest first, but the
// fresh ones.
func (t *tx) repeatsRefusal(e *protocol.Event, sig []protocol.Identifier) (bool, error) {
	if len(sig) < 2 {
		return false, nil
	}
	for _, x := range sig {
		n, err := t.node(x)
		if err != nil {
			return false, err
		}
		if n.P == "" || n.Isolated || n.Shared {
			return false, nil
		}
	}
	var earlier bool
	if _, err := t.get(signatureKey(sig), func(v []byte) error {
		earlier = string(v) < e.ID
		return nil
	}); err != nil {
		return false, fmt.Errorf("read signature: %w", err)
	}
	return earlier, nil
}

// attachRepeat folds e into the profile of its strongest identifier,
// cross-references it from identifiers held by other profiles and links
// its fresh identifiers to that profile.
func (t *tx) attachRepeat(e *protocol.Event, sig, fresh []protocol.Identifier) error {
	owner := t.nodes[sig[0]].P
	rec, err := t.profile(owner)
	if err != nil {
		return fmt.Errorf("profile %s of a node: %w", owner, err)
	}
	for _, x := range sig[1:] {
		if t.nodes[x].P != owner {
			if err := t.setIn(crossPrefix(x), crossKey(x, e.ID), nil); err != nil {
				return err
			}
		}
	}
	if len(fresh) > 0 {
		mr := MergeRecord{At: t.s.opts.Now().UTC(), EventID: e.ID, Reason: identity.ReasonLinked}
		for _, x := range fresh {
			n, err := t.nodeW(x)
			if err != nil {
				return err
			}
			n.P = owner
			rec.P.AddIdentifier(x)
			mr.Links = append(mr.Links, identity.Decision{EventID: e.ID, A: sig[0], B: x, Linked: true, Reason: identity.ReasonLinked})
		}
		if err := t.addMerge(rec, mr); err != nil {
			return err
		}
	}
	return t.own(rec, e)
}

// noteSignature records e as an event with signature sig whose links were
// refused, unless one with a smaller id is recorded.
func (t *tx) noteSignature(e *protocol.Event, sig []protocol.Identifier) error {
	if len(sig) < 2 {
		return nil
	}
	k := signatureKey(sig)
	keep := false
	if _, err := t.get(k, func(v []byte) error {
		keep = string(v) <= e.ID
		return nil
	}); err != nil {
		return fmt.Errorf("read signature: %w", err)
	}
	if keep {
		return nil
	}
	return t.set(k, []byte(e.ID))
}
