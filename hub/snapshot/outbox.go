package snapshot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/protocol"
)

// Keys of the manager's Badger:
//
//	E tenant/edge            → edgeState (msgpack)
//	O num(4) entry(8)        → flag(1) enqueuedAt(8, unix ns) profileID   outbox entry
//	I num(4) profileID       → entry(8)   newest outbox entry of a profile (coalescing)
//	M profileID              → num(4)…    edges that hold (or were sent) the profile
//
// num is a small number given to each edge when it becomes known.
const (
	kEdge   = 'E'
	kEntry  = 'O'
	kIndex  = 'I'
	kMember = 'M'
)

// txnWrites bounds the writes of one transaction when processing changes.
const txnWrites = 4000

var errPublish = errors.New("publish")

// edgeState is the durable state of one edge.
type edgeState struct {
	Tenant string `msgpack:"tn"`
	Edge   string `msgpack:"ed"`
	Num    uint32 `msgpack:"n"`
	// Acked is the highest batch seq the edge applied; NextSeq the seq of
	// the next new batch. Batches Acked+1 … NextSeq-1 are in Inflight.
	Acked   uint64 `msgpack:"ak"`
	NextSeq uint64 `msgpack:"ns"`
	// NextEntry is the seq of the next outbox entry; SentEntry the highest
	// entry put in a batch. Entries above SentEntry are pending.
	NextEntry uint64     `msgpack:"ne"`
	SentEntry uint64     `msgpack:"se"`
	Outbox    int64      `msgpack:"ob"`
	Inflight  []batchRec `msgpack:"if,omitempty"`
	Full      *fullSync  `msgpack:"fs,omitempty"`
	// LastFull says the last new batch came from the full sync, so that
	// full-sync pages and changes alternate.
	LastFull  bool      `msgpack:"lf,omitempty"`
	LastAckAt time.Time `msgpack:"la"`
}

// batchRec says what a sent batch covered, so that a resend has the same
// seq and covers the same profiles (content is read again).
type batchRec struct {
	Seq  uint64 `msgpack:"sq"`
	Full bool   `msgpack:"fu,omitempty"`
	// From (exclusive) and To (inclusive) are outbox entries.
	From uint64 `msgpack:"f,omitempty"`
	To   uint64 `msgpack:"t,omitempty"`
	// After (exclusive) and Last (inclusive) are profile ids of a
	// full-sync page.
	After string `msgpack:"a,omitempty"`
	Last  string `msgpack:"l,omitempty"`
}

type fullSync struct {
	Cursor    string    `msgpack:"c"`
	StartedAt time.Time `msgpack:"at"`
}

// edge is an edge's state plus what only lives in memory.
type edge struct {
	st       edgeState
	lastSend time.Time // last (re)send of the in-flight batches
	backoff  int       // consecutive ack timeouts
	oldest   time.Time // enqueue time of the oldest outbox entry
	dirty    bool
	// index mirrors the edge's index keys (profile → seq of its newest
	// outbox entry) while the manager's budget allows; nil when it does
	// not (index.go).
	index map[string]uint64
}

func (e *edge) key() string { return e.st.Tenant + "/" + e.st.Edge }

func (e *edge) lag(now time.Time) time.Duration {
	var t time.Time
	if e.st.Outbox > 0 {
		t = e.oldest
	}
	if e.st.Full != nil && (t.IsZero() || e.st.Full.StartedAt.Before(t)) {
		t = e.st.Full.StartedAt
	}
	if t.IsZero() || now.Before(t) {
		return 0
	}
	return now.Sub(t)
}

func edgeKey(key string) []byte { return append([]byte{kEdge}, key...) }

func numPrefix(k byte, num uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{k}, num)
}

func entryKey(num uint32, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(numPrefix(kEntry, num), seq)
}

func indexKey(num uint32, pid string) []byte { return append(numPrefix(kIndex, num), pid...) }

func memberKey(pid string) []byte { return append([]byte{kMember}, pid...) }

