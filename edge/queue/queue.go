// Package queue is the edge agent's durable event queue on Badger: appends
// are fsynced with group commit before they return, events are read in
// sequence order, and deleted only when the hub has acknowledged them.
//
// # Storage layout
//
// Each event is one Badger key: the byte 'e' followed by its sequence number
// as 8 bytes big-endian, so keys sort in queue order. The value is a small
// header (format version, received-at as Unix nanoseconds, channel) followed
// by the event encoded with protocol.MarshalEvent, up to MaxEventBytes.
// Values go to Badger's value log (see Badger options below), the keys and
// value pointers to the LSM tree.
// One meta key ('m') holds the next sequence number and a head hint; it is
// written in the same Badger transaction as every batch of events and every
// deletion, so a crash can never reuse a sequence number. Sequence numbers
// start at 1.
//
// # Durability and group commit
//
// Append encodes its events in the caller's goroutine and hands them to a
// single committer goroutine. The committer takes every request waiting at
// that moment (up to maxGroupEvents events), writes them in one Badger
// transaction (split only when Badger's transaction size limit is reached),
// commits with SyncWrites=true so the write is fsynced once, and then
// releases all callers. Append returns nil only after that fsync.
// SyncWrites was measured against committing unsynced and calling db.Sync
// once per group (BenchmarkAppend/dbsync): with 8 and 32 appenders
// SyncWrites gave about 82k and 123k events/s, db.Sync about 42k for both.
// One
// Append larger than a Badger transaction may be split over several
// commits; if the process dies in between, part of it may survive although
// Append never returned nil. The hub deduplicates by event id, so a client
// retry of such a batch is harmless.
//
// # Recovery
//
// Open reads the meta key and scans the queued keys from the head hint to
// recompute depth, bytes, oldest received-at, head and the per-channel index
// of channels with a drop policy. Measured (BenchmarkOpen, 2-core machine):
// 0.11 s for 100k and 1.1 s for 1M queued events.
//
// # Acks and reads
//
// The queue keeps the head (lowest queued seq) in memory and Read seeks to
// max(from, head), never over the tombstones of acknowledged events. Ack may
// be called for ranges in any order; acknowledging absent seqs is a no-op.
//
// # Quota and overflow
//
// QuotaBytes bounds the stored bytes (key + value) of queued and
// quarantined events. An Append that would exceed it fails with ErrFull and stores nothing, unless
// every one of its events belongs to a channel whose policy is
// OverflowDropOldest and deleting the oldest queued events of those
// channels frees enough room: then those events are deleted in the same
// transaction as the new ones are written, counted per channel in
// Stats.Dropped and logged. Channels without that policy are never dropped.
//
// # Quarantine
//
// An event the hub refuses on its own (see edge/uplink) is moved out of the
// queue into the quarantine: key 'q' followed by the seq it had, value a
// header (format version, quarantined-at, received-at, channel, the hub's
// error text up to MaxQuarantineErrorBytes) followed by the event's bytes as
// they were queued. Quarantine deletes the queued key and writes the
// quarantine key in one Badger transaction, so a crash leaves the event in
// exactly one of the two places. Quarantined events are never dropped by
// the queue: they stay until RetryQuarantined moves them back to the tail of
// the queue (under new seqs, one transaction per chunk of events) or
// DiscardQuarantined deletes one. Their stored bytes count against
// QuotaBytes together with the queued events' (Stats.QuarantineBytes beside
// Stats.Bytes), so a quarantine that keeps growing ends in ErrFull rather
// than in an unbounded disk.
//
// # Corrupt records
//
// A stored value whose header does not decode is never returned by Read:
// Read skips it, deletes it durably, logs its seq at error level and counts
// it in Stats.Corrupt, so one bad record can never stall forwarding.
//
// # Badger options
//
// Tuned for small devices: MemTableSize Options.MemTableBytes (default 8
// MiB), NumMemtables 2, NumLevelZeroTables 2, NumLevelZeroTablesStall 4,
// BlockCacheSize Options.BlockCacheBytes (default 8 MiB), ValueThreshold
// 64 bytes, ValueLogFileSize 16 MiB, NumCompactors 2 (Badger's minimum),
// BaseTableSize 512 KiB (compaction builds each table whole on the heap),
// BaseLevelSize 4 MiB, no compression,
// DetectConflicts false, MetricsEnabled false, NumGoroutines 1,
// SyncWrites true. Badger's own log goes to the injected logger at warning
// level and above.
//
// Events live in the value log: the LSM tree holds only their keys and
// value pointers (about 40 bytes an event), so an event is written once,
// in order, and never rewritten by compaction. Kept in the LSM tree
// instead, every event was rewritten at each level it passed: measured
// with BenchmarkEdgeIngest (16 clients, 1,000,000 events), 85k events/s
// at 18.9 µs of agent CPU an event and 263 MiB peak RSS, against 200k
// events/s at 7.3 µs with the value log. A value-log file whose events
// are all acked is garbage that value-log GC (every GCInterval, until
// Close, up to 8 files a round) rewrites away; the files of a drained
// backlog are reclaimed within a few GC rounds (TestDiskReclaimedAfterAck).
//
// # Memory
//
// Badger allocates each memtable whole on the Go heap, and its table
// building allocates heavily (a 3 MiB index buffer per table, pooled block
// buffers): give the process a Go memory limit (the agent's
// --memory-limit). Badger also reads and writes tables through shared
// file mappings, whose pages stay resident until the table is deleted; on
// Linux the queue pages them out every PageOutInterval (see pageOut).
package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/unico-cdp/unico/internal/vloggc"
	"github.com/unico-cdp/unico/protocol"
)

