package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Each edge's index keys (profile → seq of its newest outbox entry) are
// mirrored in edge.index, loaded with the edge's state and kept with every
// write, so that enqueue and deleteEntries need not read them back from
// Badger. A failed write reloads the mirrors from disk with the rest
// (Manager.reload).

// maxIndexed bounds the entries of all edges' index mirrors together
// (about 130 bytes each). An edge whose outbox would take more (one
// offline for long with many profiles) reads its index keys from Badger
// until its outbox is empty again or the manager reloads.
var maxIndexed = 1_000_000

// loadIndex reads e's index keys into e.index, or leaves e.index nil if
// they do not fit in the budget.
func (m *Manager) loadIndex(txn *badger.Txn, e *edge) error {
	e.index = map[string]uint64{}
	prefix := numPrefix(kIndex, e.st.Num)
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		if m.indexed+len(e.index) >= maxIndexed {
			e.index = nil
			return nil
		}
		pid := string(it.Item().Key()[len(prefix):])
		if err := it.Item().Value(func(v []byte) error {
			if len(v) == 8 {
				e.index[pid] = binary.BigEndian.Uint64(v)
			}
			return nil
		}); err != nil {
			return fmt.Errorf("outbox index of %s: %w", e.key(), err)
		}
	}
	m.indexed += len(e.index)
	return nil
}

// indexOf returns the seq that pid's index key for e holds, as txn sees
// it.
func (m *Manager) indexOf(txn *badger.Txn, e *edge, pid string) (uint64, bool, error) {
	if e.index != nil {
		seq, ok := e.index[pid]
		return seq, ok, nil
	}
	item, err := txn.Get(indexKey(e.st.Num, pid))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var seq uint64
	err = item.Value(func(v []byte) error {
		if len(v) == 8 {
			seq = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return seq, err == nil, err
}

// setIndex records that pid's index key for e now holds seq. Past the
// budget, e's mirror is dropped.
func (m *Manager) setIndex(e *edge, pid string, seq uint64) {
	if e.index == nil {
		return
	}
	if _, ok := e.index[pid]; !ok {
		if m.indexed >= maxIndexed {
			m.indexed -= len(e.index)
			e.index = nil
			return
		}
		m.indexed++
	}
	e.index[pid] = seq
}

// deleteIndex records that pid's index key for e was deleted.
func (m *Manager) deleteIndex(e *edge, pid string) {
	if _, ok := e.index[pid]; ok {
		delete(e.index, pid)
		m.indexed--
	}
}

// emptyIndex records that e has no index keys (its outbox is empty): it is
// mirrored again.
func (m *Manager) emptyIndex(e *edge) {
	m.indexed -= len(e.index)
	e.index = map[string]uint64{}
}
