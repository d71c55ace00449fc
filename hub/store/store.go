// Package store is the hub's durable profile store on Badger: it
// deduplicates events by id, resolves their identifiers into profiles with
// the rules of package identity, keeps each profile's traits, consent,
// computed traits, event timeline and merge history, and answers queries.
//
// One goroutine writes at a time (Commit, Isolate); readers use Badger
// snapshots and never block the writer. An event's effects are committed in
// the same Badger transaction as the event itself, with SyncWrites, so a
// batch acknowledged after Commit returns survives a crash, and a batch
// replayed after a crash is recognised event by event as duplicates.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/unico-cdp/unico/hub/identity"
	"github.com/unico-cdp/unico/hub/profile"
	"github.com/unico-cdp/unico/protocol"
)

// ErrNotFound is returned when a profile or identifier is unknown.
var ErrNotFound = errors.New("not found")

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("store closed")

// Options configures a Store. Zero fields take the documented defaults.
type Options struct {
	// Dir is the Badger directory. Required.
	Dir string
	// Identity rules; default identity.DefaultRules().
	Identity *identity.Rules
	// Profile rules (which events are orders, visits, contacts); default
	// profile.DefaultRules().
	Profile profile.Rules
	// MaxTxnEvents is how many events share one Badger transaction (and
	// one fsync). Default 2000.
	MaxTxnEvents int
	// CacheBytes is Badger's block cache. Default 64 MiB.
	CacheBytes int64
	// CacheNodes and CacheProfiles bound the decoded identifiers and
	// profiles the writer keeps in memory. Defaults 500,000 and 200,000.
	CacheNodes    int
	CacheProfiles int
	// MaxTxnBytes bounds the estimated size of one Badger transaction.
	// Default 4 MiB.
	MaxTxnBytes int
	Logger      *slog.Logger
	Now         func() time.Time
}

// Defaults of Options.CacheNodes and Options.CacheProfiles.
const (
	DefaultCacheNodes    = 500_000
	DefaultCacheProfiles = 200_000
)

// node is what the store knows of one identifier.
type node struct {
	// P is the profile holding the identifier; empty for shared ones.
	P        string `msgpack:"p,omitempty"`
	Shared   bool   `msgpack:"s,omitempty"`
	Isolated bool   `msgpack:"i,omitempty"`
	// Seen holds hashes of the distinct values of each limited type seen
	// with this identifier, at most SharedAfter+1 of each.
	Seen map[string][]uint64 `msgpack:"d,omitempty"`
}

// record is a stored profile.
type record struct {
	P profile.Profile `msgpack:"p"`
	// Conflicted profiles are an end of a refused link: any event touching
	// them re-partitions their component.
	Conflicted bool   `msgpack:"cf,omitempty"`
	MergeSeq   uint64 `msgpack:"mq,omitempty"`
}

// MergeRecord explains links that made a profile what it is.
type MergeRecord struct {
	At time.Time `msgpack:"at" json:"at"`
	// EventID is the event that caused the change.
	EventID string `msgpack:"ev" json:"event_id"`
	// Reason is "linked" (incremental link), "repartition" (the component
	// was recomputed after a conflict), "unmerge" (an admin split an
	// identifier off) or "component_too_large".
	Reason string `msgpack:"r" json:"reason"`
	// Absorbed lists profiles merged into this one.
	Absorbed []string `msgpack:"ab,omitempty" json:"absorbed,omitempty"`
	// Links are the identifier links made or refused, with their events.
	Links []identity.Decision `msgpack:"l,omitempty" json:"links"`
}

// EdgeState is what the hub knows of one edge.
type EdgeState struct {
	Tenant      string    `msgpack:"tn" json:"tenant"`
	Edge        string    `msgpack:"ed" json:"edge"`
	LastBatchAt time.Time `msgpack:"lb" json:"last_batch_at"`
	LastSeq     uint64    `msgpack:"ls" json:"last_seq"`
	Events      int64     `msgpack:"ev" json:"events"`
	Duplicates  int64     `msgpack:"du" json:"duplicates"`
	// Backlog is the edge's queue depth as it reported in its last batch.
	Backlog int64 `msgpack:"bl" json:"backlog"`
}

