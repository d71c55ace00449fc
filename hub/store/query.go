package store

import (
	"bytes"
	"container/heap"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/unico-cdp/unico/hub/profile"
	"github.com/unico-cdp/unico/protocol"
)

// ErrBadCursor is returned for a paging cursor this store did not make.
var ErrBadCursor = errors.New("invalid cursor")

// maxRedirects bounds how many merged-away ids a lookup follows.
const maxRedirects = 32

// View is a profile as the API shows it.
type View struct {
	profile.Profile
	// Conflicted is true when some link of this profile was refused by a
	// rule; its merge history says which.
	Conflicted bool `json:"conflicted"`
	// Derived are the read-time computed traits (RFM, average order value,
	// favourite site).
	Derived profile.Derived `json:"derived"`
	// RequestedID is set when the id asked for was merged into this one.
	RequestedID string `json:"requested_id,omitempty"`
}

func (s *Store) view(rec *record, requested string) *View {
	v := &View{Profile: rec.P, Conflicted: rec.Conflicted, Derived: profile.Derive(&rec.P, s.opts.Now(), profile.DefaultRFM)}
	if requested != rec.P.ID {
		v.RequestedID = requested
	}
	if v.Identifiers == nil {
		v.Identifiers = []protocol.Identifier{}
	}
	if v.Traits == nil {
		v.Traits = map[string]profile.Trait{}
	}
	if v.Consent == nil {
		v.Consent = map[string]profile.Consent{}
	}
	return v
}

// Profile returns the profile with id, following merges: asking for a
// profile that was merged into another returns the other.
func (s *Store) Profile(id string) (*View, error) {
	var v *View
	err := s.db.View(func(txn *badger.Txn) error {
		rec, err := s.resolveID(txn, id)
		if err != nil {
			return err
		}
		v = s.view(rec, id)
		return nil
	})
	return v, err
}

// resolveID returns the record of profile id, following redirects of
// merged-away ids. The writer's cache answers for most live profiles; its
// records are never modified, and newer than or as new as txn's view.
func (s *Store) resolveID(txn *badger.Txn, id string) (*record, error) {
	for range maxRedirects {
		if rec := s.cache.committed(id); rec != nil {
			return rec, nil
		}
		rec, err := readRecord(txn, id)
		if err == nil {
			return rec, nil
		}
		if !errors.Is(err, ErrNotFound) {
			return nil, err
		}
		item, err := txn.Get(redirectKey(id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, ErrNotFound
		}
		if err != nil {
			return nil, err
		}
		next, err := item.ValueCopy(nil)
		if err != nil {
			return nil, err
		}
		if len(next) == 0 {
			return nil, ErrNotFound
		}
		id = string(next)
	}
	return nil, fmt.Errorf("profile %s: redirect chain longer than %d: %w", id, maxRedirects, ErrNotFound)
}

// Lookup returns the profile holding identifier x.
func (s *Store) Lookup(x protocol.Identifier) (*View, error) {
	var v *View
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(nodeKey(x))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		var n node
		if err := item.Value(func(b []byte) error { return msgpack.Unmarshal(b, &n) }); err != nil {
			return err
		}
		if n.P == "" {
			return ErrNotFound
		}
		rec, err := s.resolveID(txn, n.P)
		if err != nil {
			return err
		}
		v = s.view(rec, rec.P.ID)
		return nil
	})
	return v, err
}

// IdentifierInfo says what the store knows of one identifier.
type IdentifierInfo struct {
	protocol.Identifier
	ProfileID string `json:"profile_id,omitempty"`
	Shared    bool   `json:"shared"`
	Isolated  bool   `json:"isolated"`
}

// Identifier returns what the store knows of x.
func (s *Store) Identifier(x protocol.Identifier) (IdentifierInfo, error) {
	info := IdentifierInfo{Identifier: x}
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(nodeKey(x))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		var n node
		if err := item.Value(func(b []byte) error { return msgpack.Unmarshal(b, &n) }); err != nil {
			return err
		}
		info.ProfileID, info.Shared, info.Isolated = n.P, n.Shared, n.Isolated
		return nil
	})
	return info, err
}

// Page is a cursor for paged listings: pass Next back as the cursor.
type Page struct {
	Next string `json:"next,omitempty"`
}

