package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/unico-cdp/unico/protocol"
)

// A profile's timeline is the list of its events' (time, id) entries, in
// the order of their keys: big-endian nanoseconds, then the id.
//
// Most entries are in pages: the profile record holds its open page
// (record.TL, fewer than Options.timelinePage entries, sorted and packed
// as in appendPage), and a full page goes to Badger as one timeline key,
// the key of its newest entry, with all its entries packed in the value. A timeline key
// with no value is one entry: the stores written before pages hold their
// whole timelines that way, and re-partitions keep such keys where the
// event stays with its profile.
//
// One key per page instead of one per event saves Badger a third of the
// keys the hub writes; their memtable inserts, flushes and compactions
// were the largest part of its work.

// defaultTimelinePage is the default of Options.timelinePage.
const defaultTimelinePage = 16

// tlEntry is one timeline entry.
type tlEntry struct {
	At int64  `msgpack:"a"`
	ID string `msgpack:"i"`
}

// compareTL orders entries as their keys are ordered.
func compareTL(a, b tlEntry) int { return compareEntry(a.At, a.ID, b.At, b.ID) }

// appendPage appends the packed entries of a page: for each, its time
// (8 bytes) and its id (a uvarint length and the bytes).
func appendPage(b []byte, es []tlEntry) []byte {
	for _, e := range es {
		b = appendEntry(b, e.At, e.ID)
	}
	return b
}

func appendEntry[S ~string | ~[]byte](b []byte, at int64, id S) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(at))
	b = binary.AppendUvarint(b, uint64(len(id)))
	return append(b, id...)
}

var errBadPage = errors.New("timeline page: malformed")

// walkPage calls fn with the offset, time and id of each entry packed in
// v, in order, until fn returns false.
func walkPage(v []byte, fn func(off int, at int64, id []byte) bool) error {
	for off := 0; off < len(v); {
		rest := v[off:]
		if len(rest) < 9 {
			return errBadPage
		}
		n, w := binary.Uvarint(rest[8:])
		if w <= 0 || n > uint64(len(rest)-8-w) {
			return errBadPage
		}
		if !fn(off, int64(binary.BigEndian.Uint64(rest)), rest[8+w:8+w+int(n)]) {
			return nil
		}
		off += 8 + w + int(n)
	}
	return nil
}

// eachPageEntry calls fn for each entry packed in v, in order.
func eachPageEntry(v []byte, fn func(tlEntry)) error {
	return walkPage(v, func(_ int, at int64, id []byte) bool {
		fn(tlEntry{At: at, ID: string(id)})
		return true
	})
}

// entryOf returns the timeline entry of e.
func entryOf(e *protocol.Event) tlEntry {
	return tlEntry{At: e.OccurredAt.UnixNano(), ID: e.ID}
}

// addTimeline adds e to rec's open page, and writes the page as a key of
// its own once it is full. A page written under a key of stale (the
// timeline keys a re-partition found) is taken out of it. The open page
// is never written in place: records share it with their clones.
func (t *tx) addTimeline(rec *record, e tlEntry, stale map[string][]byte) error {
	at, n := len(rec.TL), 0
	var lastAt int64
	var lastID []byte
	if err := walkPage(rec.TL, func(off int, a int64, id []byte) bool {
		if at == len(rec.TL) && compareEntry(e.At, e.ID, a, id) < 0 {
			at = off
		}
		n++
		lastAt, lastID = a, id
		return true
	}); err != nil {
		return fmt.Errorf("open timeline page of %s: %w", rec.P.ID, err)
	}
	tl := make([]byte, 0, len(rec.TL)+9+binary.MaxVarintLen64+len(e.ID))
	tl = append(tl, rec.TL[:at]...)
	tl = appendEntry(tl, e.At, e.ID)
	tl = append(tl, rec.TL[at:]...)
	t.dirtyP[rec.P.ID] = true
	if n+1 < t.s.opts.timelinePage {
		rec.TL = tl
		return nil
	}
	newest := e
	if at < len(rec.TL) {
		newest = tlEntry{At: lastAt, ID: string(lastID)}
	}
	k := timelineKey(rec.P.ID, newest)
	rec.TL = nil
	delete(stale, string(k))
	return t.setIn(k[:timelinePrefixLen(rec.P.ID)], k, tl)
}

// compareEntry is compareTL of (at, id) and (bAt, bID), for an id read
// in place from a page.
func compareEntry[S ~string | ~[]byte](at int64, id string, bAt int64, bID S) int {
	if c := cmp.Compare(uint64(at), uint64(bAt)); c != 0 {
		return c
	}
	return strings.Compare(id, string(bID))
}