// Stats are the store's counters since open (totals persist).
type Stats struct {
	Profiles     int64 `json:"profiles"`
	Events       int64 `json:"events"`
	Duplicates   int64 `json:"duplicates_since_start"`
	Merges       int64 `json:"merges_since_start"`
	Repartitions int64 `json:"repartitions_since_start"`
	Unresolved   int64 `json:"unresolved_events_since_start"`
	TooLarge     int64 `json:"components_too_large_since_start"`
	// RefusedRepeats counts events that repeated the identifiers of an
	// earlier event whose links were refused, attached without
	// re-partitioning.
	RefusedRepeats int64 `json:"refused_link_repeats_since_start"`
	// RepartitionsBy counts re-partitions by what caused them: an
	// identifier became shared, an isolated identifier, a conflicted
	// profile, or a limit.
	RepartitionsBy map[string]int64 `json:"repartitions_by_cause_since_start"`
}

// Store is the hub's profile store.
type Store struct {
	db    *badger.DB
	opts  Options
	rules *identity.Rules
	cls   *profile.Classifier
	ids   *protocol.IDGen
	log   *slog.Logger

	mu     sync.Mutex // serialises writers
	closed bool
	cache  *cache // guarded by mu
	// changeVersion versions change marks, so that clearing a mark never
	// removes a newer one. Guarded by mu.
	changeVersion uint64

	// pending mirrors the persisted change marks (profile id → version)
	// so that Changes need not scan keys that are mostly deleted marks.
	pendingMu sync.Mutex
	pending   map[string]uint64
	// unmark lists profiles whose changes were cleared and whose persisted
	// marks the next commit deletes. Guarded by pendingMu.
	unmark []string

	profiles, events                                       atomic.Int64
	duplicates, merges, repartitions, unresolved, tooLarge atomic.Int64
	refusedRepeats                                         atomic.Int64
	repartitionsBy                                         map[string]*atomic.Int64
}