// ErrFull is returned by Append when the disk quota would be exceeded and
// the events' channels have no overflow policy that frees room.
var ErrFull = errors.New("queue full")

// ErrClosed is returned by calls on a closed queue.
var ErrClosed = errors.New("queue closed")

// ErrTooLarge is returned by Append when one encoded event exceeds
// MaxEventBytes, or its channel name exceeds 255 bytes. Nothing is stored.
var ErrTooLarge = errors.New("event too large")

// ErrPageOutUnsupported is returned (and logged once) when the kernel
// cannot page out the queue's mapped files; the queue then stops trying.
var ErrPageOutUnsupported = errors.New("paging out mapped files is not supported by this system")

// MaxEventBytes bounds the encoded size of one event.
const MaxEventBytes = 512 << 10

// Defaults for zero Options fields.
const (
	DefaultQuotaBytes      = 1 << 30
	DefaultGCInterval      = time.Minute
	DefaultPageOutInterval = 100 * time.Millisecond
	// DefaultReadEvents applies when Read is called with maxEvents <= 0.
	DefaultReadEvents = 1000
	// DefaultReadBytes applies when Read is called with maxBytes <= 0.
	DefaultReadBytes = 4 << 20
	// DefaultMemTableBytes and DefaultBlockCacheBytes size Badger's
	// memory; see Options.
	DefaultMemTableBytes   = 8 << 20
	DefaultBlockCacheBytes = 8 << 20
	// MinMemTableBytes is the smallest memtable: it holds about 10,000
	// events' keys and value pointers.
	MinMemTableBytes = 1 << 20
)

// valueThreshold sends every event to the value log (an encoded event and
// its header are longer); the meta key stays in the LSM tree.
const valueThreshold = 64

// maxTxnValueBytes bounds the value bytes one Badger transaction writes
// to the value log, which Badger's estimate of its size (value pointers
// only) does not.
const maxTxnValueBytes = 16 << 20

// OverflowPolicy says what to do when the quota is reached.
type OverflowPolicy string

