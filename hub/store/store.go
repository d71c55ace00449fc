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
//
// Commits are pipelined: while Badger writes and fsyncs one transaction,
// a second waits its turn and the writer resolves a third on top of both,
// reading their writes from memory. Badger has one transaction at a time;
// the next is handed to it (from the commit callback) only once the last
// has landed, and is dropped if that one failed, as is everything the
// writer resolved on top of it. CommitAsync reports durability through a
// callback, so that intake can resolve the next group of batches before
// acknowledging the last.
package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/unico-cdp/unico/hub/identity"
	"github.com/unico-cdp/unico/hub/profile"
	"github.com/unico-cdp/unico/internal/evict"
	"github.com/unico-cdp/unico/internal/vloggc"
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
	// CacheBytes is Badger's block cache. Default 0: none. Tables are
	// written uncompressed and read in place from their mapped files,
	// which costs the writer less than a cache of decompressed blocks
	// (and its bookkeeping) on every lookup that misses the memtables.
	CacheBytes int64
	// CacheNodes and CacheProfiles bound the decoded identifiers and
	// profiles the writer keeps in memory. Defaults 500,000 and 200,000.
	CacheNodes    int
	CacheProfiles int
	// CacheEvents bounds the decoded events kept from re-partitions: a
	// component that needed one tends to need another, and then its
	// events are not read and decoded again. Default 100,000.
	CacheEvents int
	// MaxTxnBytes bounds the estimated size of one Badger transaction.
	// Default 4 MiB.
	MaxTxnBytes int
	// FilterEvents bounds the ids of stored events kept in an in-memory
	// Bloom filter (about 2 bytes each at most), which spares the
	// deduplication of a new event its Badger read. Past the bound every
	// event is looked up. Default 20,000,000; negative: no filter.
	FilterEvents int
	// ValueThreshold is the size from which a value (an event, a profile
	// record) is written to Badger's value log, once, with only a pointer
	// in the tree; smaller values live in the tree, where memtable flushes
	// and compactions rewrite them. Default 256 bytes: most events and
	// profile records go to the value log, which saves the hub much of
	// its compaction work at the cost of disk (overwritten profile
	// records stay in the value log until GC). At most 1 MiB.
	ValueThreshold int
	// GCInterval is how often value-log GC runs: every rewrite of a
	// profile in the value log leaves the old version there as garbage
	// until GC rewrites the file. Default 1 minute.
	GCInterval time.Duration
	Logger     *slog.Logger
	Now        func() time.Time

	// timelinePage is how many timeline entries make a page (tests; 0:
	// defaultTimelinePage).
	timelinePage int
	// valueLogFileSize, when set, replaces the value-log file size
	// (tests: GC never rewrites the newest file).
	valueLogFileSize int64
	// commitFault, when set, is asked before each transaction is handed
	// to Badger, on a goroutine of its own; an error fails the commit as
	// a write error would, with nothing written (tests).
	commitFault func() error
}

