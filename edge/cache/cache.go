// Package cache is the edge agent's local copy of the profiles the hub
// assigns to this edge. The hub pushes profile snapshots in batches with a
// per-edge sequence number; the cache applies them strictly in sequence
// order into its own Badger directory, together with the applied sequence
// in the same transaction, so that it survives restarts and can tell the
// hub where to resume. Lookups by identifier (type, value) answer from the
// local copy alone, so a kiosk can personalise while the hub is out of
// reach.
//
// Keys in Badger:
//
//	p<profile id>                          msgpack record: snapshot + received time
//	i<len(type) byte><type><value>         profile id holding that identifier
//	m<name>                                metadata: applied seq, last snapshot, last full sync
package cache

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/skl"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/unico-cdp/unico/protocol"
)

// Defaults and limits.
const (
	// DefaultHashTypes are the identifier types whose values the hub
	// sends hashed.
	DefaultHashTypes = "email,phone"
	// MaxProfileBytes bounds one stored profile record; larger snapshots
	// are skipped (counted in Stats.ProfilesSkipped).
	MaxProfileBytes = 256 << 10
	// MaxIdentifiersPerProfile bounds the identifiers indexed per profile;
	// further ones are not indexed.
	MaxIdentifiersPerProfile = 256
	// maxTypeLen bounds an identifier type (one length byte in the key).
	maxTypeLen = 64
	// DefaultMemTableBytes and DefaultBlockCacheBytes size Badger's
	// memory; see Options.
	DefaultMemTableBytes   = 8 << 20
	DefaultBlockCacheBytes = 4 << 20
	// MinMemTableBytes is the smallest memtable: one Badger transaction
	// (15% of it, 300 KiB) holds a profile of MaxProfileBytes with a few
	// identifiers; a bigger profile with its index is skipped (see Apply).
	MinMemTableBytes = 2 << 20
	// valueThreshold keeps every profile record in the LSM tree, where
	// compaction drops replaced versions (the cache runs no value-log GC).
	valueThreshold = MaxProfileBytes + 16<<10
)

// Errors.
var (
	// ErrNotFound is returned by Lookup when no cached profile holds the
	// identifier.
	ErrNotFound = errors.New("profile not found")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("cache closed")
	// ErrInvalid is returned by Lookup for an empty or oversized type or
	// value.
	ErrInvalid = errors.New("invalid identifier")
)

// Options configure a Cache. Zero fields take the documented defaults.
type Options struct {
	// Dir is the Badger directory of the cache. Required.
	Dir string
	// HashSalt is the tenant salt the hub uses to hash identifier values
	// of HashTypes (as the hub does, an empty salt still hashes).
	HashSalt string
	// HashTypes are the identifier types hashed with HashSalt. Default
	// DefaultHashTypes (when nil; an empty non-nil slice hashes none).
	HashTypes []string
	// DefaultCountryCode normalises national phone numbers in lookups, as
	// ingest does (protocol.NormalizePhone).
	DefaultCountryCode string
	// Logger; nil discards.
	Logger *slog.Logger
	// Now is the clock for received times. Default time.Now.
	Now func() time.Time
	// NoSync turns off fsync per applied batch (benchmarks and tests). By
	// default an ack to the hub means the batch is on disk.
	NoSync bool
	// MemTableBytes is the size of each of Badger's two memtables,
	// allocated whole on the Go heap. A batch of snapshots is applied in
	// transactions of up to 15% of it. Default DefaultMemTableBytes, at
	// least MinMemTableBytes.
	MemTableBytes int64
	// BlockCacheBytes bounds Badger's block cache (lookups of profiles
	// no longer in the memtable). Default DefaultBlockCacheBytes, at
	// least 1 MiB.
	BlockCacheBytes int64
}

// Stats is a snapshot of the cache's state and counters.
type Stats struct {
	Profiles        int64             // profiles cached
	Applied         uint64            // highest applied snapshot seq
	LastSnapshotAt  time.Time         // when the last batch was applied; zero if never
	LastFullSyncAt  time.Time         // when the last full-sync page was applied; zero if never
	BatchesApplied  uint64            // since open
	ProfilesApplied uint64            // snapshots and tombstones applied since open
	ProfilesSkipped uint64            // invalid or oversized snapshots skipped since open
	Ignored         map[string]uint64 // batches ignored since open, by reason: duplicate, gap, decode, overflow
}

