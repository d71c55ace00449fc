package store

import (
	"crypto/sha256"
	"fmt"

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
// The signature key records, for the identifiers of an event that caused a
// limit re-partition, the smallest id of such an event.

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

// repeatsRefusal reports whether e repeats the identifiers of a stored
// event with a smaller id that caused a limit re-partition. active are e's
// non-shared linkable identifiers, strongest first.
func (t *tx) repeatsRefusal(e *protocol.Event, active []protocol.Identifier) (bool, error) {
	if len(active) < 2 {
		return false, nil
	}
	for _, x := range active {
		n, err := t.node(x)
		if err != nil {
			return false, err
		}
		if n.P == "" || n.Isolated || n.Shared {
			return false, nil
		}
	}
	var earlier bool
	if _, err := t.get(signatureKey(active), func(v []byte) error {
		earlier = string(v) < e.ID
		return nil
	}); err != nil {
		return false, fmt.Errorf("read signature: %w", err)
	}
	return earlier, nil
}

// attachRepeat folds e into the profile of its strongest identifier and
// cross-references it from identifiers held by other profiles.
func (t *tx) attachRepeat(e *protocol.Event, active []protocol.Identifier) error {
	owner := t.nodes[active[0]].P
	rec, err := t.profile(owner)
	if err != nil {
		return fmt.Errorf("profile %s of a node: %w", owner, err)
	}
	for _, x := range active[1:] {
		if t.nodes[x].P != owner {
			if err := t.setIn(crossPrefix(x), crossKey(x, e.ID), nil); err != nil {
				return err
			}
		}
	}
	return t.own(rec, e)
}

// noteSignature records e as an event with its identifiers whose links
// were refused, unless one with a smaller id is recorded.
func (t *tx) noteSignature(e *protocol.Event, active []protocol.Identifier) error {
	if len(active) < 2 {
		return nil
	}
	k := signatureKey(active)
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