// Defaults of Options.CacheNodes, Options.CacheProfiles,
// Options.GCInterval and Options.FilterEvents.
const (
	DefaultCacheNodes    = 500_000
	DefaultCacheProfiles = 200_000
	DefaultGCInterval    = time.Minute
	DefaultFilterEvents  = 20_000_000
	// DefaultValueThreshold is the default of Options.ValueThreshold,
	// MaxValueThreshold its largest value.
	DefaultValueThreshold = 256
	MaxValueThreshold     = 1 << 20
	// valueLogFileSize is the size of the value-log files: GC rewrites
	// whole files, never the newest one.
	valueLogFileSize = 256 << 20
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
	// TL is the open page of the profile's timeline, packed
	// (timeline.go).
	TL []byte `msgpack:"tl,omitempty"`
	// ids and purchases cache the encodings of P.Identifiers and
	// P.Computed.Purchases (listCode).
	ids       listCode[protocol.Identifier]
	purchases listCode[profile.Purchase]
	// lim caches the counts of P.Identifiers' limited types.
	lim limitCounts
	// sharedTC is set while P.Traits and P.Consent are the maps of the
	// record this one was cloned from (ownTraitsConsent).
	sharedTC bool
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
	db   *badger.DB
	opts Options
	// onWrite, set by benchmarks before the first write, sees each
	// transaction's writes as they are handed to Badger.
	onWrite func([]kvWrite)
	rules   *identity.Rules
	cls     *profile.Classifier
	ids     *protocol.IDGen
	log     *slog.Logger

	mu     sync.Mutex // serialises writers
	closed bool
	// gcStop stops gcLoop, which closes gcDone when it returns.
	gcStop, gcDone chan struct{}
	cache          *cache
	// changeVersion versions change marks, so that clearing a mark never
	// removes a newer one. Guarded by mu.
	changeVersion uint64
	// rview is the writer's read view of Badger. pending are the
	// transactions submitted since before it was taken, oldest first: the
	// writer reads their writes over it. Both guarded by mu.
	rview   *badger.Txn
	pending []*tx
	// spare are new transactions with the tables of landed ones (recycle).
	spare []*tx
	// committing is the transaction Badger is writing, queued those
	// waiting for it to land (oldest first), failed the error of a
	// transaction that failed since the writer last settled: everything
	// submitted after it fails too. fresh is a read view taken when a
	// transaction landed, for the writer to take up. Guarded by pipeMu.
	pipeMu     sync.Mutex
	committing *tx
	queued     []*tx
	failed     error
	fresh      *landedView
	// wProfiles and wEvents are the totals including the pending
	// transactions, written as the persisted counters. Guarded by mu.
	wProfiles, wEvents int64
	// txSizes are those of the last transaction submitted. Guarded by mu.
	txSizes txSizes
	// events holds events decoded for re-partitions (Options.CacheEvents).
	// Events never change once stored. Guarded by mu.
	eventCache map[string]*protocol.Event
	// filter holds the ids of stored events (filter.go). Guarded by mu.
	filter *eventFilter

	// changes mirrors the persisted change list (changes.go).
	pendingMu sync.Mutex
	changes   changeLog
	// changeSeq numbers the next change log key. Guarded by mu.
	changeSeq uint64

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
	if opts.timelinePage <= 0 {
		opts.timelinePage = defaultTimelinePage
	}
	if opts.CacheEvents <= 0 {
		opts.CacheEvents = 100_000
	}
	if opts.CacheBytes < 0 {
		opts.CacheBytes = 0
	}
	if opts.FilterEvents == 0 {
		opts.FilterEvents = DefaultFilterEvents
	}
	switch {
	case opts.ValueThreshold == 0:
		opts.ValueThreshold = DefaultValueThreshold
	case opts.ValueThreshold < 0 || opts.ValueThreshold > MaxValueThreshold:
		return nil, fmt.Errorf("store: ValueThreshold %d out of range 1..%d", opts.ValueThreshold, MaxValueThreshold)
	}
	if opts.GCInterval < 0 {
		return nil, fmt.Errorf("store: GCInterval %s is negative", opts.GCInterval)
	}
	if opts.GCInterval == 0 {
		opts.GCInterval = DefaultGCInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db, err := badger.Open(badgerOptions(opts))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", opts.Dir, err)
	}
	s := &Store{
		changeVersion: uint64(opts.Now().UnixNano()),
		changes:       newChangeLog(),
		gcStop:        make(chan struct{}),
		gcDone:        make(chan struct{}),
		eventCache:    make(map[string]*protocol.Event),
		filter:        newEventFilter(max(opts.FilterEvents, 0)),
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
		s.wProfiles, s.wEvents = p, e
		if err != nil {
			return err
		}
		// Changes left by the last run.
		if s.changeSeq, err = s.loadChanges(txn); err != nil {
			return err
		}
		s.filter.load(txn)
		return s.loadNodes(txn)
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	s.rview = db.NewTransaction(false)
	go s.gcLoop()
	return s, nil
}

// gcLoop runs value-log GC every GCInterval until Close.
func (s *Store) gcLoop() {
	defer close(s.gcDone)
	vloggc.Loop(s.db, s.opts.GCInterval, s.gcStop, s.log)
}

// gcRound runs one round of value-log GC (vloggc.Round) until Close.
func (s *Store) gcRound() int { return vloggc.Round(s.db, s.gcStop, s.log) }

// loadNodes fills the node cache at open, and marks it complete when
// every stored node fits.
func (s *Store) loadNodes(txn *badger.Txn) error {
	c := s.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodesComplete = true
	return eachKey(txn, []byte{tNode}, func(k string, item *badger.Item) error {
		if len(c.nodes) >= c.maxNodes*9/10 {
			c.nodesComplete = false
			return errStopScan
		}
		x, ok := parseNodeKey(k)
		if !ok {
			return nil
		}
		n := &node{}
		if err := item.Value(func(v []byte) error { return msgpack.Unmarshal(v, n) }); err != nil {
			return fmt.Errorf("decode node %s: %w", x, err)
		}
		c.nodes[x] = n
		return nil
	})
}

// badgerOptions returns the options of the store's Badger database;
// opts has its defaults.
func badgerOptions(opts Options) badger.Options {
	bo := badger.DefaultOptions(opts.Dir).
		WithSyncWrites(true).
		WithDetectConflicts(false).
		WithMetricsEnabled(false).
		WithNumVersionsToKeep(1).
		WithBlockCacheSize(opts.CacheBytes).
		WithCompression(options.None).
		WithValueThreshold(int64(opts.ValueThreshold)).
		WithValueLogFileSize(valueLogFileSize).
		WithLogger(badgerLogger{opts.Logger.With("component", "badger")})
	if opts.valueLogFileSize > 0 {
		bo = bo.WithValueLogFileSize(opts.valueLogFileSize)
	}
	return bo
}

// Close closes Badger. It waits for a running Commit and for the
// transactions submitted before it, whose failure it returns too (their
// committers have been told already).
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	close(s.gcStop)
	<-s.gcDone
	err := s.settle(0)
	s.rview.Discard()
	return errors.Join(err, s.db.Close())
}

// Rules returns the identity rules in force.
func (s *Store) Rules() *identity.Rules { return s.rules }

// ReadsProperties reports whether resolving an event of this type, name
// and channel reads its properties (profile.Classifier.ReadsProperties).
// Nothing the store does with an event reads its context.
func (s *Store) ReadsProperties(typ, name, channel string) bool {
	return s.cls.ReadsProperties(typ, name, channel)
}

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
	type outcome struct {
		res []Result
		err error
	}
	ch := make(chan outcome, 1)
	s.CommitAsync(ctx, bs, func(res []Result, err error) { ch <- outcome{res, err} })
	o := <-ch
	return o.res, o.err
}