const (
	// OverflowReject refuses new events (HTTP 429). The default, and the
	// only sane choice for sales.
	OverflowReject OverflowPolicy = "reject"
	// OverflowDropOldest deletes the oldest queued events of the same
	// channel to make room, counting them as dropped.
	OverflowDropOldest OverflowPolicy = "drop_oldest"
)

// Options configures a Queue. Zero fields take the documented defaults.
type Options struct {
	// Dir is the Badger directory. Required.
	Dir string
	// QuotaBytes bounds the stored bytes of queued and quarantined events.
	// Default 1 GiB.
	QuotaBytes int64
	// Overflow maps a channel ("iot", …) to its policy; unlisted channels
	// use OverflowReject.
	Overflow map[string]OverflowPolicy
	// GCInterval is how often value-log GC runs. Default 1 minute.
	GCInterval time.Duration
	// Logger receives the queue's and Badger's logs. Nil discards them.
	Logger *slog.Logger
	// Now stamps the received-at of appended events. Default time.Now.
	Now func() time.Time
	// MemTableBytes is the size of each of Badger's two memtables. Each
	// is allocated whole on the Go heap when it is opened (so it counts
	// against a Go memory limit in full, although its pages become
	// resident only as they are written), and one write transaction holds
	// at most 15% of it (counting an event's key and value pointer, not
	// its bytes, which go to the value log). Default
	// DefaultMemTableBytes, at least MinMemTableBytes.
	MemTableBytes int64
	// BlockCacheBytes bounds Badger's block cache. Default
	// DefaultBlockCacheBytes, at least 1 MiB.
	BlockCacheBytes int64
	// PageOutInterval is how often the queue asks the kernel to reclaim
	// the resident pages of Badger's mapped table and value-log files (on
	// Linux 5.4 and later; elsewhere it does nothing). Badger maps every
	// table it writes or reads, and without this the pages of the whole
	// backlog stay in the agent's resident set. Default 100 ms; negative turns
	// it off.
	PageOutInterval time.Duration
	// PageOutDir widens the page-out to the Badger files of every
	// database under this directory (the agent's data directory, so that
	// the profile cache's tables are paged out too). Default Dir.
	PageOutDir string

	// syncExplicit commits without SyncWrites and calls db.Sync once per
	// group instead (for the benchmark comparing both).
	syncExplicit bool
	// vlogFileBytes replaces the value-log file size (tests).
	vlogFileBytes int64
}

// Record is one queued event.
type Record struct {
	Seq        uint64
	ReceivedAt time.Time
	Channel    string
	// Data is the event encoded with protocol.MarshalEvent.
	Data []byte
}

// Stats is a point-in-time view of the queue.
type Stats struct {
	Depth            int64             // events queued (not yet acked)
	Bytes            int64             // stored bytes counted against the quota
	QuotaBytes       int64             // the quota
	OldestReceivedAt time.Time         // zero when empty
	HeadSeq          uint64            // lowest queued seq (next to be acked)
	NextSeq          uint64            // seq the next appended event gets
	Appended         uint64            // events appended since open
	Acked            uint64            // events deleted by Ack since open
	Dropped          map[string]uint64 // events dropped by overflow policy, per channel, since open
	Corrupt          uint64            // corrupt records skipped and deleted since open
	Commits          uint64            // synced group commits since open

	// The quarantine (see Quarantine). Its bytes count against the
	// quota together with Bytes.
	QuarantineDepth int64  // events in quarantine
	QuarantineBytes int64  // their stored bytes
	Quarantined     uint64 // events moved to quarantine since open
	Requeued        uint64 // quarantined events moved back to the queue since open
	Discarded       uint64 // quarantined events discarded since open
}