// Open opens or creates the store in opts.Dir.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("store: dir is required")
	}
	if opts.Identity == nil {
		opts.Identity = identity.DefaultRules()
	}
	if opts.MaxTxnEvents <= 0 {
		opts.MaxTxnEvents = 2000
	}
	if opts.MaxTxnBytes <= 0 {
		opts.MaxTxnBytes = 4 << 20
	}
	if opts.CacheNodes <= 0 {
		opts.CacheNodes = DefaultCacheNodes
	}
	if opts.CacheProfiles <= 0 {
		opts.CacheProfiles = DefaultCacheProfiles
	}
	if opts.CacheBytes <= 0 {
		opts.CacheBytes = 64 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	bo := badger.DefaultOptions(opts.Dir).
		WithSyncWrites(true).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumVersionsToKeep(1).
		WithBlockCacheSize(opts.CacheBytes).
		WithValueThreshold(4 << 10).
		WithLogger(badgerLogger{opts.Logger.With("component", "badger")})
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", opts.Dir, err)
	}
	s := &Store{
		changeVersion: uint64(opts.Now().UnixNano()),
		pending:       make(map[string]uint64),
		db:            db,
		opts:          opts,
		rules:         opts.Identity,
		cls:           profile.NewClassifier(opts.Profile),
		ids:           protocol.NewIDGen(opts.Now),
		log:           opts.Logger.With("component", "store"),
		cache:         newCache(opts.CacheNodes, opts.CacheProfiles),
		repartitionsBy: map[string]*atomic.Int64{
			"shared": {}, "isolated": {}, "limit": {},
		},
	}
	if err := db.View(func(txn *badger.Txn) error {
		p, err := getCounter(txn, "profiles")
		if err != nil {
			return err
		}
		e, err := getCounter(txn, "events")
		s.profiles.Store(p)
		s.events.Store(e)
		if err != nil {
			return err
		}
		// Change marks left by the last run.
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{tDirty}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(opts.Prefix); it.ValidForPrefix(opts.Prefix); it.Next() {
			var v uint64
			if err := it.Item().Value(func(b []byte) error {
				if len(b) == 8 {
					v = beUint64(b)
				}
				return nil
			}); err != nil {
				return err
			}
			s.pending[string(it.Item().Key()[1:])] = v
		}
		return nil
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// Close closes Badger. It waits for a running Commit.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}

// Rules returns the identity rules in force.
func (s *Store) Rules() *identity.Rules { return s.rules }

// Stats returns the counters.
func (s *Store) Stats() Stats {
	st := Stats{
		Profiles: s.profiles.Load(), Events: s.events.Load(),
		Duplicates: s.duplicates.Load(), Merges: s.merges.Load(),
		Repartitions: s.repartitions.Load(), Unresolved: s.unresolved.Load(),
		TooLarge: s.tooLarge.Load(), RepartitionsBy: map[string]int64{},
		RefusedRepeats: s.refusedRepeats.Load(),
	}
	for k, v := range s.repartitionsBy {
		st.RepartitionsBy[k] = v.Load()
	}
	return st
}

// Result says what Commit did with a batch.
type Result struct {
	Accepted   int
	Duplicates int
}

// Commit resolves and stores the events of b durably. When it returns nil,
// every event is committed and fsynced (or was a duplicate of one that was).
func (s *Store) Commit(ctx context.Context, b *protocol.Batch) (Result, error) {
	res, err := s.CommitMany(ctx, []*protocol.Batch{b})
	return res[0], err
}

// CommitMany commits several batches, sharing transactions and fsyncs
// between them: the hub's group commit when many edges send at once. When
// it returns nil, every event of every batch is durable.
func (s *Store) CommitMany(ctx context.Context, bs []*protocol.Batch) ([]Result, error) {
	res := make([]Result, len(bs))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return res, ErrClosed
	}
	t := s.newTx()
	defer func() { t.discard() }()
	for bi, b := range bs {
		r := &res[bi]
		for i := range b.Events {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			if t.n >= s.opts.MaxTxnEvents || t.bytes >= s.opts.MaxTxnBytes {
				if err := t.commit(); err != nil {
					return res, err
				}
				t = s.newTx()
			}
			var raw []byte
			if len(b.Raw) == len(b.Events) {
				raw = b.Raw[i]
			}
			dup, err := t.addEvent(&b.Events[i], raw)
			if err != nil {
				return res, fmt.Errorf("event %q: %w", b.Events[i].ID, err)
			}
			if dup {
				r.Duplicates++
			} else {
				r.Accepted++
			}
		}
		if b.EdgeID != "" {
			if err := t.updateEdge(b, *r); err != nil {
				return res, err
			}
		}
	}
	if err := t.commit(); err != nil {
		return res, err
	}
	for _, r := range res {
		s.duplicates.Add(int64(r.Duplicates))
	}
	return res, nil
}

type markedChange struct {
	pid     string
	version uint64
}

// tx is one Badger transaction with decoded nodes and profiles kept until
// commit.
type tx struct {
	s   *Store
	btx *badger.Txn
	// rtx is a read-only view of what is committed, for scan; overlay
	// holds this transaction's writes to the scanned tables.
	rtx      *badger.Txn
	overlay  map[string]map[string]overlayWrite // scan prefix → key → write
	nodes    map[protocol.Identifier]*node
	dirtyN   map[protocol.Identifier]bool
	profiles map[string]*record // nil value: deleted
	dirtyP   map[string]bool
	n        int // events added
	marked   []markedChange
	bytes    int // estimated bytes written
	dProf    int64
	dEvents  int64
	merges   int64
	done     bool
}

func (s *Store) newTx() *tx {
	return &tx{
		s: s, btx: s.db.NewTransaction(true),
		nodes: make(map[protocol.Identifier]*node), dirtyN: make(map[protocol.Identifier]bool),
		profiles: make(map[string]*record), dirtyP: make(map[string]bool),
		overlay: make(map[string]map[string]overlayWrite),
	}
}

func (t *tx) discard() {
	if !t.done {
		t.btx.Discard()
		t.done = true
	}
	if t.rtx != nil {
		t.rtx.Discard()
		t.rtx = nil
	}
}

func (t *tx) set(k, v []byte) error {
	if len(k) > 0 && scanned(k[0]) {
		return fmt.Errorf("internal: key of scanned table %q written without its prefix", k[0])
	}
	return t.put(k, v)
}

func (t *tx) put(k, v []byte) error {
	t.bytes += len(k) + len(v) + 32
	return t.btx.Set(k, v)
}

// setIn writes k, a key of a scanned table under prefix, so that scan of
// prefix sees it.
func (t *tx) setIn(prefix, k, v []byte) error {
	t.overlayOf(prefix)[string(k)] = overlayWrite{val: v}
	return t.put(k, v)
}

// delIn deletes k, a key of a scanned table under prefix.
func (t *tx) delIn(prefix, k []byte) error {
	t.overlayOf(prefix)[string(k)] = overlayWrite{deleted: true}
	return t.btx.Delete(k)
}

func (t *tx) overlayOf(prefix []byte) map[string]overlayWrite {
	m := t.overlay[string(prefix)]
	if m == nil {
		m = make(map[string]overlayWrite)
		t.overlay[string(prefix)] = m
	}
	return m
}

func (t *tx) commit() error {
	defer t.discard()
	if err := t.unmarkCleared(); err != nil {
		return err
	}
	for x := range t.dirtyN {
		b, err := msgpack.Marshal(t.nodes[x])
		if err != nil {
			return fmt.Errorf("encode node: %w", err)
		}
		if err := t.set(nodeKey(x), b); err != nil {
			return fmt.Errorf("write node: %w", err)
		}
	}
	for pid := range t.dirtyP {
		// Mark the change for the snapshot manager, in the same commit.
		t.s.changeVersion++
		t.marked = append(t.marked, markedChange{pid, t.s.changeVersion})
		if err := t.btx.Set(dirtyKey(pid), beAppend(nil, t.s.changeVersion)); err != nil {
			return fmt.Errorf("mark profile changed: %w", err)
		}
		rec := t.profiles[pid]
		if rec == nil {
			if err := t.btx.Delete(profileKey(pid)); err != nil {
				return fmt.Errorf("delete profile: %w", err)
			}
			continue
		}
		b, err := msgpack.Marshal(rec)
		if err != nil {
			return fmt.Errorf("encode profile: %w", err)
		}
		if err := t.set(profileKey(pid), b); err != nil {
			return fmt.Errorf("write profile: %w", err)
		}
	}
	s := t.s
	if t.dProf != 0 {
		if err := addCounter(t.btx, "profiles", t.dProf); err != nil {
			return err
		}
	}
	if t.dEvents != 0 {
		if err := addCounter(t.btx, "events", t.dEvents); err != nil {
			return err
		}
	}
	err := t.btx.Commit()
	// The read view of scans goes with the commit: CommitMany drops a
	// committed tx for a new one without discarding it, and a read
	// transaction left open pins Badger's discard watermark, after which
	// compaction keeps every old version for good.
	if t.rtx != nil {
		t.rtx.Discard()
		t.rtx = nil
	}
	if err != nil {
		s.cache.reset()
		return fmt.Errorf("commit: %w", err)
	}
	t.done = true
	s.cache.install(t)
	s.pendingMu.Lock()
	for _, m := range t.marked {
		s.pending[m.pid] = m.version
	}
	s.pendingMu.Unlock()
	s.profiles.Add(t.dProf)
	s.events.Add(t.dEvents)
	s.merges.Add(t.merges)
	return nil
}

func (t *tx) node(x protocol.Identifier) (*node, error) {
	if n, ok := t.nodes[x]; ok {
		return n, nil
	}
	if n, ok := t.s.cache.nodes[x]; ok {
		n = n.clone()
		t.nodes[x] = n
		return n, nil
	}
	n := &node{}
	item, err := t.btx.Get(nodeKey(x))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("read node: %w", err)
	default:
		if err := item.Value(func(v []byte) error { return msgpack.Unmarshal(v, n) }); err != nil {
			return nil, fmt.Errorf("decode node %s: %w", x, err)
		}
	}
	t.nodes[x] = n
	return n, nil
}