// CommitAsync resolves the events of bs and hands their writes to Badger.
// It returns once they are resolved; done is called exactly once, when
// every event of every batch is durable (err nil) or the commit failed.
// done may run on another goroutine, after CommitAsync has returned, and
// must not call the store's writing methods.
//
// A later CommitAsync resolves on top of this one while Badger writes it,
// and is not handed to Badger unless this one landed.
func (s *Store) CommitAsync(ctx context.Context, bs []*protocol.Batch, done func([]Result, error)) {
	res := make([]Result, len(bs))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		done(res, ErrClosed)
		return
	}
	s.resume()
	t, err := s.resolveBatches(ctx, bs, res)
	if err == nil {
		t.then = func(err error) {
			if err == nil {
				for _, r := range res {
					s.duplicates.Add(int64(r.Duplicates))
				}
			}
			done(res, err)
		}
		err = s.submit(t)
		if err == nil {
			return
		}
	}
	done(res, err)
}

// resolveBatches adds the events of bs to transactions, submitting every
// full one, and returns the last, not yet submitted.
func (s *Store) resolveBatches(ctx context.Context, bs []*protocol.Batch, res []Result) (*tx, error) {
	t := s.newTx()
	for bi, b := range bs {
		r := &res[bi]
		for i := range b.Events {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if t.n >= s.opts.MaxTxnEvents || t.bytes >= s.opts.MaxTxnBytes {
				if err := s.submit(t); err != nil {
					return nil, err
				}
				t = s.newTx()
			}
			var raw []byte
			if len(b.Raw) == len(b.Events) {
				raw = b.Raw[i]
			}
			dup, err := t.addEvent(&b.Events[i], raw)
			if err != nil {
				return nil, fmt.Errorf("event %q: %w", b.Events[i].ID, err)
			}
			if dup {
				r.Duplicates++
			} else {
				r.Accepted++
			}
		}
		if b.EdgeID != "" {
			if err := t.updateEdge(b, *r); err != nil {
				return nil, err
			}
		}
	}
	return t, nil
}

// maxAhead is how many submitted transactions may be waiting to land
// while the writer resolves the next: one in Badger, the others queued.
const maxAhead = 2

// submit hands t to the commit pipeline: Badger writes it once the
// transactions submitted before it have landed, and t.then learns the
// outcome. It first waits until fewer than maxAhead transactions are
// waiting to land. If one of them failed, t (resolved on top of it) is
// dropped and the error returned. Callers hold mu.
func (s *Store) submit(t *tx) error {
	if err := t.finish(); err != nil {
		return err
	}
	if err := s.settle(maxAhead - 1); err != nil {
		return err
	}
	t.landed = make(chan struct{})
	s.pending = append(s.pending, t)
	s.txSizes = txSizes{len(t.kvs), len(t.nodes), len(t.dirtyN), len(t.profiles), len(t.dirtyP), len(t.overlay)}
	s.wProfiles += t.dProf
	s.wEvents += t.dEvents
	s.pipeMu.Lock()
	failed := s.failed
	start := failed == nil && s.committing == nil
	switch {
	case start:
		s.committing = t
	case failed == nil:
		s.queued = append(s.queued, t)
	}
	s.pipeMu.Unlock()
	switch {
	case failed != nil:
		s.land(t, failed)
	case start:
		s.commit(t)
	}
	return nil
}

// commit hands t's writes to Badger, which calls land when they are
// durable or failed.
func (s *Store) commit(t *tx) {
	if f := s.opts.commitFault; f != nil {
		go func() {
			if err := f(); err != nil {
				s.land(t, err)
				return
			}
			s.write(t)
		}()
		return
	}
	s.write(t)
}

// write hands t's writes to Badger.
func (s *Store) write(t *tx) {
	if s.onWrite != nil {
		s.onWrite(t.kvs)
	}
	wtx := s.db.NewTransaction(true)
	for _, w := range t.kvs {
		var err error
		if w.del {
			err = wtx.Delete(w.k)
		} else {
			err = wtx.Set(w.k, w.v)
		}
		if err != nil {
			wtx.Discard()
			s.land(t, err)
			return
		}
	}
	wtx.CommitWith(func(err error) { s.land(t, err) })
}

// land runs when Badger has committed t (or failed to, or t was dropped
// after an earlier failure): it publishes t's state to the cache, the
// change list and the counters, calls t.then, and hands the next queued
// transaction to Badger, or drops them all if t failed.
func (s *Store) land(t *tx, err error) {
	var view *landedView
	if err == nil {
		// A view taken while t still is the transaction committing, so
		// that no commit is under way, does not wait for one (Badger's
		// read timestamp waits for every commit under way).
		view = &landedView{txn: s.db.NewTransaction(false), upTo: t}
	}
	s.pipeMu.Lock()
	var next *tx
	var dropped []*tx
	if s.committing == t {
		s.committing = nil
		switch {
		case err != nil:
			dropped, s.queued = s.queued, nil
		case len(s.queued) > 0:
			next = s.queued[0]
			s.queued = slices.Delete(s.queued, 0, 1)
			s.committing = next
		}
	}
	if err != nil && s.failed == nil {
		s.failed = err
	}
	s.pipeMu.Unlock()
	if err != nil {
		t.err = fmt.Errorf("commit: %w", err)
		s.cache.reset()
	} else {
		s.cache.install(t)
		s.pendingMu.Lock()
		for _, m := range t.marked {
			s.changes.set(m.pid, m.version, string(t.logKey))
		}
		s.pendingMu.Unlock()
		s.profiles.Add(t.dProf)
		s.events.Add(t.dEvents)
		s.merges.Add(t.merges)
		// Only now: the writer, taking up the view, stops reading t's
		// nodes and profiles from pending and reads them from the cache.
		s.publishView(view)
	}
	close(t.landed)
	// Badger gets the next one before t's committer hears of t; the
	// committers of dropped ones hear after it.
	if next != nil {
		s.commit(next)
	}
	if t.then != nil {
		t.then(t.err)
	}
	for _, d := range dropped {
		s.land(d, fmt.Errorf("%w: %w", errDropped, err))
	}
}