// Cache is the Badger-backed profile cache. Methods are safe for concurrent
// use; Apply calls are serialised.
type Cache struct {
	opts  Options
	log   *slog.Logger
	db    *badger.DB
	hashT map[string]bool

	closeMu sync.RWMutex // guards closed against db use
	closed  bool

	writeMu sync.Mutex // serialises Apply
	// txnBytes and txnEntries keep one Badger transaction inside its
	// limits (15% of the memtable, and that over skl.MaxNodeSize
	// entries); a larger batch is split into several transactions, the
	// last of which records the applied sequence.
	txnBytes, txnEntries int

	mu           sync.Mutex // guards the fields below
	profiles     int64
	applied      uint64
	lastSnap     time.Time
	lastFull     time.Time
	batches      uint64
	profilesDone uint64
	profilesSkip uint64
	ignored      map[string]uint64
}

var (
	keyApplied  = []byte("mapplied")
	keyLastSnap = []byte("mlastsnap")
	keyLastFull = []byte("mlastfull")
)

// Open opens or creates the cache in opts.Dir.
func Open(opts Options) (*Cache, error) {
	if opts.Dir == "" {
		return nil, errors.New("open cache: Dir is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.HashTypes == nil {
		opts.HashTypes = strings.Split(DefaultHashTypes, ",")
	}
	switch {
	case opts.MemTableBytes == 0:
		opts.MemTableBytes = DefaultMemTableBytes
	case opts.MemTableBytes < MinMemTableBytes:
		return nil, fmt.Errorf("open cache: MemTableBytes %d is below %d", opts.MemTableBytes, MinMemTableBytes)
	}
	switch {
	case opts.BlockCacheBytes == 0:
		opts.BlockCacheBytes = DefaultBlockCacheBytes
	case opts.BlockCacheBytes < 1<<20:
		return nil, fmt.Errorf("open cache: BlockCacheBytes %d is below 1 MiB", opts.BlockCacheBytes)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "cache")
	c := &Cache{opts: opts, log: log, hashT: map[string]bool{}, ignored: map[string]uint64{}}
	// Room for the meta keys the last transaction also writes.
	maxBatch := int(15 * opts.MemTableBytes / 100)
	c.txnBytes = maxBatch - 4<<10
	c.txnEntries = maxBatch/int(skl.MaxNodeSize) - 8
	for _, t := range opts.HashTypes {
		if t = strings.TrimSpace(t); t != "" {
			c.hashT[t] = true
		}
	}
	db, err := badger.Open(badgerOptions(opts, log))
	if err != nil {
		return nil, fmt.Errorf("open cache: %w", err)
	}
	c.db = db
	if err := c.recover(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open cache: recover: %w", err)
	}
	log.Info("cache opened", "dir", opts.Dir, "profiles", c.profiles, "applied_seq", c.applied)
	return c, nil
}

// badgerOptions are small-device options like the queue's, with every
// record in the LSM tree, and up to 6 level-0 tables before compaction:
// profiles are keyed at random, so every level-0 compaction rewrites the
// whole base level, and every table Badger builds allocates a 3 MiB index
// buffer. Merging 6 flushed memtables at a time instead of 2 cut the
// agent's CPU while it applied the snapshots of a 300,000-event drain
// (make bench's drain at BENCH_SCALE=0.3, two agents, 10,000 profiles
// each) from 10–11.4 s to 7–9 s per agent at --memory-limit 36MiB.
func badgerOptions(opts Options, log *slog.Logger) badger.Options {
	bo := badger.DefaultOptions(opts.Dir)
	bo.MemTableSize = opts.MemTableBytes
	bo.ValueThreshold = valueThreshold
	bo.NumMemtables = 2
	bo.NumLevelZeroTables = 6
	bo.NumLevelZeroTablesStall = 12
	bo.BlockCacheSize = opts.BlockCacheBytes
	bo.ValueLogFileSize = 16 << 20
	bo.NumCompactors = 2
	bo.BaseTableSize = 2 << 20
	bo.BaseLevelSize = 8 << 20
	bo.Compression = 0 // options.None
	bo.DetectConflicts = false
	bo.MetricsEnabled = false
	bo.NumGoroutines = 1
	bo.SyncWrites = !opts.NoSync
	bo.Logger = badgerLogger{log.With("component", "badger")}
	return bo
}

// recover loads the metadata and counts the cached profiles.
func (c *Cache) recover() error {
	return c.db.View(func(txn *badger.Txn) error {
		if v, err := getCopy(txn, keyApplied); err == nil && len(v) == 8 {
			c.applied = binary.BigEndian.Uint64(v)
		} else if err != nil && !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		for _, m := range []struct {
			k []byte
			t *time.Time
		}{{keyLastSnap, &c.lastSnap}, {keyLastFull, &c.lastFull}} {
			v, err := getCopy(txn, m.k)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if len(v) == 8 {
				*m.t = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
			}
		}
		n, err := countProfiles(txn)
		c.profiles = n
		return err
	})
}

func countProfiles(txn *badger.Txn) (int64, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{'p'}})
	defer it.Close()
	var n int64
	for it.Rewind(); it.Valid(); it.Next() {
		n++
	}
	return n, nil
}