// Events returns up to limit events of profile id, newest first, starting
// after cursor (from a previous Page.Next; empty for the newest).
//
// A timeline key holds its own entry or a page of entries no newer than
// it (timeline.go), and the record the open page. So the keys are read
// newest first from the top, their entries gathered in a heap, and an
// entry is given out once it is newer than the next key: nothing under
// that key or an older one is newer. Entries at or after the cursor are
// passed over; they may sit in pages of newer keys.
func (s *Store) Events(id, cursor string, limit int) ([]protocol.Event, Page, error) {
	var out []protocol.Event
	var page Page
	if limit < 1 {
		return nil, page, fmt.Errorf("events of %s: limit %d, want at least 1", id, limit)
	}
	var after *tlEntry
	if cursor != "" {
		b, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || len(b) < 8 {
			return nil, page, fmt.Errorf("cursor: %w", ErrBadCursor)
		}
		after = &tlEntry{At: int64(binary.BigEndian.Uint64(b)), ID: string(b[8:])}
	}
	err := s.db.View(func(txn *badger.Txn) error {
		rec, err := s.resolveID(txn, id)
		if err != nil {
			return err
		}
		var h tlHeap
		push := func(e tlEntry) {
			if after == nil || compareTL(e, *after) < 0 {
				heap.Push(&h, e)
			}
		}
		if err := eachPageEntry(rec.TL, push); err != nil {
			return fmt.Errorf("open timeline page of %s: %w", rec.P.ID, err)
		}
		// emit gives out the entries newer than bound (all with nil).
		emit := func(bound *tlEntry) error {
			for h.Len() > 0 && len(out) < limit && (bound == nil || compareTL(h[0], *bound) > 0) {
				e := heap.Pop(&h).(tlEntry)
				item, err := txn.Get(eventKey(e.ID))
				if err != nil {
					return fmt.Errorf("timeline event %s: %w", e.ID, err)
				}
				var ev protocol.Event
				if err := item.Value(func(b []byte) error { return protocol.UnmarshalEvent(b, &ev) }); err != nil {
					return err
				}
				out = append(out, ev)
			}
			return nil
		}
		prefix := timelinePrefix(rec.P.ID)
		opts := badger.DefaultIteratorOptions
		opts.Reverse = true
		opts.Prefix = prefix
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		more := false
		for it.Seek(append(bytes.Clone(prefix), 0xff)); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			k := timelineEntry(prefix, item.Key())
			if err := emit(&k); err != nil {
				return err
			}
			if len(out) >= limit {
				more = true
				break
			}
			if item.ValueSize() == 0 {
				push(k)
				continue
			}
			if err := item.Value(func(v []byte) error { return eachPageEntry(v, push) }); err != nil {
				return fmt.Errorf("timeline of %s: %w", rec.P.ID, err)
			}
		}
		if err := emit(nil); err != nil {
			return err
		}
		if len(out) == limit && (more || h.Len() > 0) {
			page.Next = base64.RawURLEncoding.EncodeToString(lastKeyOf(out, prefix, rec.P.ID))
		}
		return nil
	})
	return out, page, err
}

// tlHeap holds timeline entries, newest on top.
type tlHeap []tlEntry