// errDropped marks a transaction that was not written because one it was
// resolved on top of failed.
var errDropped = errors.New("dropped after an earlier commit failed")

// landedView is a read view that sees every transaction up to upTo.
type landedView struct {
	txn  *badger.Txn
	upTo *tx
}

// publishView leaves v, a view that sees a transaction that has landed
// and whose state is in the cache, for the writer in place of an older one
// it did not take up.
func (s *Store) publishView(v *landedView) {
	s.pipeMu.Lock()
	old := s.fresh
	s.fresh = v
	s.pipeMu.Unlock()
	if old != nil {
		old.txn.Discard()
	}
}

// settle waits until at most ahead submitted transactions have not
// landed, and takes up the newest read view: the transactions it sees
// leave pending. If one failed, it waits for all of them, starts the
// writer again from what is durable, and returns the error. Callers hold
// mu.
func (s *Store) settle(ahead int) error {
	if n := len(s.pending) - ahead; n > 0 {
		<-s.pending[n-1].landed
	}
	if err := s.landedFailure(); err != nil {
		return s.restart(err)
	}
	s.pipeMu.Lock()
	v := s.fresh
	s.fresh = nil
	s.pipeMu.Unlock()
	if v == nil {
		return nil
	}
	i := slices.Index(s.pending, v.upTo)
	if i < 0 {
		// Taken before a restart: older than the writer's view.
		v.txn.Discard()
		return nil
	}
	s.rview.Discard()
	s.rview = v.txn
	for _, t := range s.pending[:i+1] {
		s.recycle(t)
	}
	clear(s.pending[:i+1])
	s.pending = append(s.pending[:0], s.pending[i+1:]...)
	return nil
}

// maxSpare bounds the transactions whose tables recycle keeps, and
// maxSpareKVs the writes of one: a transaction that grew its tables far
// beyond a group commit's (a large re-partition) leaves them to the
// collector.
const (
	maxSpare    = maxAhead
	maxSpareKVs = 64 << 10
)

// recycle keeps the tables and arena of t, which has landed and left
// pending, for a later transaction (newTx): once the writer has taken up
// a view that sees t, nothing reads them any more. Badger was done with
// t's keys and values when it called back (the skiplist, the write-ahead
// log and the value log hold copies), the cache holds t's nodes and
// profiles, not its tables, and later transactions read t's writes only
// while it is pending. A new transaction with t's tables is a new tx
// value: t itself may still be the upTo of a view. Callers hold mu.
func (s *Store) recycle(t *tx) {
	if len(s.spare) >= maxSpare || len(t.kvs) > maxSpareKVs || t.err != nil {
		return
	}
	clear(t.kvs)
	clear(t.index)
	clear(t.overlay)
	clear(t.nodes)
	clear(t.dirtyN)
	clear(t.profiles)
	clear(t.dirtyP)
	free := append(t.free, t.chunks...)
	clear(t.chunks)
	if len(free) > maxSpareChunks {
		clear(free[maxSpareChunks:])
		free = free[:maxSpareChunks]
	}
	s.spare = append(s.spare, &tx{
		s:        s,
		kvs:      t.kvs[:0],
		index:    t.index,
		overlay:  t.overlay,
		nodes:    t.nodes,
		dirtyN:   t.dirtyN,
		profiles: t.profiles,
		dirtyP:   t.dirtyP,
		chunks:   t.chunks[:0],
		free:     free,
		scratch:  plan{active: t.scratch.active[:0], pids: t.scratch.pids[:0]},
		counts:   t.counts[:0],
	})
	// t's tables are the new transaction's now.
	t.kvs, t.index, t.overlay, t.nodes, t.dirtyN, t.profiles, t.dirtyP = nil, nil, nil, nil, nil, nil, nil
	t.arena, t.chunks, t.free = nil, nil, nil
}

// maxSpareChunks bounds the arena arrays a spare transaction keeps (4 MiB).
const maxSpareChunks = 64

// restart waits for every submitted transaction to land or be dropped
// after the failure err, and starts the writer again from what is
// durable. It returns err. Callers hold mu.
func (s *Store) restart(err error) error {
	for _, t := range s.pending {
		<-t.landed
	}
	clear(s.pending)
	s.pending = s.pending[:0]
	s.pipeMu.Lock()
	s.failed = nil
	v := s.fresh
	s.fresh = nil
	s.pipeMu.Unlock()
	if v != nil {
		v.txn.Discard()
	}
	s.rview.Discard()
	s.rview = s.db.NewTransaction(false)
	s.wProfiles, s.wEvents = s.profiles.Load(), s.events.Load()
	s.cache.reset()
	return err
}

// resume starts the writer again from what is durable if a pending
// transaction failed: what it resolves next would otherwise be dropped
// for a failure that its committers have heard of already. Only a new
// writing call may resume: a call whose own transaction failed must fail.
// Callers hold mu.
func (s *Store) resume() {
	if err := s.landedFailure(); err != nil {
		_ = s.restart(err)
	}
}

