package store

import (
	"slices"
	"unsafe"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/unico-cdp/unico/hub/profile"
	"github.com/unico-cdp/unico/internal/mpack"
	"github.com/unico-cdp/unico/protocol"
)

// Hand-written encoders of the two values the writer encodes most: every
// changed profile and identifier node of every transaction. They write the
// map form the reflection encoder writes for the same struct tags (fields
// in declaration order, omitempty fields left out when empty), so
// msgpack.Unmarshal reads them and data written by either is the same to
// readers; TestCodecRoundTrip checks both directions.

// mapLen is the number of entries of a struct's map: its always-written
// fields and the omitempty ones present.
func mapLen(always int, present ...bool) int {
	for _, p := range present {
		if p {
			always++
		}
	}
	return always
}

// encodeRecord appends r to dst.
func encodeRecord(dst []byte, r *record) ([]byte, error) {
	dst = mpack.AppendMapHeader(dst, mapLen(1, r.Conflicted, r.MergeSeq != 0, len(r.TL) > 0))
	dst = mpack.AppendStr(dst, "p")
	dst, err := appendProfile(dst, r)
	if err != nil {
		return nil, err
	}
	if r.Conflicted {
		dst = mpack.AppendBool(mpack.AppendStr(dst, "cf"), true)
	}
	if r.MergeSeq != 0 {
		dst = mpack.AppendUint64(mpack.AppendStr(dst, "mq"), r.MergeSeq)
	}
	if len(r.TL) > 0 {
		dst = mpack.AppendBin(mpack.AppendStr(dst, "tl"), r.TL)
	}
	return dst, nil
}

// listCode caches the encoding of a list that a record shares with its
// clones: its identifiers and its recent purchases. Profiles of active
// customers change on every event but gain identifiers and purchases
// rarely, and these two lists are most of their bytes (hundreds of
// anonymous ids, fifty purchases). The code travels with the record into
// the cache and into later clones.
//
// The cache holds while the record's list is the list encoded: the same
// array and length. That is sound because an encoded list is never
// written in place: encode clips it, so that a later insert reallocates,
// and clones share lists clipped too. A changed list is mostly the old one
// with an identifier inserted, or with new purchases ahead of the old
// ones and the oldest dropped: encode then copies the encodings of the
// elements that did not change (compared with ==, which for these element
// types implies the same encoding) and encodes only the others.
type listCode[T comparable] struct {
	list []T    // the list encoded
	b    []byte // the encodings of its elements, one after the other
	offs []int  // where each element's encoding starts in b, then len(b)
}

// encode appends the encoding of *list, an array of elements written by
// enc, and clips *list.
func (c *listCode[T]) encode(dst []byte, list *[]T, enc func([]byte, T) []byte) []byte {
	l := slices.Clip(*list)
	*list = l
	if c.b == nil || unsafe.SliceData(c.list) != unsafe.SliceData(l) || len(c.list) != len(l) {
		c.update(l, enc)
	}
	return append(mpack.AppendArrayHeader(dst, len(l)), c.b...)
}

// update makes c the code of l, reusing what it can of the code of the
// list it held.
func (c *listCode[T]) update(l []T, enc func([]byte, T) []byte) {
	old, ob, oo := c.list, c.b, c.offs
	b := make([]byte, 0, max(len(ob), 64))
	offs := make([]int, 0, len(l)+1)
	add := func(xs []T) {
		for _, x := range xs {
			offs = append(offs, len(b))
			b = enc(b, x)
		}
	}
	// reuse appends the encodings of old[i:j].
	reuse := func(i, j int) {
		shift := len(b) - oo[i]
		for _, o := range oo[i:j] {
			offs = append(offs, o+shift)
		}
		b = append(b, ob[oo[i]:oo[j]]...)
	}
	// With no code before, old is empty: nothing is reused.
	n := min(len(old), len(l))
	pre, suf := 0, 0
	for pre < n && l[pre] == old[pre] {
		pre++
	}
	for suf < n-pre && l[len(l)-1-suf] == old[len(old)-1-suf] {
		suf++
	}
	if pre > 0 || suf > 0 {
		// An insert, a removal or a change between an unchanged head
		// and an unchanged tail.
		reuse(0, pre)
		add(l[pre : len(l)-suf])
		reuse(len(old)-suf, len(old))
	} else if k := headBefore(l, old); k > 0 {
		// New elements ahead of the old ones, the oldest dropped.
		add(l[:k])
		reuse(0, len(l)-k)
	} else {
		add(l)
	}
	c.list, c.b, c.offs = l, b, append(offs, len(b))
}

// headBefore returns k > 0 if l is k new elements followed by a prefix of
// old (at least one element), else -1.
func headBefore[T comparable](l, old []T) int {
	if len(old) == 0 {
		return -1
	}
	k := slices.Index(l, old[0])
	if k <= 0 || len(l)-k > len(old) || !slices.Equal(l[k:], old[:len(l)-k]) {
		return -1
	}
	return k
}

