package store

import (
	"log/slog"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"
	"pgregory.net/rapid"

	"github.com/unico-cdp/unico/protocol"
)

// toSingleKeys rewrites the store in dir as stores were written before
// timeline pages: every entry of a record's open page becomes a timeline
// key of its own, with no value, and the record loses its page.
func toSingleKeys(t testing.TB, dir string) {
	t.Helper()
	db, err := badger.Open(badgerOptions(Options{Dir: dir, ValueThreshold: DefaultValueThreshold, Logger: slog.New(slog.DiscardHandler)}))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{tProfile}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var r record
			if err := it.Item().Value(func(v []byte) error { return msgpack.Unmarshal(v, &r) }); err != nil {
				return err
			}
			var es []tlEntry
			if err := eachPageEntry(r.TL, func(e tlEntry) { es = append(es, e) }); err != nil {
				return err
			}
			for _, e := range es {
				if err := txn.Set(timelineKey(r.P.ID, e), nil); err != nil {
					return err
				}
			}
			r.TL = nil
			v, err := encodeRecord(nil, &r)
			if err != nil {
				return err
			}
			if err := txn.Set(it.Item().KeyCopy(nil), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTimelinesWrittenBeforePages writes some events the way stores did
// before timeline pages (a key per event), the rest with pages, and checks
// that the store holds what one written with pages throughout holds: the
// same profiles and timelines, read in any page size, through links that
// move timelines and re-partitions that rewrite them.
func TestTimelinesWrittenBeforePages(t *testing.T) {
	types := []string{protocol.IDLoyaltyID, protocol.IDEmail, protocol.IDPhone, protocol.IDAnonymousID}
	rapid.Check(t, func(rt *rapid.T) {
		evs := drawOrders(rt, types, 30, 4, 2)
		k := rapid.IntRange(0, len(evs)).Draw(rt, "before")
		a := openCheck(rt, t)
		for _, e := range evs {
			commit(t, a, e)
		}

		dir := t.TempDir()
		b, err := Open(Options{Dir: dir, timelinePage: 1 << 20})
		if err != nil {
			rt.Fatal(err)
		}
		for _, e := range evs[:k] {
			commit(t, b, e)
		}
		if err := b.Close(); err != nil {
			rt.Fatal(err)
		}
		toSingleKeys(t, dir)
		b, err = Open(Options{Dir: dir, timelinePage: rapid.IntRange(1, 4).Draw(rt, "page")})
		if err != nil {
			rt.Fatal(err)
		}
		defer b.Close()
		for _, e := range evs[k:] {
			commit(t, b, e)
		}
		if diff := cmp.Diff(snap(t, a), snap(t, b)); diff != "" {
			rt.Fatalf("a store begun with a key per timeline entry differs (-pages throughout +begun before):\n%s", diff)
		}
	})
}