func entryValue(tomb bool, at time.Time, pid string) []byte {
	b := make([]byte, 9, 9+len(pid))
	if tomb {
		b[0] = 1
	}
	binary.BigEndian.PutUint64(b[1:], uint64(at.UnixNano()))
	return append(b, pid...)
}

func parseEntry(v []byte) (tomb bool, at time.Time, pid string, ok bool) {
	if len(v) < 9 {
		return false, time.Time{}, "", false
	}
	return v[0] == 1, time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))), string(v[9:]), true
}

func sortNums(n []uint32) { slices.Sort(n) }

func badgerOptions(dir string, log *slog.Logger) badger.Options {
	bo := badger.DefaultOptions(dir)
	bo.MemTableSize = 16 << 20
	bo.NumMemtables = 2
	bo.NumLevelZeroTables = 2
	bo.NumLevelZeroTablesStall = 4
	bo.BlockCacheSize = 8 << 20
	bo.ValueLogFileSize = 16 << 20
	bo.NumCompactors = 2
	bo.BaseTableSize = 1 << 20
	bo.BaseLevelSize = 4 << 20
	bo.Compression = options.None
	bo.DetectConflicts = false
	bo.MetricsEnabled = false
	bo.NumGoroutines = 1
	bo.SyncWrites = true
	bo.Logger = badgerLogger{log.With("component", "badger")}
	return bo
}

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}

// load reads every edge's state.
func (m *Manager) load() error {
	m.edges = map[string]*edge{}
	m.members = map[string][]uint32{}
	m.indexed = 0
	m.byNum = map[uint32]*edge{}
	m.byEdgeID = map[string][]*edge{}
	m.byRegion = map[string][]*edge{}
	m.nextNum = 1
	err := m.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{kEdge}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			e := &edge{}
			if err := it.Item().Value(func(v []byte) error { return msgpack.Unmarshal(v, &e.st) }); err != nil {
				return fmt.Errorf("edge state %s: %w", it.Item().Key()[1:], err)
			}
			m.addEdge(e)
			if err := m.findOldest(txn, e); err != nil {
				return err
			}
			if err := m.loadIndex(txn, e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load snapshot state: %w", err)
	}
	return nil
}

// reload drops the in-memory state after a failed write and reads it
// again, so memory never runs ahead of disk.
func (m *Manager) reload() {
	if err := m.load(); err != nil {
		m.log.Error("reload snapshot state", "err", err)
	}
}

func (m *Manager) addEdge(e *edge) {
	m.edges[e.key()] = e
	m.byNum[e.st.Num] = e
	m.byEdgeID[e.st.Edge] = append(m.byEdgeID[e.st.Edge], e)
	r := m.regionOf(e.st.Edge)
	m.byRegion[r] = append(m.byRegion[r], e)
	if e.st.Num >= m.nextNum {
		m.nextNum = e.st.Num + 1
	}
}

// findOldest sets e.oldest from the first outbox entry still present.
func (m *Manager) findOldest(txn *badger.Txn, e *edge) error {
	e.oldest = time.Time{}
	if e.st.Outbox == 0 {
		return nil
	}
	start := e.st.SentEntry + 1
	for _, r := range e.st.Inflight {
		if !r.Full && r.From+1 < start {
			start = r.From + 1
		}
	}
	prefix := numPrefix(kEntry, e.st.Num)
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	it := txn.NewIterator(opts)
	defer it.Close()
	it.Seek(entryKey(e.st.Num, start))
	if !it.Valid() {
		return nil
	}
	return it.Item().Value(func(v []byte) error {
		if _, at, _, ok := parseEntry(v); ok {
			e.oldest = at
		}
		return nil
	})
}

func putState(txn *badger.Txn, e *edge) error {
	b, err := msgpack.Marshal(&e.st)
	if err != nil {
		return err
	}
	e.dirty = false
	return txn.Set(edgeKey(e.key()), b)
}

func readMembers(txn *badger.Txn, pid string) ([]uint32, error) {
	item, err := txn.Get(memberKey(pid))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []uint32
	err = item.Value(func(v []byte) error {
		for i := 0; i+4 <= len(v); i += 4 {
			out = append(out, binary.BigEndian.Uint32(v[i:]))
		}
		return nil
	})
	return out, err
}

