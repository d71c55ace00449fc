package store

import (
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vmihailenco/msgpack/v5"
	"pgregory.net/rapid"

	"github.com/unico-cdp/unico/hub/identity"
	"github.com/unico-cdp/unico/hub/profile"
	"github.com/unico-cdp/unico/protocol"
)

func genTime(t *rapid.T, label string) time.Time {
	if rapid.Bool().Draw(t, label+"-zero") {
		return time.Time{}
	}
	return time.Unix(rapid.Int64Range(-1<<35, 1<<35).Draw(t, label), rapid.Int64Range(0, 999_999_999).Draw(t, label+"-ns"))
}

func genValue(t *rapid.T, depth int) any {
	kinds := 7
	if depth > 2 {
		kinds = 5
	}
	switch rapid.IntRange(0, kinds-1).Draw(t, "kind") {
	case 0:
		return nil
	case 1:
		return rapid.String().Draw(t, "s")
	case 2:
		return rapid.Bool().Draw(t, "b")
	case 3:
		return rapid.Int64().Draw(t, "i")
	case 4:
		// Not one of appendAny's own cases: through the reflection encoder.
		return rapid.SampledFrom([]any{rapid.Float64().Draw(t, "f"), int(rapid.Int32().Draw(t, "int")), uint8(7), float32(1.5)}).Draw(t, "other")
	case 5:
		return rapid.SliceOfN(rapid.Custom(func(t *rapid.T) any { return genValue(t, depth+1) }), 0, 3).Draw(t, "list")
	default:
		return rapid.MapOfN(rapid.StringN(0, 5, -1), rapid.Custom(func(t *rapid.T) any { return genValue(t, depth+1) }), 0, 3).Draw(t, "map")
	}
}

func genCounts(t *rapid.T, label string) profile.Counts {
	if rapid.Bool().Draw(t, label+"-nil") {
		return nil
	}
	return profile.CountsOf(rapid.MapOfN(rapid.StringN(0, 40, -1), rapid.Int64(), 0, 20).Draw(t, label))
}

func genStamp(t *rapid.T) profile.Stamp {
	return profile.Stamp{At: genTime(t, "at"), EventID: rapid.StringN(0, 30, -1).Draw(t, "ev")}
}

func genRecord(t *rapid.T) *record {
	str := rapid.StringN(0, 40, -1)
	r := &record{Conflicted: rapid.Bool().Draw(t, "cf"), MergeSeq: rapid.Uint64().Draw(t, "mq")}
	p := &r.P
	p.ID = str.Draw(t, "id")
	if !rapid.Bool().Draw(t, "ids-nil") {
		p.Identifiers = rapid.SliceOfN(rapid.Custom(func(t *rapid.T) protocol.Identifier {
			return protocol.Identifier{Type: str.Draw(t, "type"), Value: str.Draw(t, "value")}
		}), 0, 20).Draw(t, "ids")
	}
	if !rapid.Bool().Draw(t, "traits-nil") {
		p.Traits = rapid.MapOfN(str, rapid.Custom(func(t *rapid.T) profile.Trait {
			return profile.Trait{Value: genValue(t, 0), Channel: str.Draw(t, "ch"), Site: str.Draw(t, "si"), Stamp: genStamp(t)}
		}), 0, 5).Draw(t, "traits")
	}
	if !rapid.Bool().Draw(t, "consent-nil") {
		p.Consent = rapid.MapOfN(str, rapid.Custom(func(t *rapid.T) profile.Consent {
			return profile.Consent{Granted: rapid.Bool().Draw(t, "g"), Channel: str.Draw(t, "ch"), Stamp: genStamp(t)}
		}), 0, 3).Draw(t, "consent")
	}
	c := &p.Computed
	c.FirstSeen, c.LastSeen, c.LastPurchaseAt = genTime(t, "fs"), genTime(t, "ls"), genTime(t, "lp")
	c.Events, c.Orders, c.Revenue = rapid.Int64().Draw(t, "events"), rapid.Int64().Draw(t, "orders"), profile.Money(rapid.Int64().Draw(t, "revenue"))
	c.SiteVisits, c.Edges, c.Channels = genCounts(t, "sv"), genCounts(t, "ed"), genCounts(t, "ch")
	if rapid.Bool().Draw(t, "lc") {
		c.LastContact = &profile.Contact{Reason: str.Draw(t, "reason"), Channel: str.Draw(t, "ch"), Stamp: genStamp(t)}
	}
	if !rapid.Bool().Draw(t, "pu-nil") {
		c.Purchases = rapid.SliceOfN(rapid.Custom(func(t *rapid.T) profile.Purchase {
			return profile.Purchase{Product: str.Draw(t, "product"), Name: str.Draw(t, "name"), At: genTime(t, "at")}
		}), 0, 60).Draw(t, "purchases")
	}
	p.CreatedAt, p.UpdatedAt = genTime(t, "ca"), genTime(t, "ua")
	if !rapid.Bool().Draw(t, "tl-nil") {
		r.TL = appendPage(nil, rapid.SliceOfN(genEntry(), 0, 40).Draw(t, "tl"))
	}
	return r
}