func getCopy(txn *badger.Txn, k []byte) ([]byte, error) {
	it, err := txn.Get(k)
	if err != nil {
		return nil, err
	}
	return it.ValueCopy(nil)
}

// begin registers a call that uses db; it fails after Close.
func (c *Cache) begin() error {
	c.closeMu.RLock()
	if c.closed {
		c.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (c *Cache) end() { c.closeMu.RUnlock() }

// Close closes the Badger directory. Calls in progress finish first.
func (c *Cache) Close() error {
	c.closeMu.Lock()
	defer c.closeMu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if err := c.db.Close(); err != nil {
		return fmt.Errorf("close cache: %w", err)
	}
	return nil
}

// Applied returns the highest applied snapshot sequence (0 when empty).
func (c *Cache) Applied() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.applied
}

// Stats returns the cache's state and counters.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{
		Profiles: c.profiles, Applied: c.applied, LastSnapshotAt: c.lastSnap, LastFullSyncAt: c.lastFull,
		BatchesApplied: c.batches, ProfilesApplied: c.profilesDone, ProfilesSkipped: c.profilesSkip,
		Ignored: make(map[string]uint64, len(c.ignored)),
	}
	for k, v := range c.ignored {
		s.Ignored[k] = v
	}
	return s
}

// Ignore reasons.
const (
	ReasonDuplicate = "duplicate"
	ReasonGap       = "gap"
	ReasonDecode    = "decode"
	ReasonOverflow  = "overflow"
)

func (c *Cache) ignore(reason string) {
	c.mu.Lock()
	c.ignored[reason]++
	c.mu.Unlock()
}

// record is the stored value of one profile.
type record struct {
	P        *protocol.ProfileSnapshot `msgpack:"p"`
	Received time.Time                 `msgpack:"r"`
}

func profileKey(id string) []byte { return append([]byte{'p'}, id...) }

func indexKey(typ, value string) []byte {
	k := make([]byte, 0, 2+len(typ)+len(value))
	k = append(k, 'i', byte(len(typ)))
	k = append(k, typ...)
	return append(k, value...)
}

// validIdentifier reports whether an identifier can be indexed.
func validIdentifier(typ, value string) bool {
	return typ != "" && len(typ) <= maxTypeLen && value != "" && len(value) <= protocol.MaxIdentifierLen
}