// Queue is a durable FIFO of events. All methods are safe for concurrent use.
type Queue struct {
	opts Options
	log  *slog.Logger
	db   *badger.DB

	mapsDir    string // opts.Dir as /proc/self/maps names it
	pageOutOff atomic.Bool
	// touched counts the value bytes written or read since the last
	// kick of pageOutKick, which pages out before the next tick when
	// the queue moves faster than PageOutInterval.
	touched       atomic.Int64
	pageOutKick   chan struct{}
	reqs          chan *appendReq
	committerDone chan struct{}
	gcStop        chan struct{}
	gcDone        chan struct{}

	// closeMu guards closed; inflight counts calls that use db.
	closeMu  sync.RWMutex
	closed   bool
	inflight sync.WaitGroup
	closedCh chan struct{}

	// writeMu serializes every write to Badger (group commits, acks, drops,
	// corrupt-record removal), so that each sees the state the previous
	// one left. Lock order: writeMu before mu.
	writeMu sync.Mutex

	// mu guards the fields below (the committed state).
	mu       sync.Mutex
	nextSeq  uint64
	head     uint64 // lowest queued seq, or nextSeq when empty
	depth    int64
	bytes    int64
	oldest   time.Time
	appended uint64
	acked    uint64
	corrupt  uint64
	commits  uint64
	dropped  map[string]uint64
	// The quarantine: events, bytes and counters since open.
	qdepth      int64
	qbytes      int64
	quarantined uint64
	requeued    uint64
	discarded   uint64
	chans       map[string]*seqRanges // only channels with OverflowDropOldest
	notify      chan struct{}         // closed and replaced on every commit
}

// Open opens or creates the queue in opts.Dir and recovers its state.
func Open(opts Options) (*Queue, error) {
	if opts.Dir == "" {
		return nil, errors.New("open queue: Dir is required")
	}
	if opts.QuotaBytes < 0 {
		return nil, fmt.Errorf("open queue: QuotaBytes %d is negative", opts.QuotaBytes)
	}
	if opts.QuotaBytes == 0 {
		opts.QuotaBytes = DefaultQuotaBytes
	}
	if opts.GCInterval < 0 {
		return nil, fmt.Errorf("open queue: GCInterval %s is negative", opts.GCInterval)
	}
	if opts.GCInterval == 0 {
		opts.GCInterval = DefaultGCInterval
	}
	for ch, p := range opts.Overflow {
		if p != OverflowReject && p != OverflowDropOldest {
			return nil, fmt.Errorf("open queue: Overflow[%q]: unknown policy %q", ch, p)
		}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.PageOutInterval == 0 {
		opts.PageOutInterval = DefaultPageOutInterval
	}
	if opts.PageOutInterval > 0 {
		opts.PageOutInterval = max(opts.PageOutInterval, 50*time.Millisecond)
	}
	switch {
	case opts.MemTableBytes == 0:
		opts.MemTableBytes = DefaultMemTableBytes
	case opts.MemTableBytes < MinMemTableBytes:
		return nil, fmt.Errorf("open queue: MemTableBytes %d is below %d", opts.MemTableBytes, MinMemTableBytes)
	}
	switch {
	case opts.BlockCacheBytes == 0:
		opts.BlockCacheBytes = DefaultBlockCacheBytes
	case opts.BlockCacheBytes < 1<<20:
		return nil, fmt.Errorf("open queue: BlockCacheBytes %d is below 1 MiB", opts.BlockCacheBytes)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "queue")

	db, err := badger.Open(badgerOptions(opts, log))
	if err != nil {
		return nil, fmt.Errorf("open queue: %w", err)
	}
	// /proc/self/maps names mapped files by their resolved absolute path.
	mapsDir := opts.Dir
	if opts.PageOutDir != "" {
		mapsDir = opts.PageOutDir
	}
	if abs, err := filepath.Abs(mapsDir); err == nil {
		mapsDir = abs
	}
	if real, err := filepath.EvalSymlinks(mapsDir); err == nil {
		mapsDir = real
	}
	q := &Queue{
		opts:          opts,
		mapsDir:       mapsDir,
		log:           log,
		db:            db,
		reqs:          make(chan *appendReq, 1024),
		committerDone: make(chan struct{}),
		gcStop:        make(chan struct{}),
		gcDone:        make(chan struct{}),
		closedCh:      make(chan struct{}),
		dropped:       make(map[string]uint64),
		chans:         make(map[string]*seqRanges),
		notify:        make(chan struct{}),
		pageOutKick:   make(chan struct{}, 1),
	}
	for ch, p := range opts.Overflow {
		if p == OverflowDropOldest {
			q.chans[ch] = &seqRanges{}
		}
	}
	start := time.Now()
	// Recovery reads every queued value, fast: page out often while it
	// runs.
	stopPageOut := q.pageOutEvery(min(opts.PageOutInterval, 50*time.Millisecond))
	err = q.recover()
	stopPageOut()
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open queue: recover: %w", err)
	}
	log.Info("queue opened", "dir", opts.Dir, "depth", q.depth, "bytes", q.bytes,
		"head", q.head, "next", q.nextSeq, "took", time.Since(start))
	go q.commitLoop()
	go q.gcLoop()
	return q, nil
}