func (t *tx) profile(pid string) (*record, error) {
	if r, ok := t.profiles[pid]; ok {
		if r == nil {
			return nil, ErrNotFound
		}
		return r, nil
	}
	if r, ok := t.s.cache.profiles[pid]; ok {
		r = r.clone()
		t.profiles[pid] = r
		return r, nil
	}
	r, err := readRecord(t.btx, pid)
	if err != nil {
		return nil, err
	}
	t.profiles[pid] = r
	return r, nil
}

func readRecord(txn *badger.Txn, pid string) (*record, error) {
	item, err := txn.Get(profileKey(pid))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	r := &record{}
	if err := item.Value(func(v []byte) error { return msgpack.Unmarshal(v, r) }); err != nil {
		return nil, fmt.Errorf("decode profile %s: %w", pid, err)
	}
	return r, nil
}

func (t *tx) newProfile(at time.Time) *record {
	r := &record{P: profile.Profile{ID: "p_" + t.s.ids.New(), CreatedAt: at}}
	t.profiles[r.P.ID] = r
	t.dirtyP[r.P.ID] = true
	t.dProf++
	return r
}

func (t *tx) deleteProfile(pid, into string) error {
	t.profiles[pid] = nil
	t.dirtyP[pid] = true
	t.dProf--
	if into != "" {
		if err := t.set(redirectKey(pid), []byte(into)); err != nil {
			return err
		}
	}
	return nil
}

