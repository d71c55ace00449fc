package store

import (
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// countKeys counts the keys of table in s's Badger.
func countKeys(t *testing.T, s *Store, table byte) int {
	t.Helper()
	n := 0
	if err := s.db.View(func(txn *badger.Txn) error {
		return eachKey(txn, []byte{table}, func(string, *badger.Item) error { n++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

func changedOrders(t *testing.T, s *Store) []int64 {
	t.Helper()
	cs, err := s.Changes(100)
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for _, c := range cs {
		out = append(out, c.Profile.Computed.Orders)
	}
	slices.Sort(out)
	return out
}

// TestChangeLog: one log key per transaction; keys whose entries are all
// cleared or superseded are deleted; the list survives a restart, and the
// marks of a store written before the log are read and cleared like log
// entries.
func TestChangeLog(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	commit(t, s, order("a1", 1, 10, "s1", id("email", "a@b.co")), order("b1", 1, 10, "s1", id("email", "b@b.co")))
	commit(t, s, order("c1", 1, 10, "s1", id("email", "c@b.co")))
	if n := countKeys(t, s, tChangeLog); n != 2 {
		t.Fatalf("%d log keys after two transactions, want 2", n)
	}
	// a and b change again: the first key has no live entry left, and
	// the next transaction deletes it.
	commit(t, s, order("a2", 2, 10, "s1", id("email", "a@b.co")), order("b2", 2, 10, "s1", id("email", "b@b.co")))
	commit(t, s, order("d1", 1, 10, "s1", id("email", "d@b.co")))
	if n := countKeys(t, s, tChangeLog); n != 3 {
		t.Fatalf("%d log keys, want 3 (the superseded one deleted)", n)
	}
	// Clearing c's change leaves its key without entries.
	cs, _ := s.Changes(100)
	var clear []Change
	for _, c := range cs {
		if c.Profile.Computed.Orders == 1 && c.Profile.Identifiers[0].Value == "c@b.co" {
			clear = append(clear, c)
		}
	}
	if err := s.ClearChanges(clear); err != nil || len(clear) != 1 {
		t.Fatalf("clear %+v: %v", clear, err)
	}
	if n := countKeys(t, s, tChangeLog); n != 2 {
		t.Fatalf("%d log keys after clearing c, want 2", n)
	}
	// A mark as stores before the log wrote it, for e's profile.
	commit(t, s, order("e1", 1, 10, "s1", id("email", "e@b.co")))
	v, err := s.Lookup(id("email", "e@b.co"))
	if err != nil {
		t.Fatal(err)
	}
	s.pendingMu.Lock()
	s.changes.release(v.ID)
	s.pendingMu.Unlock()
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(dirtyKey(v.ID), beAppend(nil, 7)) }); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s, err = Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got, want := changedOrders(t, s), []int64{1, 1, 2, 2}; !slices.Equal(got, want) {
		t.Fatalf("orders of the changed profiles after restart: %v, want %v (a, b twice; d, e once)", got, want)
	}
	cs, _ = s.Changes(100)
	if err := s.ClearChanges(cs); err != nil {
		t.Fatal(err)
	}
	if got := changedOrders(t, s); len(got) != 0 {
		t.Fatalf("changes left: %v", got)
	}
	if n, d := countKeys(t, s, tChangeLog), countKeys(t, s, tDirty); n != 0 || d != 0 {
		t.Fatalf("%d log keys and %d old marks left after clearing every change", n, d)
	}
}
