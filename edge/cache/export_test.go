package cache

import (
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/unico-cdp/unico/protocol"
)

// dumpForTest returns every stored profile by id and every index entry.
func dumpForTest(t testing.TB, c *Cache) (map[string]*protocol.ProfileSnapshot, map[protocol.Identifier]string) {
	t.Helper()
	profiles := map[string]*protocol.ProfileSnapshot{}
	index := map[protocol.Identifier]string{}
	err := c.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			switch k[0] {
			case 'p':
				var r record
				if err := decodeRecord(v, &r); err != nil {
					t.Errorf("profile %q: %v", k[1:], err)
					continue
				}
				profiles[string(k[1:])] = r.P
			case 'i':
				n := int(k[1])
				index[protocol.Identifier{Type: string(k[2 : 2+n]), Value: string(k[2+n:])}] = string(v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return profiles, index
}