func badgerOptions(opts Options, log *slog.Logger) badger.Options {
	bo := badger.DefaultOptions(opts.Dir)
	bo.MemTableSize = opts.MemTableBytes
	bo.NumMemtables = 2
	bo.NumLevelZeroTables = 2
	bo.NumLevelZeroTablesStall = 4
	bo.BlockCacheSize = opts.BlockCacheBytes
	bo.ValueLogFileSize = 16 << 20
	if opts.vlogFileBytes > 0 {
		bo.ValueLogFileSize = opts.vlogFileBytes
	}
	bo.ValueThreshold = valueThreshold
	bo.NumCompactors = 2
	bo.BaseTableSize = 512 << 10
	bo.BaseLevelSize = 4 << 20
	bo.Compression = 0 // options.None
	bo.DetectConflicts = false
	bo.MetricsEnabled = false
	bo.NumGoroutines = 1
	bo.SyncWrites = !opts.syncExplicit
	bo.Logger = badgerLogger{log.With("component", "badger")}
	return bo
}

// begin registers a call that uses the database; it fails after Close.
func (q *Queue) begin() error {
	q.closeMu.RLock()
	defer q.closeMu.RUnlock()
	if q.closed {
		return ErrClosed
	}
	q.inflight.Add(1)
	return nil
}

// Append stores events durably (fsynced) and assigns each a sequence number,
// in order. It returns only after the fsync. Many concurrent callers share
// one fsync (group commit). It returns ErrFull when the quota is reached, in
// which case none of the events is stored.
//
// ctx bounds only the wait for the committer to accept the request: once
// accepted, Append waits for the commit (bounded by the disk) so that its
// result is always the truth.
func (q *Queue) Append(ctx context.Context, events []protocol.Event) error {
	_, err := q.AppendSeq(ctx, events)
	return err
}

// AppendSeq is Append that also returns the seq given to events[0]; the
// others follow consecutively. first is 0 when err is not nil or events is
// empty.
func (q *Queue) AppendSeq(ctx context.Context, events []protocol.Event) (first uint64, err error) {
	if len(events) == 0 {
		return 0, nil
	}
	if err := q.begin(); err != nil {
		return 0, err
	}
	defer q.inflight.Done()
	r, err := q.newAppendReq(events)
	if err != nil {
		return 0, err
	}
	select {
	case q.reqs <- r:
	case <-ctx.Done():
		r.release()
		return 0, fmt.Errorf("append: %w", ctx.Err())
	}
	// The committer is done with r once it has sent the result.
	err = <-r.done
	r.release()
	if err != nil {
		return 0, err
	}
	return r.first, nil
}