func writeMembers(txn *badger.Txn, pid string, nums []uint32) error {
	if len(nums) == 0 {
		return txn.Delete(memberKey(pid))
	}
	b := make([]byte, 0, 4*len(nums))
	for _, n := range nums {
		b = binary.BigEndian.AppendUint32(b, n)
	}
	return txn.Set(memberKey(pid), b)
}

// processChanges turns the store's change marks into outbox entries and
// clears the marks once the entries are durable. Repeating a change is
// harmless: a pending entry coalesces and membership is already current.
func (m *Manager) processChanges() (int, error) {
	changes, err := m.src.Changes(m.cfg.ChangesPerRound)
	if err != nil || len(changes) == 0 {
		return 0, err
	}
	now := m.cfg.Now()
	txn := m.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	var done []store.Change
	writes := 0
	commit := func() error {
		for _, e := range m.edges {
			if e.dirty {
				if err := putState(txn, e); err != nil {
					return err
				}
			}
		}
		if err := txn.Commit(); err != nil {
			return fmt.Errorf("commit outbox: %w", err)
		}
		txn = m.db.NewTransaction(true)
		if err := m.src.ClearChanges(done); err != nil {
			return fmt.Errorf("clear changes: %w", err)
		}
		done, writes = done[:0], 0
		return nil
	}
	fail := func(err error) (int, error) {
		m.reload()
		return 0, err
	}
	for _, c := range changes {
		var should []uint32
		if c.Profile != nil && c.MergedInto == "" && c.Profile.ID == c.ProfileID {
			should = m.targets(c.Profile)
		}
		held, err := m.readMembers(txn, c.ProfileID)
		if err != nil {
			return fail(err)
		}
		if est := 3*(len(should)+len(held)) + 1; writes > 0 && writes+est > txnWrites {
			if err := commit(); err != nil {
				return fail(err)
			}
			if held, err = m.readMembers(txn, c.ProfileID); err != nil {
				return fail(err)
			}
		}
		for _, n := range should {
			if err := m.enqueue(txn, m.byNum[n], c.ProfileID, false, now); err != nil {
				return fail(err)
			}
		}
		for _, n := range held {
			if _, in := slices.BinarySearch(should, n); in || m.byNum[n] == nil {
				continue
			}
			if err := m.enqueue(txn, m.byNum[n], c.ProfileID, true, now); err != nil {
				return fail(err)
			}
		}
		if !slices.Equal(held, should) {
			if err := m.writeMembers(txn, c.ProfileID, should); err != nil {
				return fail(err)
			}
		}
		writes += 3*(len(should)+len(held)) + 1
		done = append(done, c)
	}
	if err := commit(); err != nil {
		return fail(err)
	}
	return len(changes), nil
}

// enqueue queues profile pid for edge e. A pending (unsent) entry of the
// same profile is reused: content is read at send time, so ten changes
// while the edge is offline cost one snapshot.
func (m *Manager) enqueue(txn *badger.Txn, e *edge, pid string, tomb bool, now time.Time) error {
	if seq, ok, err := m.indexOf(txn, e, pid); err != nil {
		return err
	} else if ok && seq > e.st.SentEntry {
		return nil // pending: coalesced
	}
	seq := e.st.NextEntry
	if seq == 0 {
		seq = 1
	}
	e.st.NextEntry = seq + 1
	if e.st.Outbox == 0 {
		e.oldest = now
	}
	e.st.Outbox++
	e.dirty = true
	if err := txn.Set(entryKey(e.st.Num, seq), entryValue(tomb, now, pid)); err != nil {
		return err
	}
	if err := txn.Set(indexKey(e.st.Num, pid), binary.BigEndian.AppendUint64(nil, seq)); err != nil {
		return err
	}
	m.setIndex(e, pid, seq)
	return nil
}