// Apply applies one snapshot batch if its Seq is the next expected one:
// every profile is replaced (or deleted for a tombstone) together with its
// identifier index entries, and the new applied Seq is persisted with them.
// A batch at or below the applied Seq is a duplicate and one above the next
// expected is a gap; both are ignored (applied false, err nil) and counted.
// Invalid profiles inside an applied batch (empty or oversized id, oversized
// record, or one whose record and index changes exceed one Badger
// transaction, 15% of Options.MemTableBytes) are skipped and counted rather
// than stalling the sequence.
//
// A batch too large for one Badger transaction is split into several; the
// last carries the applied Seq, so a crash in between leaves the Seq
// unchanged and the hub's resend re-applies the batch (applying a profile is
// idempotent).
func (c *Cache) Apply(b *protocol.SnapshotBatch) (applied bool, err error) {
	if b == nil {
		return false, nil
	}
	if err := c.begin(); err != nil {
		return false, err
	}
	defer c.end()
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	cur := c.Applied()
	switch {
	case b.Seq <= cur:
		c.ignore(ReasonDuplicate)
		return false, nil
	case b.Seq > cur+1:
		c.ignore(ReasonGap)
		return false, nil
	}
	now := c.opts.Now().UTC()
	var (
		delta         int64
		done, skipped uint64
		size, entries int
	)
	txn := c.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for i := range b.Profiles {
		p := &b.Profiles[i]
		ops, d, ok, err := c.profileOps(txn, p, now)
		if err != nil {
			c.recount()
			return false, fmt.Errorf("apply seq %d: %w", b.Seq, err)
		}
		if !ok {
			skipped++
			continue
		}
		opsBytes := 0
		for _, o := range ops {
			opsBytes += len(o.k) + len(o.v) + 16
		}
		if opsBytes > c.txnBytes || len(ops) > c.txnEntries {
			// Its record and index changes alone exceed a transaction:
			// skipped like an oversized record.
			skipped++
			continue
		}
		if entries > 0 && (size+opsBytes > c.txnBytes || entries+len(ops) > c.txnEntries) {
			if err := txn.Commit(); err != nil {
				c.recount()
				return false, fmt.Errorf("apply seq %d: commit: %w", b.Seq, err)
			}
			txn = c.db.NewTransaction(true)
			size, entries = 0, 0
			// Re-read in the new transaction: its view includes the
			// part just committed.
			if ops, d, _, err = c.profileOps(txn, p, now); err != nil {
				c.recount()
				return false, fmt.Errorf("apply seq %d: %w", b.Seq, err)
			}
		}
		for _, o := range ops {
			if o.v == nil {
				err = txn.Delete(o.k)
			} else {
				err = txn.Set(o.k, o.v)
			}
			if err != nil {
				c.recount()
				return false, fmt.Errorf("apply seq %d: %w", b.Seq, err)
			}
		}
		size += opsBytes
		entries += len(ops)
		delta += d
		done++
	}
	var seqB, tB [8]byte
	binary.BigEndian.PutUint64(seqB[:], b.Seq)
	binary.BigEndian.PutUint64(tB[:], uint64(now.UnixNano()))
	err = txn.Set(keyApplied, seqB[:])
	if err == nil {
		err = txn.Set(keyLastSnap, tB[:])
	}
	if err == nil && b.FullSync {
		err = txn.Set(keyLastFull, tB[:])
	}
	if err == nil {
		err = txn.Commit()
	}
	if err != nil {
		c.recount()
		return false, fmt.Errorf("apply seq %d: commit: %w", b.Seq, err)
	}
	c.mu.Lock()
	c.applied = b.Seq
	c.profiles += delta
	c.lastSnap = now
	if b.FullSync {
		c.lastFull = now
	}
	c.batches++
	c.profilesDone += done
	c.profilesSkip += skipped
	c.mu.Unlock()
	if skipped > 0 {
		c.log.Warn("invalid profile snapshots skipped", "seq", b.Seq, "skipped", skipped)
	}
	return true, nil
}

// recount recomputes the profile count from disk after a failed apply, whose
// earlier transactions may have committed.
func (c *Cache) recount() {
	var n int64
	err := c.db.View(func(txn *badger.Txn) (err error) {
		n, err = countProfiles(txn)
		return err
	})
	if err != nil {
		c.log.Error("recount profiles", "err", err)
		return
	}
	c.mu.Lock()
	c.profiles = n
	c.mu.Unlock()
}

// op is one write: a nil v deletes k.
type op struct{ k, v []byte }