func genEntry() *rapid.Generator[tlEntry] {
	return rapid.Custom(func(t *rapid.T) tlEntry {
		return tlEntry{At: rapid.Int64().Draw(t, "at"), ID: rapid.StringN(0, 40, -1).Draw(t, "id")}
	})
}

// TestPageRoundTrip checks that a page's packed entries read back as
// written, and that any bytes read as a page give entries or an error.
func TestPageRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		es := rapid.SliceOfN(genEntry(), 0, 40).Draw(t, "entries")
		var got []tlEntry
		if err := eachPageEntry(appendPage(nil, es), func(e tlEntry) { got = append(got, e) }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, es) {
			t.Fatalf("read %v, wrote %v", got, es)
		}
	})
}

func FuzzPage(f *testing.F) {
	f.Add(appendPage(nil, []tlEntry{{At: 1, ID: "e1"}, {At: -5, ID: ""}}))
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, v []byte) {
		var es []tlEntry
		if err := eachPageEntry(v, func(e tlEntry) { es = append(es, e) }); err != nil {
			return
		}
		if again := appendPage(nil, es); len(again) > len(v) {
			t.Fatalf("%d entries read from %d bytes write %d", len(es), len(v), len(again))
		}
	})
}

func genNode(t *rapid.T) *node {
	n := &node{P: rapid.StringN(0, 30, -1).Draw(t, "p"), Shared: rapid.Bool().Draw(t, "s"), Isolated: rapid.Bool().Draw(t, "i")}
	if !rapid.Bool().Draw(t, "seen-nil") {
		n.Seen = rapid.MapOfN(rapid.StringN(0, 12, -1), rapid.SliceOfN(rapid.Uint64(), -1, 5), 0, 4).Draw(t, "seen")
	}
	return n
}

// TestCodecRoundTrip checks the hand-written encoders against the
// reflection encoder: the same number of bytes (the same encoding up to
// the order of map entries) and the same value when decoded.
// sameDecoded fails t unless own and refl decode into equal values.
func sameDecoded(t *rapid.T, own, refl []byte, into func() any) {
	if len(own) != len(refl) {
		t.Fatalf("hand-written encoding has %d bytes, reflection %d", len(own), len(refl))
	}
	got, want := into(), into()
	if err := msgpack.Unmarshal(own, got); err != nil {
		t.Fatalf("decode hand-written: %v", err)
	}
	if err := msgpack.Unmarshal(refl, want); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(record{}, node{}), cmpopts.IgnoreTypes(listCode[protocol.Identifier]{}, listCode[profile.Purchase]{}, limitCounts{})); diff != "" {
		t.Fatalf("decoded values differ (-reflection +hand-written):\n%s", diff)
	}
}

// checkRecordCodec fails t unless encodeRecord and the reflection encoder
// write r alike.
func checkRecordCodec(t *rapid.T, r *record) {
	own, err := encodeRecord(nil, r)
	if err != nil {
		t.Fatal(err)
	}
	refl, err := msgpack.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	sameDecoded(t, own, refl, func() any { return &record{} })
}

