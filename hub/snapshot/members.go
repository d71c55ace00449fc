package snapshot

import (
	"slices"

	"github.com/dgraph-io/badger/v4"

	"github.com/unico-cdp/unico/internal/evict"
)

// maxCachedMembers bounds Manager.members.
const maxCachedMembers = 200_000

// readMembers returns the edges holding pid (their numbers, sorted): from
// the cache, or read from txn and cached. The list must not be changed in
// place (it is clipped: an append or insert copies it).
func (m *Manager) readMembers(txn *badger.Txn, pid string) ([]uint32, error) {
	if nums, ok := m.members[pid]; ok {
		return nums, nil
	}
	nums, err := readMembers(txn, pid)
	if err != nil {
		return nil, err
	}
	return m.cacheMembers(pid, nums), nil
}

// writeMembers writes the edges holding pid in txn and caches them. If txn
// does not commit, the caller reloads the manager's state, cache included.
func (m *Manager) writeMembers(txn *badger.Txn, pid string, nums []uint32) error {
	if err := writeMembers(txn, pid, nums); err != nil {
		return err
	}
	m.cacheMembers(pid, slices.Clone(nums))
	return nil
}

func (m *Manager) cacheMembers(pid string, nums []uint32) []uint32 {
	if len(m.members) >= maxCachedMembers {
		evict.Arbitrary(m.members, maxCachedMembers*9/10)
	}
	nums = slices.Clip(nums)
	m.members[pid] = nums
	return nums
}
