package queue

// Test hooks.

// SetSyncExplicit makes the queue commit without SyncWrites and call
// db.Sync once per group.
func SetSyncExplicit(o *Options) { o.syncExplicit = true }

// PutRaw stores value under the key of seq, bypassing the encoder, to
// simulate a corrupt record. The caller must reopen the queue for the
// in-memory counters to see it.
func (q *Queue) PutRaw(seq uint64, value []byte) error {
	txn := q.db.NewTransaction(true)
	defer txn.Discard()
	if err := txn.Set(eventKey(nil, seq), value); err != nil {
		return err
	}
	m := meta{next: max(q.nextSeq, seq+1), head: min(q.head, seq)}
	if err := txn.Set(metaKey, m.encode()); err != nil {
		return err
	}
	return txn.Commit()
}

// ChannelIndexCount returns how many seqs the drop index of ch covers.
func (q *Queue) ChannelIndexCount(ch string) uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	if idx := q.chans[ch]; idx != nil {
		return idx.count()
	}
	return 0
}

// RecordSize is the stored size of an event of the given encoded size and
// channel.
func RecordSize(dataLen int, ch string) int64 {
	return storedSize(headerLen + len(ch) + dataLen)
}

// PageOut runs one page-out of q's mapped files now.
func (q *Queue) PageOut() (int64, error) { return pageOut(q.mapsDir) }

// SetValueLogFileBytes sets the size of Badger's value-log files.
func SetValueLogFileBytes(o *Options, n int64) { o.vlogFileBytes = n }

// GCRound runs one round of value-log GC now and returns how many files
// it rewrote.
func (q *Queue) GCRound() int { return q.gcRound() }