func (t *tx) loadEvent(id string) (*protocol.Event, error) {
	item, err := t.btx.Get(eventKey(id))
	if err != nil {
		return nil, fmt.Errorf("read event %s: %w", id, err)
	}
	e := &protocol.Event{}
	if err := item.Value(func(v []byte) error { return protocol.UnmarshalEvent(v, e) }); err != nil {
		return nil, err
	}
	return e, nil
}

// addEvent stores one event and resolves it. It reports whether the event
// was a duplicate.
//
// raw, when not nil, is e as encoded by the sender (MarshalEvent's form),
// stored as it is.
func (t *tx) addEvent(e *protocol.Event, raw []byte) (bool, error) {
	if e.ID == "" {
		return false, errors.New("event without id")
	}
	if _, err := t.btx.Get(eventKey(e.ID)); err == nil {
		return true, nil
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return false, fmt.Errorf("dedupe: %w", err)
	}
	p, err := t.plan(e)
	if err != nil {
		return false, err
	}
	if raw == nil {
		if raw, err = protocol.MarshalEvent(e); err != nil {
			return false, err
		}
	}
	if err := t.set(eventKey(e.ID), raw); err != nil {
		return false, fmt.Errorf("write event: %w", err)
	}
	t.n++
	t.dEvents++
	return false, t.resolve(e, p)
}

func hashValue(v string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(v))
	return h.Sum64()
}

// plan is what resolving an event will do, decided before anything is
// written.
type plan struct {
	ids    []protocol.Identifier // linkable, strongest first
	active []protocol.Identifier // ids that are not shared (after this event)
	pids   []string              // profiles of active ids
	// reason is why the component must be re-partitioned ("shared",
	// "isolated", "limit"), or empty for an incremental link.
	reason string
	// seen are the new co-occurrence hashes per identifier and type.
	seen map[protocol.Identifier]map[string][]uint64
	// shared are the identifiers this event makes shared.
	shared []protocol.Identifier
}