// handleAck applies an edge's ack or resume message (both carry the
// highest seq the edge applied).
func (m *Manager) handleAck(a ackMsg, now time.Time) error {
	if !protocol.ValidName(a.tenant) || !protocol.ValidName(a.edge) {
		m.dropped.Inc()
		return nil
	}
	e := m.edges[a.tenant+"/"+a.edge]
	if e == nil {
		if len(m.edges) >= m.cfg.MaxEdges {
			m.dropped.Inc()
			m.log.Warn("too many edges; snapshot ack ignored", "tenant", a.tenant, "edge", a.edge, "max_edges", m.cfg.MaxEdges)
			return nil
		}
		e = &edge{st: edgeState{Tenant: a.tenant, Edge: a.edge, Num: m.nextNum, NextEntry: 1}}
		m.addEdge(e)
		m.log.Info("new edge: full sync", "tenant", a.tenant, "edge", a.edge, "seq", a.seq)
		return m.reset(e, a.seq, now)
	}
	e.st.LastAckAt = now
	e.dirty = true
	last := e.st.NextSeq - 1
	switch {
	case a.seq > last:
		m.log.Warn("edge ahead of hub: full sync", "tenant", a.tenant, "edge", a.edge, "seq", a.seq, "hub_seq", last)
		return m.reset(e, a.seq, now)
	case a.seq == 0 && e.st.Acked > 0:
		m.log.Info("edge cache wiped: full sync", "tenant", a.tenant, "edge", a.edge, "acked", e.st.Acked)
		return m.reset(e, 0, now)
	case a.seq < e.st.Acked:
		return nil // a late duplicate of an older ack
	}
	progress := a.seq > e.st.Acked
	if err := m.ackUpTo(e, a.seq); err != nil {
		return err
	}
	if progress {
		e.backoff = 0
		e.lastSend = now
	} else if len(e.st.Inflight) > 0 && (a.resume || now.Sub(e.lastSend) >= m.cfg.AckTimeout/10) {
		// A resume below what was sent (the edge reconnected, or a
		// repeated ack long after the last send): resend at once.
		e.lastSend = time.Time{}
		e.backoff = 0
	}
	return nil
}

// ackUpTo deletes the outbox entries of the batches up to seq.
func (m *Manager) ackUpTo(e *edge, seq uint64) error {
	return m.db.Update(func(txn *badger.Txn) error {
		keep := e.st.Inflight[:0]
		for _, r := range e.st.Inflight {
			if r.Seq > seq {
				keep = append(keep, r)
				continue
			}
			if r.Full {
				continue
			}
			if err := m.deleteEntries(txn, e, r.From, r.To); err != nil {
				return err
			}
		}
		e.st.Inflight = keep
		e.st.Acked = max(e.st.Acked, seq)
		if err := putState(txn, e); err != nil {
			return err
		}
		return m.findOldest(txn, e)
	})
}

func (m *Manager) deleteEntries(txn *badger.Txn, e *edge, from, to uint64) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = numPrefix(kEntry, e.st.Num)
	it := txn.NewIterator(opts)
	defer it.Close()
	var keys [][]byte
	var pids []string
	var seqs []uint64
	for it.Seek(entryKey(e.st.Num, from+1)); it.Valid(); it.Next() {
		k := it.Item().KeyCopy(nil)
		s := binary.BigEndian.Uint64(k[5:])
		if s > to {
			break
		}
		if err := it.Item().Value(func(v []byte) error {
			_, _, pid, _ := parseEntry(v)
			pids = append(pids, pid)
			return nil
		}); err != nil {
			return err
		}
		keys, seqs = append(keys, k), append(seqs, s)
	}
	it.Close()
	for i, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
		e.st.Outbox--
		cur, ok, err := m.indexOf(txn, e, pids[i])
		if err != nil {
			return err
		}
		if ok && cur == seqs[i] {
			if err := txn.Delete(indexKey(e.st.Num, pids[i])); err != nil {
				return err
			}
			m.deleteIndex(e, pids[i])
		}
	}
	e.st.Outbox = max(e.st.Outbox, 0)
	if e.index == nil && e.st.Outbox == 0 {
		m.emptyIndex(e) // no index keys left: mirrored again
	}
	return nil
}