// Read returns queued records with Seq >= from, in order, at most maxEvents
// of them and at most about maxBytes of Data (at least one record when any
// is queued). maxEvents <= 0 means DefaultReadEvents, maxBytes <= 0
// DefaultReadBytes.
func (q *Queue) Read(from uint64, maxEvents, maxBytes int) ([]Record, error) {
	if err := q.begin(); err != nil {
		return nil, err
	}
	defer q.inflight.Done()
	if maxEvents <= 0 {
		maxEvents = DefaultReadEvents
	}
	if maxBytes <= 0 {
		maxBytes = DefaultReadBytes
	}
	q.mu.Lock()
	start := max(from, q.head)
	next := q.nextSeq
	q.mu.Unlock()
	if start >= next {
		return nil, nil
	}
	recs, corrupt, err := q.read(start, maxEvents, maxBytes)
	if err != nil {
		return nil, fmt.Errorf("read queue: %w", err)
	}
	for _, seq := range corrupt {
		if err := q.remove(seq, seq, removeCorrupt); err != nil {
			return recs, fmt.Errorf("read queue: remove corrupt record %d: %w", seq, err)
		}
	}
	return recs, nil
}

func (q *Queue) read(start uint64, maxEvents, maxBytes int) (recs []Record, corrupt []uint64, err error) {
	txn := q.db.NewTransaction(false)
	defer txn.Discard()
	// Values live in the value log: item.Value reads them through its
	// mapping in seq order, which is the order they were written in, and
	// copies them once into the arena; prefetching would copy twice.
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixEvent}})
	defer it.Close()
	var arena []byte
	size := 0
	var kb [keyLen]byte
	for it.Seek(eventKey(kb[:0], start)); it.Valid() && len(recs) < maxEvents; it.Next() {
		item := it.Item()
		seq, ok := keySeq(item.Key())
		if !ok {
			continue
		}
		var rec Record
		var bad bool
		err := item.Value(func(v []byte) error {
			at, ch, data, derr := decodeValue(v)
			if derr != nil {
				bad = true
				q.log.Error("corrupt queued record, deleting it", "seq", seq, "bytes", len(v), "err", derr)
				return nil
			}
			if len(recs) > 0 && size+len(data) > maxBytes {
				return errStop
			}
			if cap(arena)-len(arena) < len(data) {
				// First guess: maxEvents records like this one; then
				// doubling chunks. Earlier records keep their chunk.
				want := min(maxBytes, (maxEvents-len(recs))*(len(data)+16), 1<<20)
				if cap(arena) > 0 {
					want = min(2*cap(arena), 1<<20)
				}
				arena = make([]byte, 0, max(len(data), want))
			}
			off := len(arena)
			arena = append(arena, data...)
			rec = Record{Seq: seq, ReceivedAt: at, Channel: ch, Data: arena[off:len(arena):len(arena)]}
			size += len(data)
			return nil
		})
		if errors.Is(err, errStop) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
		if bad {
			corrupt = append(corrupt, seq)
			continue
		}
		recs = append(recs, rec)
	}
	q.touch(int64(size))
	return recs, corrupt, nil
}

var errStop = errors.New("stop")

// Wait blocks until a record with Seq >= seq is queued or ctx is done.
// It returns ctx.Err() when ctx is done first and ErrClosed when the queue
// is closed.
func (q *Queue) Wait(ctx context.Context, seq uint64) error {
	for {
		q.mu.Lock()
		ready := q.nextSeq > seq
		ch := q.notify
		q.mu.Unlock()
		if ready {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-q.closedCh:
			return ErrClosed
		}
	}
}

// Ack deletes the records with first <= Seq <= last, durably. Seqs that are
// not queued (already acked or dropped) are ignored.
func (q *Queue) Ack(first, last uint64) error {
	if first > last {
		return nil
	}
	if err := q.begin(); err != nil {
		return err
	}
	defer q.inflight.Done()
	if err := q.remove(first, last, removeAck); err != nil {
		return fmt.Errorf("ack %d-%d: %w", first, last, err)
	}
	return nil
}