// profileOps computes the writes that replace (or, for a tombstone,
// delete) p and its index entries as seen in txn. d is the change in the
// number of cached profiles; ok is false when p is invalid and skipped.
func (c *Cache) profileOps(txn *badger.Txn, p *protocol.ProfileSnapshot, now time.Time) (ops []op, d int64, ok bool, err error) {
	if p.ProfileID == "" || len(p.ProfileID) > protocol.MaxIdentifierLen {
		return nil, 0, false, nil
	}
	pk := profileKey(p.ProfileID)
	var (
		enc  []byte
		ids  []protocol.Identifier
		seen map[protocol.Identifier]bool
	)
	if !p.Tombstone {
		// Keep only indexable identifiers, at most MaxIdentifiersPerProfile.
		ids = make([]protocol.Identifier, 0, len(p.Identifiers))
		seen = make(map[protocol.Identifier]bool, len(p.Identifiers))
		for _, id := range p.Identifiers {
			if validIdentifier(id.Type, id.Value) && !seen[id] && len(ids) < MaxIdentifiersPerProfile {
				seen[id] = true
				ids = append(ids, id)
			}
		}
		cp := *p
		cp.Identifiers = ids
		cp.UpdatedAt = cp.UpdatedAt.UTC()
		enc, err = msgpack.Marshal(&record{P: &cp, Received: now})
		if err != nil || len(enc) > MaxProfileBytes {
			return nil, 0, false, nil
		}
	}
	old, err := getCopy(txn, pk)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		old = nil
	case err != nil:
		return nil, 0, false, err
	}
	if old != nil {
		var r record
		if decodeRecord(old, &r) == nil && r.P != nil {
			for _, id := range r.P.Identifiers {
				if !validIdentifier(id.Type, id.Value) || seen[id] {
					// An identifier the profile keeps is set below
					// whoever holds it now: no need to read its entry.
					continue
				}
				ik := indexKey(id.Type, id.Value)
				holder, err := getCopy(txn, ik)
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue
				}
				if err != nil {
					return nil, 0, false, err
				}
				// Another profile may have claimed the identifier
				// since: leave its entry alone.
				if string(holder) == p.ProfileID {
					ops = append(ops, op{k: ik})
				}
			}
		}
	}
	if p.Tombstone {
		if old != nil {
			ops = append(ops, op{k: pk})
			d = -1
		}
		return ops, d, true, nil
	}
	if old == nil {
		d = 1
	}
	ops = append(ops, op{k: pk, v: enc})
	for _, id := range ids {
		ops = append(ops, op{k: indexKey(id.Type, id.Value), v: []byte(p.ProfileID)})
	}
	return ops, d, true, nil
}

// decodeRecord decodes a stored record without panicking on a corrupt one.
func decodeRecord(b []byte, r *record) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("decode record: %v", p)
		}
	}()
	return msgpack.Unmarshal(b, r)
}

// QueryValue returns the value under which the cache indexes an identifier
// looked up as (typ, value): e-mail and phone are normalised as ingest
// normalises them, and values of the hashed types are hashed with the salt.
func (c *Cache) QueryValue(typ, value string) string {
	switch typ {
	case protocol.IDEmail:
		value, _ = protocol.NormalizeEmail(value)
	case protocol.IDPhone:
		value, _ = protocol.NormalizePhone(value, c.opts.DefaultCountryCode)
	default:
		value = strings.TrimSpace(value)
	}
	if c.hashT[typ] && value != "" {
		value = protocol.HashIdentifier(c.opts.HashSalt, value)
	}
	return value
}

// Lookup returns the cached profile holding the identifier (typ, value) and
// when its snapshot was received. value is normalised and hashed as
// QueryValue says. It returns ErrNotFound when no cached profile holds it
// and ErrInvalid for an empty or oversized type or value.
func (c *Cache) Lookup(typ, value string) (*protocol.ProfileSnapshot, time.Time, error) {
	if !validIdentifier(typ, value) {
		return nil, time.Time{}, ErrInvalid
	}
	q := c.QueryValue(typ, value)
	if !validIdentifier(typ, q) {
		return nil, time.Time{}, ErrNotFound
	}
	if err := c.begin(); err != nil {
		return nil, time.Time{}, err
	}
	defer c.end()
	var r record
	err := c.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(indexKey(typ, q))
		if err != nil {
			return err
		}
		var pk []byte
		if err := it.Value(func(v []byte) error { pk = profileKey(string(v)); return nil }); err != nil {
			return err
		}
		it, err = txn.Get(pk)
		if err != nil {
			return err
		}
		return it.Value(func(v []byte) error { return decodeRecord(v, &r) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) || err == nil && r.P == nil {
		return nil, time.Time{}, ErrNotFound
	}
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("lookup: %w", err)
	}
	r.P.UpdatedAt = r.P.UpdatedAt.UTC()
	return r.P, r.Received.UTC(), nil
}

// badgerLogger routes Badger's log to slog, warnings and errors only.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(strings.TrimRight(fmt.Sprintf(f, a...), "\n"))
}

func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(strings.TrimRight(fmt.Sprintf(f, a...), "\n"))
}
func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