// reset restarts edge e at seq (what it has applied) with a full sync,
// dropping its outbox: the full sync reads everything afresh.
func (m *Manager) reset(e *edge, seq uint64, now time.Time) error {
	if e.st.Outbox > 0 || len(e.st.Inflight) > 0 {
		if err := m.db.DropPrefix(numPrefix(kEntry, e.st.Num), numPrefix(kIndex, e.st.Num)); err != nil {
			return fmt.Errorf("drop outbox: %w", err)
		}
	}
	m.emptyIndex(e) // the outbox is empty now
	e.st.Acked, e.st.NextSeq = seq, seq+1
	if e.st.NextEntry == 0 {
		e.st.NextEntry = 1
	}
	e.st.SentEntry = e.st.NextEntry - 1
	e.st.Outbox, e.st.Inflight, e.st.LastFull = 0, nil, false
	e.st.Full = &fullSync{StartedAt: now}
	e.st.LastAckAt = now
	e.oldest, e.backoff, e.lastSend = time.Time{}, 0, time.Time{}
	m.fullSyncs.Inc()
	return m.db.Update(func(txn *badger.Txn) error { return putState(txn, e) })
}

// pump resends timed-out batches of e and sends new ones while its window
// allows.
func (m *Manager) pump(e *edge, now time.Time) error {
	if len(e.st.Inflight) > 0 {
		timeout := m.cfg.AckTimeout << min(e.backoff, 5)
		if e.lastSend.IsZero() || now.Sub(e.lastSend) >= timeout {
			if !e.lastSend.IsZero() {
				e.backoff++
			}
			e.lastSend = now
			for _, r := range e.st.Inflight {
				snaps, err := m.contentOf(e, r)
				if err != nil {
					return err
				}
				if err := m.publish(e, r, snaps); err != nil {
					return err
				}
			}
		}
	}
	for len(e.st.Inflight) < m.cfg.Window {
		ok, err := m.sendNext(e, now)
		if err != nil || !ok {
			return err
		}
	}
	return nil
}

// sendNext forms, records and publishes the next batch of e. It reports
// false when there is nothing to send.
func (m *Manager) sendNext(e *edge, now time.Time) (bool, error) {
	pending := e.st.NextEntry > e.st.SentEntry+1
	var (
		r     batchRec
		snaps []protocol.ProfileSnapshot
		full  []string // profiles of a full-sync page, for membership
	)
	switch {
	case e.st.Full != nil && (!pending || !e.st.LastFull):
		r = batchRec{Full: true, After: e.st.Full.Cursor}
		cursor, done := e.st.Full.Cursor, false
		for len(snaps) < m.cfg.BatchProfiles && !done {
			views, page, err := m.src.Profiles(cursor, m.cfg.BatchProfiles)
			if err != nil {
				return false, fmt.Errorf("full sync page: %w", err)
			}
			for _, v := range views {
				cursor = v.ID
				if m.holds(e, v) {
					snaps = append(snaps, m.buildCached(v))
					full = append(full, v.ID)
					if len(snaps) == m.cfg.BatchProfiles {
						break
					}
				}
			}
			done = page.Next == "" && (len(views) == 0 || cursor == views[len(views)-1].ID)
		}
		r.Last = cursor
		e.st.Full.Cursor = cursor
		e.st.LastFull = true
		if done {
			m.log.Info("full sync streamed", "tenant", e.st.Tenant, "edge", e.st.Edge, "took", now.Sub(e.st.Full.StartedAt))
			e.st.Full = nil
		}
		if len(snaps) == 0 {
			return e.st.Full != nil, m.db.Update(func(txn *badger.Txn) error { return putState(txn, e) })
		}
	case pending:
		r = batchRec{From: e.st.SentEntry}
		pids, last, err := m.entries(e, e.st.SentEntry, e.st.NextEntry-1, m.cfg.BatchProfiles)
		if err != nil {
			return false, err
		}
		r.To = last
		e.st.SentEntry = last
		e.st.LastFull = false
		if snaps, err = m.snapshotsOf(e, pids); err != nil {
			return false, err
		}
		if len(snaps) == 0 {
			return true, m.db.Update(func(txn *badger.Txn) error { return putState(txn, e) })
		}
	default:
		return false, nil
	}
	r.Seq = e.st.NextSeq
	e.st.NextSeq++
	e.st.Inflight = append(e.st.Inflight, r)
	// Record the batch (and who holds the full-sync profiles) before it
	// leaves, so a crash never loses what the edge may have applied.
	err := m.db.Update(func(txn *badger.Txn) error {
		for _, pid := range full {
			held, err := m.readMembers(txn, pid)
			if err != nil {
				return err
			}
			i, found := slices.BinarySearch(held, e.st.Num)
			if !found {
				if err := m.writeMembers(txn, pid, slices.Insert(held, i, e.st.Num)); err != nil {
					return err
				}
			}
		}
		return putState(txn, e)
	})
	if err != nil {
		return false, fmt.Errorf("record batch: %w", err)
	}
	if len(e.st.Inflight) == 1 {
		e.lastSend = now
	}
	return true, m.publish(e, r, snaps)
}