// Stats returns the current statistics.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := Stats{
		Depth:            q.depth,
		Bytes:            q.bytes,
		QuotaBytes:       q.opts.QuotaBytes,
		OldestReceivedAt: q.oldest,
		HeadSeq:          q.head,
		NextSeq:          q.nextSeq,
		Appended:         q.appended,
		Acked:            q.acked,
		Corrupt:          q.corrupt,
		Commits:          q.commits,
		QuarantineDepth:  q.qdepth,
		QuarantineBytes:  q.qbytes,
		Quarantined:      q.quarantined,
		Requeued:         q.requeued,
		Discarded:        q.discarded,
		Dropped:          make(map[string]uint64, len(q.dropped)),
	}
	for k, v := range q.dropped {
		s.Dropped[k] = v
	}
	return s
}

// Close stops accepting calls (they return ErrClosed), waits for in-flight
// appends, reads and acks, stops value-log GC and closes Badger cleanly.
// Calling Close again returns ErrClosed.
func (q *Queue) Close() error {
	q.closeMu.Lock()
	if q.closed {
		q.closeMu.Unlock()
		return ErrClosed
	}
	q.closed = true
	close(q.closedCh)
	q.closeMu.Unlock()

	q.inflight.Wait()
	close(q.reqs)
	<-q.committerDone
	close(q.gcStop)
	<-q.gcDone
	if err := q.db.Close(); err != nil {
		return fmt.Errorf("close queue: %w", err)
	}
	return nil
}

// pageOutEvery pages out the mapped files every d (if d > 0 and the
// system can) and once more when stop is called; stop returns when the
// last page-out is done.
func (q *Queue) pageOutEvery(d time.Duration) (stop func()) {
	if d <= 0 || !pageOutSupported || q.pageOutOff.Load() {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-quit:
				q.pageOut()
				return
			case <-q.pageOutKick:
				if !q.pageOut() {
					<-quit
					return
				}
				t.Reset(d)
			case <-t.C:
				if !q.pageOut() {
					<-quit
					return
				}
			}
		}
	}()
	return func() { close(quit); <-done }
}

// pageOutBytes is how many value bytes the queue writes or reads before it
// pages out without waiting for the next PageOutInterval tick.
const pageOutBytes = 4 << 20

// touch counts n value bytes written or read and kicks a page-out every
// pageOutBytes.
func (q *Queue) touch(n int64) {
	if q.touched.Add(n) < pageOutBytes {
		return
	}
	q.touched.Store(0)
	select {
	case q.pageOutKick <- struct{}{}:
	default:
	}
}

// pageOut pages out the mapped files once. It returns false, and turns
// paging out off, when the system cannot do it.
func (q *Queue) pageOut() bool {
	if q.pageOutOff.Load() {
		return false
	}
	_, err := pageOut(q.mapsDir)
	switch {
	case errors.Is(err, ErrPageOutUnsupported):
		q.log.Info("not paging out mapped files", "err", err)
		q.pageOutOff.Store(true)
		return false
	case err != nil:
		q.log.Warn("page out mapped files", "err", err)
	}
	return true
}

// gcLoop runs value-log GC every GCInterval and pages out the mapped files
// every PageOutInterval, until Close.
func (q *Queue) gcLoop() {
	defer close(q.gcDone)
	stopPageOut := q.pageOutEvery(q.opts.PageOutInterval)
	defer stopPageOut()
	vloggc.Loop(q.db, q.opts.GCInterval, q.gcStop, q.log)
}

// gcRound runs one round of value-log GC (vloggc.Round) until Close.
func (q *Queue) gcRound() int { return vloggc.Round(q.db, q.gcStop, q.log) }

// badgerLogger routes Badger's log to slog, warnings and errors only.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(trimNL(fmt.Sprintf(f, a...))) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(trimNL(fmt.Sprintf(f, a...))) }
func (badgerLogger) Infof(string, ...any)          {}
func (badgerLogger) Debugf(string, ...any)         {}

func trimNL(s string) string {
	for len(s) > 0 && s[len(s)-1] == '\n' {
		s = s[:len(s)-1]
	}
	return s
}