// plan classifies e without changing any state.
func (t *tx) plan(e *protocol.Event) (*plan, error) {
	r := t.s.rules
	p := &plan{ids: r.Identifiers(e)}
	for _, x := range p.ids {
		n, err := t.node(x)
		if err != nil {
			return nil, err
		}
		th := r.Rule(x.Type).SharedAfter
		if n.Shared || th == 0 {
			continue
		}
		for _, y := range p.ids {
			if y == x || !r.Limited(y.Type) {
				continue
			}
			h := hashValue(y.Value)
			if slices.Contains(n.Seen[y.Type], h) || slices.Contains(p.seen[x][y.Type], h) {
				continue
			}
			if p.seen == nil {
				p.seen = make(map[protocol.Identifier]map[string][]uint64)
			}
			if p.seen[x] == nil {
				p.seen[x] = make(map[string][]uint64)
			}
			p.seen[x][y.Type] = append(p.seen[x][y.Type], h)
			if len(n.Seen[y.Type])+len(p.seen[x][y.Type]) > th && !slices.Contains(p.shared, x) {
				p.shared = append(p.shared, x)
			}
		}
	}
	if len(p.shared) > 0 {
		p.reason = "shared"
	}
	for _, x := range p.ids {
		n := t.nodes[x]
		if n.Shared || slices.Contains(p.shared, x) {
			continue
		}
		p.active = append(p.active, x)
		if n.Isolated && p.reason == "" {
			p.reason = "isolated"
		}
		if n.P != "" && !slices.Contains(p.pids, n.P) {
			p.pids = append(p.pids, n.P)
		}
	}
	if p.reason != "" {
		return p, nil
	}
	counts := make(map[string]int)
	seen := make(map[protocol.Identifier]bool)
	for _, pid := range p.pids {
		rec, err := t.profile(pid)
		if err != nil {
			return nil, fmt.Errorf("profile %s of a node: %w", pid, err)
		}
		for _, x := range rec.P.Identifiers {
			seen[x] = true
			if r.Limited(x.Type) {
				counts[x.Type]++
			}
		}
	}
	for _, x := range p.active {
		if !seen[x] && r.Limited(x.Type) {
			counts[x.Type]++
		}
	}
	for typ, c := range counts {
		if c > r.Rule(typ).MaxPerProfile {
			p.reason = "limit"
		}
	}
	return p, nil
}

// resolve carries out plan p for e: it records co-occurrences, then links
// incrementally or re-partitions e's component.
func (t *tx) resolve(e *protocol.Event, p *plan) error {
	r := t.s.rules
	for x, byType := range p.seen {
		n := t.nodes[x]
		if slices.Contains(p.shared, x) {
			n.Shared, n.Seen = true, nil
			t.s.log.Info("identifier is shared, it no longer links", "identifier", x.String(), "event", e.ID)
		} else {
			if n.Seen == nil {
				n.Seen = make(map[string][]uint64)
			}
			for typ, hs := range byType {
				n.Seen[typ] = append(n.Seen[typ], hs...)
			}
		}
		t.dirtyN[x] = true
	}
	if p.reason == "" {
		if len(p.active) == 0 {
			t.s.unresolved.Add(1)
			return nil
		}
		return t.link(e, p.active, p.pids)
	}
	if p.reason == identity.ReasonLimit && len(p.seen) == 0 {
		ok, err := t.repeatsRefusal(e, p.active)
		if err != nil {
			return err
		}
		if ok {
			t.s.refusedRepeats.Add(1)
			return t.attachRepeat(e, p.active)
		}
	}
	t.s.repartitionsBy[p.reason].Add(1)
	err := t.repartition(e, p.ids)
	if err == nil && p.reason == identity.ReasonLimit {
		return t.noteSignature(e, p.active)
	}
	if errors.Is(err, errTooLarge) {
		t.s.tooLarge.Add(1)
		t.s.log.Warn("identity component too large to re-partition; event attached without new links", "event", e.ID, "limit", r.MaxComponentEvents)
		return t.attachOnly(e, p.active)
	}
	return err
}