func appendProfile(b []byte, r *record) ([]byte, error) {
	p := &r.P
	b = mpack.AppendMapHeader(b, mapLen(5, len(p.Traits) > 0, len(p.Consent) > 0))
	b = mpack.AppendStr(mpack.AppendStr(b, "id"), p.ID)
	b = mpack.AppendStr(b, "ids")
	if p.Identifiers == nil {
		b = mpack.AppendNil(b)
	} else {
		b = r.ids.encode(b, &p.Identifiers, appendIdentifier)
	}
	if len(p.Traits) > 0 {
		b = mpack.AppendMapHeader(mpack.AppendStr(b, "tr"), len(p.Traits))
		for k, t := range p.Traits {
			b = mpack.AppendStr(b, k)
			var err error
			if b, err = appendTrait(b, &t); err != nil {
				return nil, err
			}
		}
	}
	if len(p.Consent) > 0 {
		b = mpack.AppendMapHeader(mpack.AppendStr(b, "cs"), len(p.Consent))
		for k, c := range p.Consent {
			b = mpack.AppendStr(b, k)
			b = mpack.AppendMapHeader(b, mapLen(3, c.Channel != ""))
			b = mpack.AppendBool(mpack.AppendStr(b, "g"), c.Granted)
			if c.Channel != "" {
				b = mpack.AppendStr(mpack.AppendStr(b, "ch"), c.Channel)
			}
			b = appendStamp(b, c.Stamp)
		}
	}
	b = appendComputed(mpack.AppendStr(b, "cp"), &p.Computed, &r.purchases)
	b = mpack.AppendTime(mpack.AppendStr(b, "ca"), p.CreatedAt)
	b = mpack.AppendTime(mpack.AppendStr(b, "ua"), p.UpdatedAt)
	return b, nil
}

func appendIdentifier(b []byte, x protocol.Identifier) []byte {
	b = mpack.AppendMapHeader(b, 2)
	b = mpack.AppendStr(mpack.AppendStr(b, "t"), x.Type)
	return mpack.AppendStr(mpack.AppendStr(b, "v"), x.Value)
}

// appendStamp writes the two fields of an embedded Stamp, which the
// reflection encoder inlines into the enclosing map.
func appendStamp(b []byte, s profile.Stamp) []byte {
	b = mpack.AppendTime(mpack.AppendStr(b, "at"), s.At)
	return mpack.AppendStr(mpack.AppendStr(b, "ev"), s.EventID)
}

func appendTrait(b []byte, t *profile.Trait) ([]byte, error) {
	b = mpack.AppendMapHeader(b, mapLen(3, t.Channel != "", t.Site != ""))
	b, err := appendAny(mpack.AppendStr(b, "v"), t.Value)
	if err != nil {
		return nil, err
	}
	if t.Channel != "" {
		b = mpack.AppendStr(mpack.AppendStr(b, "ch"), t.Channel)
	}
	if t.Site != "" {
		b = mpack.AppendStr(mpack.AppendStr(b, "si"), t.Site)
	}
	return appendStamp(b, t.Stamp), nil
}

// appendAny writes a trait value: the JSON-like types events carry
// directly, anything else through the reflection encoder.
func appendAny(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return mpack.AppendNil(b), nil
	case string:
		return mpack.AppendStr(b, v), nil
	case bool:
		return mpack.AppendBool(b, v), nil
	case int64:
		return mpack.AppendInt64(b, v), nil
	case float64:
		return mpack.AppendFloat64(b, v), nil
	case []any:
		b = mpack.AppendArrayHeader(b, len(v))
		for _, e := range v {
			var err error
			if b, err = appendAny(b, e); err != nil {
				return nil, err
			}
		}
		return b, nil
	case map[string]any:
		b = mpack.AppendMapHeader(b, len(v))
		for k, e := range v {
			var err error
			if b, err = appendAny(mpack.AppendStr(b, k), e); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	enc, err := msgpack.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, enc...), nil
}