// landedFailure returns the error of a pending transaction that failed,
// if one has. They land in order: the search stops at the first one that
// has not. Callers hold mu.
func (s *Store) landedFailure() error {
	for _, t := range s.pending {
		if !t.hasLanded() {
			return nil
		}
		if t.err != nil {
			return t.err
		}
	}
	return nil
}

func (t *tx) hasLanded() bool {
	select {
	case <-t.landed:
		return true
	default:
		return false
	}
}

// commitSync submits t and waits until it has landed. Callers hold mu.
func (s *Store) commitSync(t *tx) error {
	if err := s.submit(t); err != nil {
		return err
	}
	<-t.landed
	return t.err
}

type markedChange struct {
	pid     string
	version uint64
}

// tx is one transaction: its writes, kept in memory until submit hands
// them to Badger, and the nodes and profiles it decoded and changed.
type tx struct {
	s *Store
	// kvs are the writes in order; index maps a key to its last write
	// (keys of scanned tables are not indexed: see appendWrite).
	kvs   []kvWrite
	index map[string]int
	// overlay holds the writes to the scanned tables, by scan prefix.
	overlay map[string]map[string]overlayWrite // scan prefix → key → write
	nodes   map[protocol.Identifier]*node
	dirtyN  map[protocol.Identifier]bool
	// loadedN are the nodes read from Badger: with dirtyN, the nodes the
	// cache does not hold yet (the others were read from it, or from a
	// pending transaction that installs them).
	loadedN  []protocol.Identifier
	profiles map[string]*record // nil value: deleted
	dirtyP   map[string]bool
	// created are the profiles this transaction created: Badger holds
	// no keys of theirs yet.
	created map[string]bool
	n       int // events added
	marked  []markedChange
	logKey  []byte // the change log key of marked
	bytes   int    // estimated bytes written
	// arena holds encoded nodes and profiles (see arenaStart); chunks
	// are its arrays, free those it may use next (recycle).
	arena        []byte
	chunks, free [][]byte
	dProf        int64
	dEvents      int64
	merges       int64
	// scratch and counts are plan's, reused from event to event.
	scratch plan
	counts  []typeCount

	// landed is closed once Badger committed the transaction or failed
	// to (err); then runs after that.
	landed chan struct{}
	err    error
	then   func(error)
}

// kvWrite is one write of a transaction.
type kvWrite struct {
	k, v []byte
	del  bool
}

// newTx starts a transaction with its tables sized like the last one's,
// so that a group commit does not grow them step by step.
func (s *Store) newTx() *tx {
	if n := len(s.spare); n > 0 {
		t := s.spare[n-1]
		s.spare = s.spare[:n-1]
		return t
	}
	h := &s.txSizes
	return &tx{
		s:     s,
		kvs:   make([]kvWrite, 0, h.kvs),
		index: make(map[string]int, h.kvs),
		nodes: make(map[protocol.Identifier]*node, h.nodes), dirtyN: make(map[protocol.Identifier]bool, h.dirtyN),
		profiles: make(map[string]*record, h.profiles), dirtyP: make(map[string]bool, h.dirtyP),
		overlay: make(map[string]map[string]overlayWrite, h.overlay),
	}
}

// txSizes are the sizes of a transaction's tables.
type txSizes struct{ kvs, nodes, dirtyN, profiles, dirtyP, overlay int }

func (t *tx) set(k, v []byte) error {
	if len(k) > 0 && scanned(k[0]) {
		return fmt.Errorf("internal: key of scanned table %q written without its prefix", k[0])
	}
	t.put(k, v)
	return nil
}

func (t *tx) put(k, v []byte) {
	t.bytes += len(k) + len(v) + 32
	t.write(kvWrite{k: k, v: v})
}

func (t *tx) del(k []byte) {
	t.bytes += len(k) + 32
	t.write(kvWrite{k: k, del: true})
}

func (t *tx) write(w kvWrite) {
	if i, ok := t.index[string(w.k)]; ok {
		t.kvs[i] = w
		return
	}
	t.index[string(w.k)] = len(t.kvs)
	t.kvs = append(t.kvs, w)
}

// get calls fn with the value of k as the transaction sees it: its own
// writes, then those of the pending transactions, newest first, then
// Badger. It reports whether k exists. fn must not keep v.
func (t *tx) get(k []byte, fn func(v []byte) error) (bool, error) {
	if i, ok := t.index[string(k)]; ok {
		return t.kvs[i].found(fn)
	}
	for _, in := range slices.Backward(t.s.pending) {
		if i, ok := in.index[string(k)]; ok {
			return in.kvs[i].found(fn)
		}
	}
	item, err := t.s.rview.Get(k)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if fn == nil {
		return true, nil
	}
	return true, item.Value(fn)
}

func (w *kvWrite) found(fn func(v []byte) error) (bool, error) {
	if w.del {
		return false, nil
	}
	if fn == nil {
		return true, nil
	}
	return true, fn(w.v)
}

// setIn writes k, a key of a scanned table under prefix, so that scan of
// prefix sees it.
func (t *tx) setIn(prefix, k, v []byte) error {
	t.overlayOf(prefix)[string(k)] = overlayWrite{val: v}
	t.bytes += len(k) + len(v) + 32
	t.appendWrite(kvWrite{k: k, v: v})
	return nil
}