// link is the incremental path, taken when the union of the event's
// profiles and new identifiers breaks no limit and no identifier became
// shared. Then the canonical partition of all events is the old one with
// those profiles merged: in Partition's edge order every set stays inside
// a group of that result, links accepted before are still accepted (their
// union is inside a valid group) and links refused before are still
// refused (limits only grow with the sets). So no re-partition is needed,
// even for a profile that has refused links.
func (t *tx) link(e *protocol.Event, active []protocol.Identifier, pids []string) error {
	at := t.s.opts.Now().UTC()
	var surv *record
	var others []*record
	for _, pid := range pids {
		rec, err := t.profile(pid)
		if err != nil {
			return err
		}
		others = append(others, rec)
	}
	slices.SortFunc(others, func(a, b *record) int {
		if c := a.P.CreatedAt.Compare(b.P.CreatedAt); c != 0 {
			return c
		}
		return compareStrings(a.P.ID, b.P.ID)
	})
	if len(others) == 0 {
		surv = t.newProfile(at)
	} else {
		surv, others = others[0], others[1:]
	}
	mr := MergeRecord{At: at, EventID: e.ID, Reason: identity.ReasonLinked}
	anchor := active[0]
	before := make(map[protocol.Identifier]bool, len(surv.P.Identifiers))
	for _, x := range surv.P.Identifiers {
		before[x] = true
	}
	for _, o := range others {
		if err := t.absorb(surv, o); err != nil {
			return err
		}
		mr.Absorbed = append(mr.Absorbed, o.P.ID)
	}
	for _, x := range active {
		n := t.nodes[x]
		if n.P != surv.P.ID {
			n.P = surv.P.ID
			t.dirtyN[x] = true
		}
		surv.P.AddIdentifier(x)
		if x != anchor && (!before[x] || !before[anchor]) {
			mr.Links = append(mr.Links, identity.Decision{EventID: e.ID, A: anchor, B: x, Linked: true, Reason: identity.ReasonLinked})
		}
	}
	if len(mr.Absorbed) > 0 || len(mr.Links) > 0 {
		if err := t.addMerge(surv, mr); err != nil {
			return err
		}
	}
	if len(others) > 0 {
		t.merges += int64(len(others))
	}
	return t.own(surv, e)
}

// own folds e into rec and writes its timeline entry.
func (t *tx) own(rec *record, e *protocol.Event) error {
	t.s.cls.Apply(&rec.P, e)
	t.dirtyP[rec.P.ID] = true
	return t.setIn(timelinePrefix(rec.P.ID), timelineKey(rec.P.ID, e.OccurredAt, e.ID), nil)
}

func (t *tx) addMerge(rec *record, mr MergeRecord) error {
	b, err := msgpack.Marshal(&mr)
	if err != nil {
		return fmt.Errorf("encode merge: %w", err)
	}
	rec.MergeSeq++
	t.dirtyP[rec.P.ID] = true
	return t.setIn(mergePrefix(rec.P.ID), mergeKey(rec.P.ID, rec.MergeSeq), b)
}

// absorb merges profile o into surv: identifiers, summaries, timeline and
// merge history move; o's id redirects to surv.
func (t *tx) absorb(surv, o *record) error {
	profile.Merge(&surv.P, &o.P)
	for _, x := range o.P.Identifiers {
		n, err := t.node(x)
		if err != nil {
			return err
		}
		n.P = surv.P.ID
		t.dirtyN[x] = true
	}
	if err := t.movePrefix(timelinePrefix(o.P.ID), timelinePrefix(surv.P.ID), func(k []byte) []byte {
		return append(timelinePrefix(surv.P.ID), k[len(o.P.ID)+2:]...)
	}); err != nil {
		return err
	}
	var old []MergeRecord
	if err := t.scan(mergePrefix(o.P.ID), func(k, v []byte) error {
		var mr MergeRecord
		if err := msgpack.Unmarshal(v, &mr); err != nil {
			return err
		}
		old = append(old, mr)
		return t.delIn(mergePrefix(o.P.ID), k)
	}); err != nil {
		return err
	}
	for _, mr := range old {
		if err := t.addMerge(surv, mr); err != nil {
			return err
		}
	}
	return t.deleteProfile(o.P.ID, surv.P.ID)
}