// entries returns the profile ids of the outbox entries (from, to] of e, at
// most limit, and the seq of the last one returned (to when none).
func (m *Manager) entries(e *edge, from, to uint64, limit int) ([]string, uint64, error) {
	var pids []string
	last := to
	err := m.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = numPrefix(kEntry, e.st.Num)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(entryKey(e.st.Num, from+1)); it.Valid(); it.Next() {
			s := binary.BigEndian.Uint64(it.Item().Key()[5:])
			if s > to {
				break
			}
			if limit > 0 && len(pids) == limit {
				last = s - 1
				break
			}
			if err := it.Item().Value(func(v []byte) error {
				_, _, pid, _ := parseEntry(v)
				pids = append(pids, pid)
				return nil
			}); err != nil {
				return err
			}
			last = s
		}
		return nil
	})
	return pids, last, err
}

// snapshotsOf reads the current content of pids for e: a snapshot when the
// profile exists and e should hold it, else a tombstone.
func (m *Manager) snapshotsOf(e *edge, pids []string) ([]protocol.ProfileSnapshot, error) {
	out := make([]protocol.ProfileSnapshot, 0, len(pids))
	now := m.cfg.Now()
	for _, pid := range pids {
		v, err := m.src.Profile(pid)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("read profile %s: %w", pid, err)
		}
		if err != nil || v.ID != pid || !m.holds(e, v) {
			out = append(out, protocol.ProfileSnapshot{ProfileID: pid, Tombstone: true, UpdatedAt: now})
			continue
		}
		out = append(out, m.buildCached(v))
	}
	return out, nil
}

// contentOf rebuilds the snapshots of a recorded batch for a resend.
func (m *Manager) contentOf(e *edge, r batchRec) ([]protocol.ProfileSnapshot, error) {
	if !r.Full {
		pids, _, err := m.entries(e, r.From, r.To, 0)
		if err != nil {
			return nil, err
		}
		return m.snapshotsOf(e, pids)
	}
	var out []protocol.ProfileSnapshot
	cursor := r.After
	for {
		views, page, err := m.src.Profiles(cursor, m.cfg.BatchProfiles)
		if err != nil {
			return nil, fmt.Errorf("full sync page: %w", err)
		}
		for _, v := range views {
			if v.ID > r.Last {
				return out, nil
			}
			cursor = v.ID
			if m.holds(e, v) {
				out = append(out, m.buildCached(v))
			}
		}
		if page.Next == "" || len(views) == 0 {
			return out, nil
		}
	}
}

func (m *Manager) publish(e *edge, r batchRec, snaps []protocol.ProfileSnapshot) error {
	payload, err := protocol.Marshal(&protocol.SnapshotBatch{EdgeID: e.st.Edge, Seq: r.Seq, FullSync: r.Full, Profiles: snaps})
	if err != nil {
		return fmt.Errorf("encode snapshot batch: %w", err)
	}
	if err := m.pub.Publish(protocol.SnapshotTopic(e.st.Tenant, e.st.Edge), payload, m.cfg.PublishTimeout); err != nil {
		return fmt.Errorf("%w: seq %d: %w", errPublish, r.Seq, err)
	}
	m.sent.Add(float64(len(snaps)))
	return nil
}