// delIn deletes k, a key of a scanned table under prefix.
func (t *tx) delIn(prefix, k []byte) error {
	t.overlayOf(prefix)[string(k)] = overlayWrite{deleted: true}
	t.bytes += len(k) + 32
	t.appendWrite(kvWrite{k: k, del: true})
	return nil
}

// appendWrite adds a write of a scanned table. Its keys are read through
// the overlay, never by get, so they are not indexed: a key written twice
// is in kvs twice, and Badger keeps the last write of a key in a
// transaction.
func (t *tx) appendWrite(w kvWrite) {
	t.kvs = append(t.kvs, w)
}

func (t *tx) overlayOf(prefix []byte) map[string]overlayWrite {
	m := t.overlay[string(prefix)]
	if m == nil {
		m = make(map[string]overlayWrite)
		t.overlay[string(prefix)] = m
	}
	return m
}

// arenaStart returns where the next value encoded into t.arena starts.
// Values share the arena's array; a full arena is left to its values and
// a new one begun, so that growing never copies more than a chunk.
func (t *tx) arenaStart() int {
	if cap(t.arena)-len(t.arena) < 4<<10 {
		if n := len(t.free); n > 0 {
			t.arena, t.free = t.free[n-1][:0], t.free[:n-1]
		} else {
			t.arena = make([]byte, 0, arenaChunk)
		}
		t.chunks = append(t.chunks, t.arena)
	}
	return len(t.arena)
}

// arenaChunk is the size of the arrays of a transaction's arena.
const arenaChunk = 64 << 10

// finish writes what the transaction changed: nodes, profiles, change
// marks and counters.
func (t *tx) finish() error {
	t.logChanges()
	for x := range t.dirtyN {
		start := t.arenaStart()
		t.arena = encodeNode(t.arena, t.nodes[x])
		if err := t.set(nodeKey(x), t.arena[start:len(t.arena):len(t.arena)]); err != nil {
			return fmt.Errorf("write node: %w", err)
		}
	}
	for pid := range t.dirtyP {
		rec := t.profiles[pid]
		if rec == nil {
			t.del(profileKey(pid))
			continue
		}
		start := t.arenaStart()
		b, err := encodeRecord(t.arena, rec)
		if err != nil {
			return fmt.Errorf("encode profile %s: %w", pid, err)
		}
		t.arena = b
		if err := t.set(profileKey(pid), b[start:len(b):len(b)]); err != nil {
			return fmt.Errorf("write profile: %w", err)
		}
	}
	// The counters are written whole from the writer's totals: reading
	// them back would have to look through the pending transactions.
	if t.dProf != 0 {
		t.put(counterKey("profiles"), beAppend(nil, uint64(t.s.wProfiles+t.dProf)))
	}
	if t.dEvents != 0 {
		t.put(counterKey("events"), beAppend(nil, uint64(t.s.wEvents+t.dEvents)))
	}
	return nil
}

// node returns x's node for this transaction to read: its own, a pending
// one's, the cached, or the stored one. The node may be shared with the
// cache and other transactions: nodeW returns it to change.
func (t *tx) node(x protocol.Identifier) (*node, error) {
	if n, ok := t.nodes[x]; ok {
		return n, nil
	}
	for _, in := range slices.Backward(t.s.pending) {
		if n, ok := in.nodes[x]; ok {
			t.nodes[x] = n
			return n, nil
		}
	}
	cached, complete := t.s.cache.node(x)
	if cached != nil {
		t.nodes[x] = cached
		return cached, nil
	}
	n := &node{}
	if !complete {
		found, err := t.get(nodeKey(x), func(v []byte) error { return msgpack.Unmarshal(v, n) })
		if err != nil {
			return nil, fmt.Errorf("read node %s: %w", x, err)
		}
		if found {
			t.loadedN = append(t.loadedN, x)
		}
	}
	t.nodes[x] = n
	return n, nil
}

// nodeW returns x's node for this transaction to change, and marks it to
// be written. Most events change none of their identifiers' nodes, so
// node shares them and nodeW copies a node on its first change: a node of
// this transaction's own is one it marked (dirtyN). A pointer that node
// returned before must not be read after nodeW: it may be the older copy.
func (t *tx) nodeW(x protocol.Identifier) (*node, error) {
	n, err := t.node(x)
	if err != nil {
		return nil, err
	}
	if !t.dirtyN[x] {
		n = n.clone()
		t.nodes[x] = n
		t.dirtyN[x] = true
	}
	return n, nil
}