// appendComputed writes c, its purchases through pc.
func appendComputed(b []byte, c *profile.Computed, pc *listCode[profile.Purchase]) []byte {
	b = mpack.AppendMapHeader(b, mapLen(5, !c.LastPurchaseAt.IsZero(), len(c.SiteVisits) > 0, len(c.Edges) > 0,
		len(c.Channels) > 0, c.LastContact != nil, len(c.Purchases) > 0))
	b = mpack.AppendTime(mpack.AppendStr(b, "fs"), c.FirstSeen)
	b = mpack.AppendTime(mpack.AppendStr(b, "ls"), c.LastSeen)
	b = mpack.AppendInt64(mpack.AppendStr(b, "ev"), c.Events)
	b = mpack.AppendInt64(mpack.AppendStr(b, "or"), c.Orders)
	b = mpack.AppendInt64(mpack.AppendStr(b, "rv"), int64(c.Revenue))
	if !c.LastPurchaseAt.IsZero() {
		b = mpack.AppendTime(mpack.AppendStr(b, "lp"), c.LastPurchaseAt)
	}
	b = appendCounts(b, "sv", c.SiteVisits)
	b = appendCounts(b, "ed", c.Edges)
	b = appendCounts(b, "ch", c.Channels)
	if lc := c.LastContact; lc != nil {
		b = mpack.AppendMapHeader(mpack.AppendStr(b, "lc"), mapLen(2, lc.Reason != "", lc.Channel != ""))
		if lc.Reason != "" {
			b = mpack.AppendStr(mpack.AppendStr(b, "r"), lc.Reason)
		}
		if lc.Channel != "" {
			b = mpack.AppendStr(mpack.AppendStr(b, "ch"), lc.Channel)
		}
		b = appendStamp(b, lc.Stamp)
	}
	if len(c.Purchases) > 0 {
		b = pc.encode(mpack.AppendStr(b, "pu"), &c.Purchases, appendPurchase)
	}
	return b
}

func appendPurchase(b []byte, p profile.Purchase) []byte {
	b = mpack.AppendMapHeader(b, mapLen(2, p.Name != ""))
	b = mpack.AppendStr(mpack.AppendStr(b, "p"), p.Product)
	if p.Name != "" {
		b = mpack.AppendStr(mpack.AppendStr(b, "n"), p.Name)
	}
	return mpack.AppendTime(mpack.AppendStr(b, "at"), p.At)
}

// appendCounts writes counts under key as a map, unless they are empty.
func appendCounts(b []byte, key string, c profile.Counts) []byte {
	if len(c) == 0 {
		return b
	}
	b = mpack.AppendMapHeader(mpack.AppendStr(b, key), len(c))
	for _, x := range c {
		b = mpack.AppendInt64(mpack.AppendStr(b, x.Key), x.N)
	}
	return b
}

// encodeNode appends n to dst.
func encodeNode(dst []byte, n *node) []byte {
	dst = mpack.AppendMapHeader(dst, mapLen(0, n.P != "", n.Shared, n.Isolated, len(n.Seen) > 0))
	if n.P != "" {
		dst = mpack.AppendStr(mpack.AppendStr(dst, "p"), n.P)
	}
	if n.Shared {
		dst = mpack.AppendBool(mpack.AppendStr(dst, "s"), true)
	}
	if n.Isolated {
		dst = mpack.AppendBool(mpack.AppendStr(dst, "i"), true)
	}
	if len(n.Seen) > 0 {
		dst = mpack.AppendMapHeader(mpack.AppendStr(dst, "d"), len(n.Seen))
		for typ, hs := range n.Seen {
			dst = mpack.AppendStr(dst, typ)
			if hs == nil {
				dst = mpack.AppendNil(dst)
				continue
			}
			dst = mpack.AppendArrayHeader(dst, len(hs))
			for _, h := range hs {
				dst = mpack.AppendUint64(dst, h)
			}
		}
	}
	return dst
}

// encodeMerge appends mr to dst. identity.Decision has no msgpack tags:
// its keys are its field names, as the reflection encoder writes them.
func encodeMerge(dst []byte, mr *MergeRecord) []byte {
	dst = mpack.AppendMapHeader(dst, mapLen(3, len(mr.Absorbed) > 0, len(mr.Links) > 0))
	dst = mpack.AppendTime(mpack.AppendStr(dst, "at"), mr.At)
	dst = mpack.AppendStr(mpack.AppendStr(dst, "ev"), mr.EventID)
	dst = mpack.AppendStr(mpack.AppendStr(dst, "r"), mr.Reason)
	if len(mr.Absorbed) > 0 {
		dst = mpack.AppendArrayHeader(mpack.AppendStr(dst, "ab"), len(mr.Absorbed))
		for _, pid := range mr.Absorbed {
			dst = mpack.AppendStr(dst, pid)
		}
	}
	if len(mr.Links) > 0 {
		dst = mpack.AppendArrayHeader(mpack.AppendStr(dst, "l"), len(mr.Links))
		for _, d := range mr.Links {
			dst = mpack.AppendMapHeader(dst, 6)
			dst = mpack.AppendStr(mpack.AppendStr(dst, "EventID"), d.EventID)
			dst = appendIdentifier(mpack.AppendStr(dst, "A"), d.A)
			dst = appendIdentifier(mpack.AppendStr(dst, "B"), d.B)
			dst = mpack.AppendBool(mpack.AppendStr(dst, "Linked"), d.Linked)
			dst = mpack.AppendStr(mpack.AppendStr(dst, "Reason"), d.Reason)
			dst = mpack.AppendStr(mpack.AppendStr(dst, "Type"), d.Type)
		}
	}
	return dst
}
