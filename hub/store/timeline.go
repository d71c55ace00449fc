package store

import (
	"cmp"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
)

// A profile's timeline is the list of its events' (time, id) entries, in
// the order of their keys: big-endian nanoseconds, then the id.
//
// Most entries are in pages: the profile record holds its open page
// (record.TL, at most Options.timelinePage entries, sorted), and a full
// page goes to Badger as one timeline key, the key of its newest entry,
// with all its entries packed in the value (appendPage). A timeline key
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
func compareTL(a, b tlEntry) int {
	if c := cmp.Compare(uint64(a.At), uint64(b.At)); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}

// appendPage appends the packed entries of a page: for each, its time
// (8 bytes) and its id (a uvarint length and the bytes).
func appendPage(b []byte, es []tlEntry) []byte {
	for _, e := range es {
		b = binary.BigEndian.AppendUint64(b, uint64(e.At))
		b = binary.AppendUvarint(b, uint64(len(e.ID)))
		b = append(b, e.ID...)
	}
	return b
}

var errBadPage = errors.New("timeline page: malformed")

// eachPageEntry calls fn for each entry packed in v, in order.
func eachPageEntry(v []byte, fn func(tlEntry)) error {
	for len(v) > 0 {
		if len(v) < 9 {
			return errBadPage
		}
		at := int64(binary.BigEndian.Uint64(v))
		n, w := binary.Uvarint(v[8:])
		if w <= 0 || n > uint64(len(v)-8-w) {
			return errBadPage
		}
		v = v[8+w:]
		fn(tlEntry{At: at, ID: string(v[:n])})
		v = v[n:]
	}
	return nil
}

// timelineEntry returns the entry of timeline key k under prefix.
func timelineEntry(prefix, k []byte) tlEntry {
	return tlEntry{At: int64(binary.BigEndian.Uint64(k[len(prefix):])), ID: string(k[len(prefix)+8:])}
}

// entryKey returns the timeline key of e in pid's timeline.
func entryKey(pid string, e tlEntry) []byte {
	k := prefixed(tTimeline, pid, 8+len(e.ID))
	k = binary.BigEndian.AppendUint64(k, uint64(e.At))
	return append(k, e.ID...)
}

// addTimeline adds e to rec's open page, and writes the page as a key of
// its own once it is full. A page written under a key of stale (the
// timeline keys a re-partition found) is taken out of it.
func (t *tx) addTimeline(rec *record, e tlEntry, stale map[string][]byte) error {
	i, _ := slices.BinarySearchFunc(rec.TL, e, compareTL)
	rec.TL = slices.Insert(rec.TL, i, e)
	t.dirtyP[rec.P.ID] = true
	if len(rec.TL) < t.s.opts.timelinePage {
		return nil
	}
	k := entryKey(rec.P.ID, rec.TL[len(rec.TL)-1])
	start := t.arenaStart()
	t.arena = appendPage(t.arena, rec.TL)
	v := t.arena[start:len(t.arena):len(t.arena)]
	rec.TL = nil
	delete(stale, string(k))
	return t.setIn(k[:timelinePrefixLen(rec.P.ID)], k, v)
}