// profile returns profile pid for this transaction to change, like node.
func (t *tx) profile(pid string) (*record, error) {
	r, ok := t.profiles[pid]
	if !ok {
		for _, in := range slices.Backward(t.s.pending) {
			if r, ok = in.profiles[pid]; ok {
				if r != nil {
					r = r.clone()
				}
				break
			}
		}
	}
	if !ok {
		if r = t.s.cache.committed(pid); r != nil {
			r, ok = r.clone(), true
		}
	}
	if !ok {
		r = &record{}
		found, err := t.get(profileKey(pid), func(v []byte) error { return msgpack.Unmarshal(v, r) })
		if err != nil {
			return nil, fmt.Errorf("read profile %s: %w", pid, err)
		}
		if !found {
			r = nil
		}
	}
	t.profiles[pid] = r
	if r == nil {
		return nil, ErrNotFound
	}
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
	if t.created == nil {
		t.created = make(map[string]bool)
	}
	t.created[r.P.ID] = true
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

// loadEvent returns stored event id, decoded for resolving it again: its
// context and the properties resolution does not read (ReadsProperties)
// are left out. It must not be modified.
func (t *tx) loadEvent(id string) (*protocol.Event, error) {
	if e, ok := t.s.eventCache[id]; ok {
		return e, nil
	}
	e := &protocol.Event{}
	found, err := t.get(eventKey(id), func(v []byte) error { return protocol.UnmarshalEventLean(v, e, t.s.cls.ReadsProperties) })
	if err == nil && !found {
		err = ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read event %s: %w", id, err)
	}
	c := t.s.eventCache
	if len(c) >= t.s.opts.CacheEvents {
		evict.Arbitrary(c, len(c)-len(c)/10)
	}
	c[id] = e
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
	if t.s.filter.mayContain(e.ID) {
		if dup, err := t.get(eventKey(e.ID), nil); err != nil {
			return false, fmt.Errorf("dedupe: %w", err)
		} else if dup {
			return true, nil
		}
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
	t.s.filter.add(e.ID)
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

// plan classifies e without changing any state. The plan is t's scratch,
// valid until the next call.
func (t *tx) plan(e *protocol.Event) (*plan, error) {
	r := t.s.rules
	p := &t.scratch
	*p = plan{ids: r.Identifiers(e), active: p.active[:0], pids: p.pids[:0]}
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
	// Limited identifiers of the union: those of the profiles (long lists
	// of one type, mostly anonymous ids, so the rule is looked up once per
	// run of a type), and the active ones that are in none of them (an
	// active identifier with a profile is in it: its node names one of
	// p.pids).
	// A handful of limited types: a list beats a map.
	counts := t.counts[:0]
	lastType, lastLimited := "", false
	count := func(typ string) {
		if typ != lastType {
			lastType, lastLimited = typ, r.Limited(typ)
		}
		if lastLimited {
			counts = addCount(counts, typ, 1)
		}
	}
	for _, pid := range p.pids {
		rec, err := t.profile(pid)
		if err != nil {
			return nil, fmt.Errorf("profile %s of a node: %w", pid, err)
		}
		for _, c := range rec.limitedCounts(r) {
			counts = addCount(counts, c.typ, c.n)
		}
	}
	for _, x := range p.active {
		if t.nodes[x].P == "" {
			count(x.Type)
		}
	}
	for _, c := range counts {
		if c.n > r.Rule(c.typ).MaxPerProfile {
			p.reason = "limit"
		}
	}
	t.counts = counts
	return p, nil
}

type typeCount struct {
	typ string
	n   int
}

func addCount(counts []typeCount, typ string, n int) []typeCount {
	for i := range counts {
		if counts[i].typ == typ {
			counts[i].n += n
			return counts
		}
	}
	return append(counts, typeCount{typ, n})
}

// limitCounts caches how many identifiers of each limited type a record's
// list holds, for the list at ids with n elements. A list is never
// changed in place without a change of its length (record.clone).
type limitCounts struct {
	ids    *protocol.Identifier
	n      int
	counts []typeCount
}

// limitedCounts returns how many identifiers of each type with a limit
// under rules r holds, leaving out the types it holds none of. The list
// is sorted by type: the end of each type's run is found by binary
// search, and the counts are kept until the list changes (a frequent
// buyer's hundreds of anonymous ids change rarely).
func (r *record) limitedCounts(rules *identity.Rules) []typeCount {
	ids := r.P.Identifiers
	if r.lim.counts != nil && r.lim.ids == unsafe.SliceData(ids) && r.lim.n == len(ids) {
		return r.lim.counts
	}
	counts := make([]typeCount, 0, 4)
	for i := 0; i < len(ids); {
		typ := ids[i].Type
		n := typeRun(ids[i:], typ)
		if rules.Limited(typ) {
			counts = append(counts, typeCount{typ, n})
		}
		i += n
	}
	r.lim = limitCounts{unsafe.SliceData(ids), len(ids), counts}
	return counts
}

// typeRun returns how many identifiers of ids, sorted by type
// (profile.CompareIdentifiers), are of type typ.
func typeRun(ids []protocol.Identifier, typ string) int {
	lo, _ := slices.BinarySearchFunc(ids, typ, func(x protocol.Identifier, t string) int { return strings.Compare(x.Type, t) })
	hi, _ := slices.BinarySearchFunc(ids[lo:], typ, func(x protocol.Identifier, t string) int {
		if x.Type == t {
			return -1
		}
		return 1
	})
	return hi
}

// resolve carries out plan p for e: it records co-occurrences, then links
// incrementally or re-partitions e's component.
func (t *tx) resolve(e *protocol.Event, p *plan) error {
	r := t.s.rules
	for x, byType := range p.seen {
		n, err := t.nodeW(x)
		if err != nil {
			return err
		}
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
	}
	if p.reason == "" {
		if len(p.active) == 0 {
			t.s.unresolved.Add(1)
			return nil
		}
		return t.link(e, p.active, p.pids)
	}
	var sig, fresh []protocol.Identifier
	repeatable := false
	if p.reason == identity.ReasonLimit {
		sig, fresh, repeatable = t.signatureOf(p)
	}
	if repeatable {
		ok, err := t.repeatsRefusal(e, sig)
		if err != nil {
			return err
		}
		if ok {
			t.s.refusedRepeats.Add(1)
			return t.attachRepeat(e, sig, fresh)
		}
	}
	t.s.repartitionsBy[p.reason].Add(1)
	err := t.repartition(e, p.ids)
	if err == nil && p.reason == identity.ReasonLimit {
		return t.noteSignature(e, sig)
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
	// Which active identifiers surv held before: those whose node names
	// it (a profile's identifiers are exactly the nodes naming it).
	before := make([]bool, len(active))
	for i, x := range active {
		before[i] = t.nodes[x].P == surv.P.ID
	}
	for _, o := range others {
		if err := t.absorb(surv, o); err != nil {
			return err
		}
		mr.Absorbed = append(mr.Absorbed, o.P.ID)
	}
	for i, x := range active {
		// A node that names surv (before, or since an absorb) is in its
		// list: only the others are added, which spares a search of a
		// long list on every event.
		if t.nodes[x].P != surv.P.ID {
			n, err := t.nodeW(x)
			if err != nil {
				return err
			}
			n.P = surv.P.ID
			surv.P.AddIdentifier(x)
		}
		if i > 0 && (!before[i] || !before[0]) {
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

// own folds e into rec and adds its timeline entry.
func (t *tx) own(rec *record, e *protocol.Event) error {
	t.fold(rec, e)
	return t.addTimeline(rec, entryOf(e), nil)
}

// fold applies e to rec's traits and summaries.
func (t *tx) fold(rec *record, e *protocol.Event) {
	if len(e.Traits) > 0 || len(e.Consent) > 0 {
		rec.ownTraitsConsent()
	}
	t.s.cls.Apply(&rec.P, e)
	t.dirtyP[rec.P.ID] = true
}

func (t *tx) addMerge(rec *record, mr MergeRecord) error {
	start := t.arenaStart()
	t.arena = encodeMerge(t.arena, &mr)
	b := t.arena[start:len(t.arena):len(t.arena)]
	rec.MergeSeq++
	t.dirtyP[rec.P.ID] = true
	return t.setIn(mergePrefix(rec.P.ID), mergeKey(rec.P.ID, rec.MergeSeq), b)
}

// absorb merges profile o into surv: identifiers, summaries, timeline and
// merge history move; o's id redirects to surv.
func (t *tx) absorb(surv, o *record) error {
	surv.ownTraitsConsent()
	profile.Merge(&surv.P, &o.P)
	for _, x := range o.P.Identifiers {
		n, err := t.nodeW(x)
		if err != nil {
			return err
		}
		n.P = surv.P.ID
	}
	if err := t.movePrefix(timelinePrefix(o.P.ID), timelinePrefix(surv.P.ID), func(k []byte) []byte {
		return append(timelinePrefix(surv.P.ID), k[len(o.P.ID)+2:]...)
	}); err != nil {
		return err
	}
	var open []tlEntry
	if err := eachPageEntry(o.TL, func(e tlEntry) { open = append(open, e) }); err != nil {
		return fmt.Errorf("open timeline page of %s: %w", o.P.ID, err)
	}
	for _, e := range open {
		if err := t.addTimeline(surv, e, nil); err != nil {
			return err
		}
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
// The committed keys come from the writer's read view, the writes of the
// pending transactions and of this one from their overlays.
// Only the prefixes that writes name (setIn, delIn) may be scanned:
// timelinePrefix, mergePrefix and crossPrefix.
func (t *tx) scan(prefix []byte, fn func(k, v []byte) error) error {
	if len(prefix) == 0 || !scanned(prefix[0]) {
		return fmt.Errorf("scan of table %q: not kept in the overlay", prefix[:min(1, len(prefix))])
	}
	type kv struct{ k, v []byte }
	var found []kv
	own := t.overlay[string(prefix)]
	var merged map[string]overlayWrite
	for _, in := range t.s.pending {
		// The pending writes, oldest first, then this transaction's over
		// them.
		if w := in.overlay[string(prefix)]; len(w) > 0 {
			if merged == nil {
				merged = make(map[string]overlayWrite, len(w)+len(own))
			}
			maps.Copy(merged, w)
		}
	}
	if merged != nil {
		maps.Copy(merged, own)
		own = merged
	}
	if !t.createdSinceView(prefix) {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		// Timeline keys have no value and merge records are small: reading
		// them in place beats prefetching, whose goroutines the writer
		// would wait for on every scan.
		opts.PrefetchValues = false
		it := t.s.rview.NewIterator(opts)
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			if _, ok := own[string(item.Key())]; ok {
				continue // written or deleted since the view: see below
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				it.Close()
				return err
			}
			found = append(found, kv{item.KeyCopy(nil), v})
		}
		it.Close()
	}
	committed := len(found)
	for k, w := range own {
		if !w.deleted {
			found = append(found, kv{[]byte(k), slices.Clone(w.val)})
		}
	}
	if committed != len(found) {
		slices.SortFunc(found, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	}
	for _, e := range found {
		if err := fn(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// createdSinceView reports whether prefix is the timeline or merge prefix
// of a profile created by t or by a pending transaction: the read view
// holds no key under it, and a scan need not open an iterator (a seek into
// every memtable and table).
func (t *tx) createdSinceView(prefix []byte) bool {
	if len(prefix) < 2 || (prefix[0] != tTimeline && prefix[0] != tMerge) || prefix[len(prefix)-1] != 0 {
		return false
	}
	pid := prefix[1 : len(prefix)-1]
	if t.created[string(pid)] {
		return true
	}
	for _, in := range t.s.pending {
		if in.created[string(pid)] {
			return true
		}
	}
	return false
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
	if _, err := t.get(k, func(v []byte) error { return msgpack.Unmarshal(v, &st) }); err != nil {
		return fmt.Errorf("edge state: %w", err)
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

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}