func TestCodecRoundTrip(t *testing.T) {
	t.Run("record", rapid.MakeCheck(func(t *rapid.T) {
		checkRecordCodec(t, genRecord(t))
	}))
	t.Run("merge", rapid.MakeCheck(func(t *rapid.T) {
		str := rapid.StringN(0, 30, -1)
		ident := rapid.Custom(func(t *rapid.T) protocol.Identifier {
			return protocol.Identifier{Type: str.Draw(t, "type"), Value: str.Draw(t, "value")}
		})
		mr := &MergeRecord{At: genTime(t, "at"), EventID: str.Draw(t, "ev"), Reason: str.Draw(t, "r")}
		if !rapid.Bool().Draw(t, "ab-nil") {
			mr.Absorbed = rapid.SliceOfN(str, 0, 5).Draw(t, "ab")
		}
		if !rapid.Bool().Draw(t, "links-nil") {
			mr.Links = rapid.SliceOfN(rapid.Custom(func(t *rapid.T) identity.Decision {
				return identity.Decision{EventID: str.Draw(t, "ev"), A: ident.Draw(t, "a"), B: ident.Draw(t, "b"),
					Linked: rapid.Bool().Draw(t, "linked"), Reason: str.Draw(t, "reason"), Type: str.Draw(t, "type")}
			}), 0, 5).Draw(t, "links")
		}
		refl, err := msgpack.Marshal(mr)
		if err != nil {
			t.Fatal(err)
		}
		sameDecoded(t, encodeMerge(nil, mr), refl, func() any { return &MergeRecord{} })
	}))
	t.Run("node", rapid.MakeCheck(func(t *rapid.T) {
		n := genNode(t)
		refl, err := msgpack.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		sameDecoded(t, encodeNode(nil, n), refl, func() any { return &node{} })
	}))
}

// TestListCodeFollowsChanges: a record encoded, then cloned and changed
// the way the writer changes profiles (identifiers added, in place when
// the list has room; purchases put ahead of the old ones, the oldest
// dropped; counters) and in other ways (elements removed or replaced
// anywhere, lists rebuilt), encodes like the reflection encoder after
// every step: no cached list encoding outlives a change of its list, and
// the encodings it reuses are those of unchanged elements.
func TestListCodeFollowsChanges(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		str := rapid.StringN(0, 12, -1)
		// Few distinct values, so that lists repeat elements.
		few := rapid.SampledFrom([]string{"a", "b", "c"})
		purchase := func(t *rapid.T) profile.Purchase {
			return profile.Purchase{Product: few.Draw(t, "product"), Name: rapid.SampledFrom([]string{"", "x"}).Draw(t, "name"),
				At: time.Unix(int64(rapid.IntRange(0, 3).Draw(t, "at")), 0).UTC()}
		}
		r := genRecord(t)
		if rapid.Bool().Draw(t, "room") {
			r.P.Identifiers = slices.Grow(r.P.Identifiers, 4)
		}
		for range rapid.IntRange(1, 12).Draw(t, "steps") {
			checkRecordCodec(t, r)
			ps := r.P.Computed.Purchases
			switch rapid.IntRange(0, 8).Draw(t, "change") {
			case 0:
				r = r.clone()
			case 1:
				r.P.AddIdentifier(protocol.Identifier{Type: str.Draw(t, "type"), Value: str.Draw(t, "value")})
			case 2:
				head := make([]profile.Purchase, rapid.IntRange(1, 3).Draw(t, "new"))
				for i := range head {
					head[i] = purchase(t)
				}
				keep := rapid.IntRange(0, len(ps)).Draw(t, "keep")
				r.P.Computed.Purchases = append(head, ps[:keep]...)
			case 3:
				r.P.Computed.Events++
			case 4:
				if len(r.P.Identifiers) > 0 {
					i := rapid.IntRange(0, len(r.P.Identifiers)-1).Draw(t, "remove")
					r.P.Identifiers = slices.Delete(slices.Clone(r.P.Identifiers), i, i+1)
				}
			case 5:
				if len(ps) > 0 {
					i := rapid.IntRange(0, len(ps)-1).Draw(t, "replace")
					ps = slices.Clone(ps)
					ps[i] = purchase(t)
					r.P.Computed.Purchases = ps
				}
			case 6:
				r.P.Computed.Purchases = rapid.SliceOfN(rapid.Custom(purchase), 0, 6).Draw(t, "purchases")
			case 7:
				if len(ps) > 1 {
					i := rapid.IntRange(0, len(ps)-1).Draw(t, "insert")
					r.P.Computed.Purchases = slices.Insert(slices.Clone(ps), i, purchase(t))
				}
			case 8:
				// Shorter, same array.
				r.P.Computed.Purchases = ps[:rapid.IntRange(0, len(ps)).Draw(t, "truncate")]
			}
		}
		checkRecordCodec(t, r)
	})
}