func (h tlHeap) Len() int           { return len(h) }
func (h tlHeap) Less(i, j int) bool { return compareTL(h[i], h[j]) > 0 }
func (h tlHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *tlHeap) Push(x any)        { *h = append(*h, x.(tlEntry)) }
func (h *tlHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// lastKeyOf returns the timeline cursor of the last event in out.
func lastKeyOf(out []protocol.Event, prefix []byte, pid string) []byte {
	e := out[len(out)-1]
	return timelineKey(pid, entryOf(&e))[len(prefix):]
}

// Merges returns the merge history of profile id, oldest first.
func (s *Store) Merges(id string) ([]MergeRecord, error) {
	var out []MergeRecord
	err := s.db.View(func(txn *badger.Txn) error {
		rec, err := s.resolveID(txn, id)
		if err != nil {
			return err
		}
		out, err = decodeAll[MergeRecord](txn, mergePrefix(rec.P.ID))
		return err
	})
	return out, err
}

// Profiles lists profiles in id order, up to limit, after cursor.
func (s *Store) Profiles(cursor string, limit int) ([]*View, Page, error) {
	var out []*View
	var page Page
	err := s.db.View(func(txn *badger.Txn) error {
		prefix := []byte{tProfile}
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		start := profileKey(cursor)
		for it.Seek(start); it.ValidForPrefix(prefix); it.Next() {
			id := string(it.Item().Key()[1:])
			if cursor != "" && id == cursor {
				continue
			}
			if len(out) == limit {
				page.Next = out[len(out)-1].ID
				break
			}
			rec := &record{}
			if err := it.Item().Value(func(b []byte) error { return msgpack.Unmarshal(b, rec) }); err != nil {
				return err
			}
			out = append(out, s.view(rec, rec.P.ID))
		}
		return nil
	})
	return out, page, err
}

// Edges lists the edges that have sent batches.
func (s *Store) Edges() ([]EdgeState, error) {
	var out []EdgeState
	err := s.db.View(func(txn *badger.Txn) (err error) {
		out, err = decodeAll[EdgeState](txn, []byte{tEdge})
		return err
	})
	return out, err
}

// decodeAll decodes the msgpack values of every key with prefix, in key
// order.
func decodeAll[T any](txn *badger.Txn, prefix []byte) ([]T, error) {
	var out []T
	err := eachKey(txn, prefix, func(_ string, item *badger.Item) error {
		var v T
		if err := item.Value(func(b []byte) error { return msgpack.Unmarshal(b, &v) }); err != nil {
			return err
		}
		out = append(out, v)
		return nil
	})
	return out, err
}

// errStopScan ends eachKey early without an error.
var errStopScan = errors.New("stop scan")

// eachKey calls fn for every key with prefix, until fn returns an error
// (errStopScan to stop without one).
func eachKey(txn *badger.Txn, prefix []byte, fn func(k string, item *badger.Item) error) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		if err := fn(string(it.Item().Key()), it.Item()); err != nil {
			if errors.Is(err, errStopScan) {
				return nil
			}
			return err
		}
	}
	return nil
}

// Isolate splits identifier x off its profile (an admin's unmerge): x
// forms a profile of its own and never links again, and the profiles of
// its component are recomputed from their events.
func (s *Store) Isolate(x protocol.Identifier) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.resume()
	t := s.newTx()
	n, err := t.nodeW(x)
	if err != nil {
		return err
	}
	if n.P == "" && !n.Shared {
		return ErrNotFound
	}
	n.Isolated = true
	c, err := t.gather([]protocol.Identifier{x}, nil)
	if err != nil {
		return fmt.Errorf("unmerge %s: %w", x, err)
	}
	if err := t.rewrite(c, "", "unmerge"); err != nil {
		return err
	}
	return s.commitSync(t)
}

// Now returns the store's clock reading.
func (s *Store) Now() time.Time { return s.opts.Now() }

// Change is a profile that changed since the snapshot manager last looked.
type Change struct {
	ProfileID string
	// Profile is the current profile; nil when it was deleted.
	Profile *View
	// MergedInto is set for a profile merged into another (its id now
	// redirects there); empty for a deleted one.
	MergedInto string
	// Version identifies this change; ClearChanges removes the mark only
	// while it still has this version.
	Version uint64
}

// Changes returns up to limit changed profiles, oldest id first. Each stays
// listed until ClearChanges removes it, so a crash between reading and
// acting on a change only repeats it.
func (s *Store) Changes(limit int) ([]Change, error) {
	s.pendingMu.Lock()
	out := make([]Change, 0, min(limit, len(s.changes.pending)))
	for pid, p := range s.changes.pending {
		if len(out) == limit {
			break
		}
		out = append(out, Change{ProfileID: pid, Version: p.version})
	}
	s.pendingMu.Unlock()
	slices.SortFunc(out, func(a, b Change) int { return strings.Compare(a.ProfileID, b.ProfileID) })
	err := s.db.View(func(txn *badger.Txn) error {
		for i := range out {
			c := &out[i]
			// The writer's cache holds most changed profiles decoded.
			if rec := s.cache.committed(c.ProfileID); rec != nil {
				c.Profile = s.view(rec, c.ProfileID)
				continue
			}
			rec, err := readRecord(txn, c.ProfileID)
			switch {
			case err == nil:
				c.Profile = s.view(rec, c.ProfileID)
			case errors.Is(err, ErrNotFound):
				if item, err := txn.Get(redirectKey(c.ProfileID)); err == nil {
					v, err := item.ValueCopy(nil)
					if err != nil {
						return err
					}
					c.MergedInto = string(v)
				}
			default:
				return err
			}
		}
		return nil
	})
	return out, err
}