// scan calls fn for every key with prefix, in order, as the transaction
// sees it (its own writes included). Keys and values are copies.
//
// The committed keys come from a read-only view and the transaction's own
// writes from its overlay: an iterator of the update transaction would sort
// all of its pending writes (thousands in a group commit) on every scan.
// Only the prefixes that writes name (setIn, delIn) may be scanned:
// timelinePrefix, mergePrefix and crossPrefix.
func (t *tx) scan(prefix []byte, fn func(k, v []byte) error) error {
	if len(prefix) == 0 || !scanned(prefix[0]) {
		return fmt.Errorf("scan of table %q: not kept in the overlay", prefix[:min(1, len(prefix))])
	}
	if t.rtx == nil {
		t.rtx = t.s.db.NewTransaction(false)
	}
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	it := t.rtx.NewIterator(opts)
	type kv struct{ k, v []byte }
	var found []kv
	own := t.overlay[string(prefix)]
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		if _, ok := own[string(item.Key())]; ok {
			continue // written or deleted in this transaction: see below
		}
		v, err := item.ValueCopy(nil)
		if err != nil {
			it.Close()
			return err
		}
		found = append(found, kv{item.KeyCopy(nil), v})
	}
	it.Close()
	merged := len(found)
	for k, w := range own {
		if !w.deleted {
			found = append(found, kv{[]byte(k), slices.Clone(w.val)})
		}
	}
	if merged != len(found) {
		slices.SortFunc(found, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	}
	for _, e := range found {
		if err := fn(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// scanned reports whether keys of table are kept in a transaction's
// overlay so that scan can see them.
func scanned(table byte) bool {
	return table == tTimeline || table == tMerge || table == tCross
}

// overlayWrite is a write of this transaction to a scanned table.
type overlayWrite struct {
	val     []byte
	deleted bool
}

func (t *tx) movePrefix(prefix, to []byte, rename func(k []byte) []byte) error {
	return t.scan(prefix, func(k, v []byte) error {
		if err := t.delIn(prefix, k); err != nil {
			return err
		}
		return t.setIn(to, rename(k), v)
	})
}

func (t *tx) updateEdge(b *protocol.Batch, res Result) error {
	k := edgeKey(b.Tenant, b.EdgeID)
	st := EdgeState{Tenant: b.Tenant, Edge: b.EdgeID}
	item, err := t.btx.Get(k)
	if err == nil {
		if err := item.Value(func(v []byte) error { return msgpack.Unmarshal(v, &st) }); err != nil {
			return fmt.Errorf("decode edge state: %w", err)
		}
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return err
	}
	st.LastBatchAt = t.s.opts.Now().UTC()
	if b.LastSeq > st.LastSeq {
		st.LastSeq = b.LastSeq
	}
	st.Events += int64(res.Accepted)
	st.Duplicates += int64(res.Duplicates)
	st.Backlog = b.Backlog
	v, err := msgpack.Marshal(&st)
	if err != nil {
		return err
	}
	return t.set(k, v)
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func getCounter(txn *badger.Txn, name string) (int64, error) {
	item, err := txn.Get(counterKey(name))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var n int64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("counter %s: bad length %d", name, len(v))
		}
		n = int64(beUint64(v))
		return nil
	})
	return n, err
}

func addCounter(txn *badger.Txn, name string, d int64) error {
	n, err := getCounter(txn, name)
	if err != nil {
		return err
	}
	return txn.Set(counterKey(name), beAppend(nil, uint64(n+d)))
}

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}
