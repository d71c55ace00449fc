package store

import (
	"encoding/binary"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// The change list tells the snapshot manager which profiles changed since
// it last looked. It is persisted as a log: every transaction that changes
// profiles writes one key (l <seq>) listing them with their change
// versions, instead of one mark per profile, and a log key is deleted once
// none of its entries is the latest pending change of its profile (cleared
// by the snapshot manager, or superseded by a later entry that has landed).
// Stores written before the log keep their marks (d <profile id>) until
// they are cleared or superseded the same way.

// pendingChange is the latest landed change of a profile not yet cleared:
// its version and the log key that records it.
type pendingChange struct {
	version uint64
	key     string
}

// changeLog is the in-memory mirror of the persisted change list. Guarded
// by Store.pendingMu.
type changeLog struct {
	pending map[string]pendingChange // profile id → latest change
	// live counts, per log key, the entries that are still some
	// profile's pending change.
	live map[string]int
	// drop lists log keys no longer live, for the writer's next
	// transaction to delete.
	drop [][]byte
}

func newChangeLog() changeLog {
	return changeLog{pending: make(map[string]pendingChange), live: make(map[string]int)}
}

// set records that pid's latest change is version, logged under key.
func (c *changeLog) set(pid string, version uint64, key string) {
	c.release(pid)
	c.pending[pid] = pendingChange{version, key}
	c.live[key]++
}

// release forgets pid's pending change, if any, and lets its log key go
// when it was the key's last live entry.
func (c *changeLog) release(pid string) {
	old, ok := c.pending[pid]
	if !ok {
		return
	}
	delete(c.pending, pid)
	if c.live[old.key]--; c.live[old.key] <= 0 {
		delete(c.live, old.key)
		c.drop = append(c.drop, []byte(old.key))
	}
}

func changeLogKey(seq uint64) []byte { return binary.BigEndian.AppendUint64([]byte{tChangeLog}, seq) }

// appendChange appends one entry of a log value: version, id length, id.
func appendChange(b []byte, pid string, version uint64) []byte {
	b = binary.BigEndian.AppendUint64(b, version)
	b = append(b, byte(len(pid)))
	return append(b, pid...)
}

// decodeChanges calls fn for every entry of a log value.
func decodeChanges(v []byte, fn func(pid string, version uint64)) error {
	for len(v) > 0 {
		if len(v) < 9 || len(v) < 9+int(v[8]) {
			return fmt.Errorf("change log entry truncated")
		}
		n := int(v[8])
		fn(string(v[9:9+n]), binary.BigEndian.Uint64(v))
		v = v[9+n:]
	}
	return nil
}

// loadChanges rebuilds the change list from the log and the marks of
// older stores, and returns the next log sequence number.
func (s *Store) loadChanges(txn *badger.Txn) (uint64, error) {
	var next uint64 = 1
	err := eachKey(txn, []byte{tChangeLog}, func(k string, item *badger.Item) error {
		if len(k) != 9 {
			return nil
		}
		next = binary.BigEndian.Uint64([]byte(k[1:])) + 1
		if err := item.Value(func(v []byte) error {
			return decodeChanges(v, func(pid string, version uint64) { s.changes.set(pid, version, k) })
		}); err != nil {
			return fmt.Errorf("change log %x: %w", k[1:], err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// Marks of stores written before the log: older than any log entry.
	err = eachKey(txn, []byte{tDirty}, func(k string, item *badger.Item) error {
		pid := k[1:]
		if _, logged := s.changes.pending[pid]; logged {
			s.changes.drop = append(s.changes.drop, []byte(k))
			return nil
		}
		var v uint64
		if err := item.Value(func(b []byte) error {
			if len(b) == 8 {
				v = beUint64(b)
			}
			return nil
		}); err != nil {
			return err
		}
		s.changes.set(pid, v, k)
		return nil
	})
	return next, err
}

// logChanges writes, in t, the log key of the profiles t changed, with
// new versions, and deletes the log keys no longer live.
func (t *tx) logChanges() {
	s := t.s
	s.pendingMu.Lock()
	drop := s.changes.drop
	s.changes.drop = nil
	s.pendingMu.Unlock()
	for _, k := range drop {
		t.del(k)
	}
	if len(t.dirtyP) == 0 {
		return
	}
	v := make([]byte, 0, len(t.dirtyP)*40)
	for pid := range t.dirtyP {
		s.changeVersion++
		t.marked = append(t.marked, markedChange{pid, s.changeVersion})
		v = appendChange(v, pid, s.changeVersion)
	}
	t.logKey = changeLogKey(s.changeSeq)
	s.changeSeq++
	t.put(t.logKey, v)
}

// ClearChanges removes the marks of changes that have been acted on. A
// mark set again by a later commit has a newer version and stays.
//
// It does not wait for the writer: the changes leave the list at once, and
// the log keys left without live entries are deleted in the writer's next
// transaction (or right away when the writer is idle). A crash before that
// only lists them again, which repeats work the snapshot manager does
// idempotently.
func (s *Store) ClearChanges(changes []Change) error {
	s.pendingMu.Lock()
	for _, c := range changes {
		if p, ok := s.changes.pending[c.ProfileID]; ok && p.version == c.Version {
			s.changes.release(c.ProfileID)
		}
	}
	nothingToDelete := len(s.changes.drop) == 0
	s.pendingMu.Unlock()
	if nothingToDelete || !s.mu.TryLock() {
		return nil // the writer deletes them with its next commit
	}
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	s.resume()
	return s.commitSync(s.newTx())
}
