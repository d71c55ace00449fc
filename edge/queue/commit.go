package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/skl"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/unico-cdp/unico/protocol"
)

const (
	// maxGroupEvents bounds the events of one group commit.
	maxGroupEvents = 16384
	// removeChunk bounds the deletions of one Badger transaction in Ack.
	removeChunk = 8192
)

// appendReq is one Append call waiting for the committer.
type appendReq struct {
	vals    [][]byte // encoded values, one per event
	chans   []string // channel per event
	size    int64    // stored bytes: keys + values
	at      time.Time
	allDrop bool   // every channel has OverflowDropOldest
	first   uint64 // seq of vals[0], set by the committer
	done    chan error
	buf     *bytes.Buffer // backs vals; recycled once done has been received
}

// valueBufs recycles the value buffers of finished appends.
var valueBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (q *Queue) newAppendReq(events []protocol.Event) (*appendReq, error) {
	// Every value (header, then the event in msgpack) is encoded straight
	// into one pooled buffer: no per-event buffer growth and no copy. The
	// encoding is protocol.MarshalEvent's (msgpack.Marshal with a default
	// encoder); TestValueEncodingMatchesMarshalEvent keeps them equal.
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	return q.buildAppendReq(len(events),
		func(i int) string { return events[i].Channel },
		func(i int, buf *bytes.Buffer) error {
			enc.Reset(buf)
			if err := enc.Encode(&events[i]); err != nil {
				return fmt.Errorf("append: event %d: encode event: %w", i, err)
			}
			return nil
		})
}

// newEncodedAppendReq is newAppendReq for events already encoded.
func (q *Queue) newEncodedAppendReq(events []protocol.EncodedEvent) (*appendReq, error) {
	return q.buildAppendReq(len(events),
		func(i int) string { return events[i].Channel },
		func(i int, buf *bytes.Buffer) error {
			buf.Write(events[i].Data)
			return nil
		})
}

// buildAppendReq builds the request for n events in one pooled buffer:
// for event i, the value header with channel(i), then what writeData
// writes (the event's msgpack).
func (q *Queue) buildAppendReq(n int, channel func(i int) string, writeData func(i int, buf *bytes.Buffer) error) (*appendReq, error) {
	r := &appendReq{
		vals:    make([][]byte, n),
		chans:   make([]string, n),
		at:      q.opts.Now(),
		allDrop: true,
		done:    make(chan error, 1),
	}
	buf := valueBufs.Get().(*bytes.Buffer)
	buf.Reset()
	ends := make([]int, n)
	var hdr [headerLen + 255]byte
	for i := range n {
		ch := channel(i)
		if len(ch) > 255 {
			valueBufs.Put(buf)
			return nil, fmt.Errorf("append: event %d: channel name of %d bytes: %w", i, len(ch), ErrTooLarge)
		}
		buf.Write(appendValue(hdr[:0], r.at, ch, nil))
		start := buf.Len()
		if err := writeData(i, buf); err != nil {
			valueBufs.Put(buf)
			return nil, err
		}
		if dn := buf.Len() - start; dn > MaxEventBytes {
			valueBufs.Put(buf)
			return nil, fmt.Errorf("append: event %d: %d bytes, limit %d: %w", i, dn, MaxEventBytes, ErrTooLarge)
		}
		ends[i] = buf.Len()
		r.chans[i] = ch
		if q.opts.Overflow[ch] != OverflowDropOldest {
			r.allDrop = false
		}
	}
	b := buf.Bytes()
	off := 0
	for i, end := range ends {
		r.vals[i] = b[off:end:end]
		r.size += storedSize(end - off)
		off = end
	}
	r.buf = buf
	return r, nil
}

// AppendEncoded is Append for events already encoded as
// protocol.MarshalEvent encodes them, such as those of
// protocol.Mapper.DecodeEncoded: it stores each event's Data as it is,
// under its Channel (which the overflow policy and the per-channel counts
// use). It does not check that Data decodes; the caller vouches for it.
// Data is copied before AppendEncoded returns.
func (q *Queue) AppendEncoded(ctx context.Context, events []protocol.EncodedEvent) error {
	if len(events) == 0 {
		return nil
	}
	if err := q.begin(); err != nil {
		return err
	}
	defer q.inflight.Done()
	r, err := q.newEncodedAppendReq(events)
	if err != nil {
		return err
	}
	select {
	case q.reqs <- r:
	case <-ctx.Done():
		r.release()
		return fmt.Errorf("append: %w", ctx.Err())
	}
	// The committer is done with r once it has sent the result.
	err = <-r.done
	r.release()
	return err
}

// release recycles r's value buffer; r.vals must not be used afterwards.
func (r *appendReq) release() {
	if r.buf != nil && r.buf.Cap() <= 4<<20 {
		valueBufs.Put(r.buf)
	}
	r.buf, r.vals = nil, nil
}

func (q *Queue) commitLoop() {
	defer close(q.committerDone)
	var group []*appendReq
	for r := range q.reqs {
		group = append(group[:0], r)
		n := len(r.vals)
	drain:
		for n < maxGroupEvents {
			select {
			case r, ok := <-q.reqs:
				if !ok {
					break drain
				}
				group = append(group, r)
				n += len(r.vals)
			default:
				break drain
			}
		}
		q.commitGroup(group)
		clear(group)
	}
}

// commitGroup stores the requests that fit the quota in one synced commit
// and then handles those that need the drop policy, one at a time.
func (q *Queue) commitGroup(group []*appendReq) {
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	q.mu.Lock()
	next, head, used := q.nextSeq, q.head, q.bytes+q.qbytes
	q.mu.Unlock()
	quota := q.opts.QuotaBytes
	ok := make([]*appendReq, 0, len(group))
	var overflow []*appendReq
	for _, r := range group {
		switch {
		case used+r.size <= quota:
			ok = append(ok, r)
			used += r.size
		case r.allDrop && r.size <= quota:
			overflow = append(overflow, r)
		default:
			r.done <- fmt.Errorf("append %d events of %d bytes, %d of %d bytes used: %w",
				len(r.vals), r.size, used, quota, ErrFull)
		}
	}
	if len(ok) > 0 {
		w := q.newWriter(meta{next: next, head: head})
		planned, err := q.writeEvents(w, ok, next)
		if err == nil {
			err = w.finish()
		} else {
			w.discard()
		}
		q.applyAppend(ok, w.durable.next, planned)
		var n int64
		for _, r := range ok {
			n += r.size
		}
		q.touch(n)
		for _, r := range ok {
			if err != nil && r.first+uint64(len(r.vals)) > w.durable.next {
				r.done <- fmt.Errorf("append: %w", err)
			} else {
				r.done <- nil
			}
		}
		if err != nil {
			q.log.Error("group commit failed", "events", planned-next, "err", err)
		}
	}
	for _, r := range overflow {
		r.done <- q.appendWithDrop(r)
	}
}

// writeEvents assigns seqs from next on and adds the events to w. It returns
// the next seq after them.
func (q *Queue) writeEvents(w *writer, reqs []*appendReq, next uint64) (uint64, error) {
	n := 0
	for _, r := range reqs {
		n += len(r.vals)
	}
	keys := make([]byte, 0, n*keyLen)
	seq := next
	for _, r := range reqs {
		r.first = seq
		for _, v := range r.vals {
			off := len(keys)
			keys = eventKey(keys, seq)
			if err := w.set(keys[off:], v, seq+1); err != nil {
				return next + uint64(n), err
			}
			seq++
		}
	}
	return seq, nil
}

// applyAppend publishes the events of reqs with seq < durableNext and moves
// nextSeq to planned (seqs of a failed commit are never reused).
func (q *Queue) applyAppend(reqs []*appendReq, durableNext, planned uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, r := range reqs {
		for i, v := range r.vals {
			seq := r.first + uint64(i)
			if seq >= durableNext {
				break
			}
			if q.depth == 0 {
				q.head = seq
				q.oldest = r.at
			}
			q.depth++
			q.bytes += storedSize(len(v))
			q.appended++
			if idx := q.chans[r.chans[i]]; idx != nil {
				idx.add(seq)
			}
		}
	}
	q.nextSeq = max(q.nextSeq, planned)
	if q.depth == 0 {
		q.head = q.nextSeq
	}
	q.commits++
	close(q.notify)
	q.notify = make(chan struct{})
}

type victim struct {
	seq  uint64
	size int64
	ch   string
}

// appendWithDrop stores r after deleting the oldest queued events of r's
// channels, in one commit, or returns ErrFull if they do not free enough.
// The caller holds writeMu.
func (q *Queue) appendWithDrop(r *appendReq) error {
	type chSpan struct {
		ch string
		span
	}
	q.mu.Lock()
	next, head, used := q.nextSeq, q.head, q.bytes+q.qbytes
	need := used + r.size - q.opts.QuotaBytes
	var spans []chSpan
	seen := map[string]bool{}
	for _, ch := range r.chans {
		if seen[ch] {
			continue
		}
		seen[ch] = true
		if idx := q.chans[ch]; idx != nil {
			for _, s := range idx.spans {
				spans = append(spans, chSpan{ch, s})
			}
		}
	}
	q.mu.Unlock()
	if need <= 0 { // acks made room meanwhile
		need = 0
	}
	slices.SortFunc(spans, func(a, b chSpan) int { return cmpUint(a.first, b.first) })

	txn := q.db.NewTransaction(false)
	defer txn.Discard()
	var victims []victim
	var freed int64
	if need > 0 {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixEvent}})
		var kb [keyLen]byte
	walk:
		for _, s := range spans {
			for it.Seek(eventKey(kb[:0], s.first)); it.Valid(); it.Next() {
				item := it.Item()
				seq, ok := keySeq(item.Key())
				if !ok || seq > s.last {
					break
				}
				size := item.KeySize() + item.ValueSize()
				victims = append(victims, victim{seq, size, s.ch})
				freed += size
				if freed >= need {
					break walk
				}
			}
		}
		it.Close()
		if freed < need {
			return fmt.Errorf("append %d events of %d bytes: dropping oldest frees only %d of %d bytes: %w",
				len(r.vals), r.size, freed, need, ErrFull)
		}
	}

	newHead, newOldest := head, time.Time{}
	if len(victims) > 0 && victims[0].seq == head {
		var err error
		newHead, newOldest, err = q.firstNotIn(txn, head, victims, next)
		if err != nil {
			return fmt.Errorf("append: %w", err)
		}
		if newHead == next {
			newOldest = r.at
		}
	}
	w := q.newWriter(meta{next: next, head: newHead})
	var kb []byte
	for _, v := range victims {
		kb = eventKey(kb[:0], v.seq)
		if err := w.del(slices.Clone(kb)); err != nil {
			w.discard()
			return fmt.Errorf("append: %w", err)
		}
	}
	planned, err := q.writeEvents(w, []*appendReq{r}, next)
	if err == nil {
		err = w.finish()
	} else {
		w.discard()
	}
	if err != nil {
		// Deletions and appends share the first transaction; unless it
		// committed, nothing changed.
		if w.durable.next == next {
			q.mu.Lock()
			q.nextSeq = max(q.nextSeq, planned)
			q.mu.Unlock()
			return fmt.Errorf("append: %w", err)
		}
	}

	perChan := map[string]uint64{}
	q.mu.Lock()
	for _, v := range victims {
		q.depth--
		q.bytes -= v.size
		q.dropped[v.ch]++
		perChan[v.ch]++
		q.chans[v.ch].subtract(v.seq, v.seq)
	}
	if len(victims) > 0 {
		q.head = newHead
		if q.depth > 0 {
			q.oldest = newOldest
		} else {
			q.oldest = time.Time{}
		}
	}
	q.mu.Unlock()
	q.applyAppend([]*appendReq{r}, w.durable.next, planned)
	for ch, n := range perChan {
		q.log.Warn("quota reached, dropped oldest events", "channel", ch, "events", n, "bytes_needed", need)
	}
	if err != nil {
		return fmt.Errorf("append: %w", err)
	}
	return nil
}

// storedSize is the size the queue counts for a record whose value is n
// bytes: its key plus what Badger's Item.ValueSize reports for the value,
// so that appends (which know n) and acks, drops and recovery (which read
// only keys and Item.ValueSize) agree to the byte. For a value in the value
// log Item.ValueSize is the log entry's length less the key, its 8-byte
// version, an assumed 6-byte header and the 4-byte checksum; the real
// header is 2 bytes and varints of the key length with version, of n and
// of the expiry (0).
func storedSize(n int) int64 {
	if n < valueThreshold {
		return int64(keyLen + n)
	}
	h := 2 + uvarintLen(keyLen+8) + uvarintLen(n) + 1
	return int64(keyLen + n + h - 6)
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// firstNotIn returns the lowest queued seq >= from that is not among the
// sorted victims, with its received-at, or next when there is none.
func (q *Queue) firstNotIn(txn *badger.Txn, from uint64, victims []victim, next uint64) (uint64, time.Time, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixEvent}})
	defer it.Close()
	var kb [keyLen]byte
	vi := 0
	for it.Seek(eventKey(kb[:0], from)); it.Valid(); it.Next() {
		seq, ok := keySeq(it.Item().Key())
		if !ok {
			continue
		}
		for vi < len(victims) && victims[vi].seq < seq {
			vi++
		}
		if vi < len(victims) && victims[vi].seq == seq {
			continue
		}
		at, err := itemReceivedAt(it.Item())
		return seq, at, err
	}
	return next, time.Time{}, nil
}

func itemReceivedAt(item *badger.Item) (time.Time, error) {
	var at time.Time
	err := item.Value(func(v []byte) error {
		if len(v) >= headerLen && v[0] == valueVersion {
			at, _, _, _ = decodeValue(v)
		}
		return nil
	})
	return at, err
}

type removeKind int

const (
	removeAck removeKind = iota
	removeCorrupt
)

// remove deletes the queued records first..last durably, in chunks of at
// most removeChunk records per commit.
func (q *Queue) remove(first, last uint64, kind removeKind) error {
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	for {
		q.mu.Lock()
		head, next := q.head, q.nextSeq
		q.mu.Unlock()
		start := max(first, head)
		if start > last || start >= next {
			return nil
		}
		seqs, freed, newHead, newOldest, err := q.collect(start, last, head, next)
		if err != nil || len(seqs) == 0 {
			return err
		}
		w := q.newWriter(meta{next: next, head: newHead})
		var kb []byte
		for _, seq := range seqs {
			kb = eventKey(kb[:0], seq)
			if err := w.del(slices.Clone(kb)); err != nil {
				w.discard()
				return err
			}
		}
		if err := w.finish(); err != nil {
			return err
		}
		end := seqs[len(seqs)-1]
		q.mu.Lock()
		n := int64(len(seqs))
		q.depth -= n
		q.bytes -= freed
		if kind == removeAck {
			q.acked += uint64(n)
		} else {
			q.corrupt += uint64(n)
		}
		q.removedLocked(start, end, head, newHead, newOldest)
		q.mu.Unlock()
		if len(seqs) < removeChunk || end >= last {
			return nil
		}
		first = end + 1
	}
}

// removedLocked brings the channel indexes, head and oldest received-at up
// to date after the queued records first..last were deleted and depth
// counted down; newHead and newOldest are collect's (head is the head the
// deletion started from). q.mu must be held.
func (q *Queue) removedLocked(first, last, head, newHead uint64, newOldest time.Time) {
	for _, idx := range q.chans {
		idx.subtract(first, last)
	}
	if newHead != head {
		q.head = newHead
		q.oldest = newOldest
	}
	if q.depth == 0 {
		q.head = q.nextSeq
		q.oldest = time.Time{}
	}
}

// collect lists up to removeChunk queued seqs in start..last with their
// total size, and the head and oldest received-at after deleting them.
func (q *Queue) collect(start, last, head, next uint64) (seqs []uint64, freed int64, newHead uint64, newOldest time.Time, err error) {
	txn := q.db.NewTransaction(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixEvent}})
	defer it.Close()
	var kb [keyLen]byte
	for it.Seek(eventKey(kb[:0], start)); it.Valid() && len(seqs) < removeChunk; it.Next() {
		item := it.Item()
		seq, ok := keySeq(item.Key())
		if !ok || seq > last {
			break
		}
		seqs = append(seqs, seq)
		freed += item.KeySize() + item.ValueSize()
	}
	newHead = head
	if len(seqs) == 0 || seqs[0] != head {
		return seqs, freed, newHead, newOldest, nil
	}
	newHead = next
	for it.Seek(eventKey(kb[:0], seqs[len(seqs)-1]+1)); it.Valid(); it.Next() {
		seq, ok := keySeq(it.Item().Key())
		if !ok {
			continue
		}
		newHead = seq
		newOldest, err = itemReceivedAt(it.Item())
		break
	}
	return seqs, freed, newHead, newOldest, err
}

// writer adds sets and deletes to Badger transactions, committing when
// Badger's transaction size limit is near. Every commit also writes the meta
// key. durable is the meta of the last commit that succeeded.
type writer struct {
	q                 *Queue
	txn               *badger.Txn
	size, count       int64
	vlog              int64 // value bytes bound for the value log
	maxSize, maxCount int64
	m, durable        meta
	dirty             bool
}

func (q *Queue) newWriter(m meta) *writer {
	// Badger's limits (db.go): maxBatchSize = 15% of MemTableSize,
	// maxBatchCount = maxBatchSize / skl.MaxNodeSize; keep room for meta.
	maxSize := 15*q.db.Opts().MemTableSize/100 - 1024
	return &writer{
		q:        q,
		txn:      q.db.NewTransaction(true),
		maxSize:  maxSize,
		maxCount: (maxSize+1024)/int64(skl.MaxNodeSize) - 4,
		m:        m,
		durable:  m,
	}
}

// entrySize is Badger's estimate of an entry's size in a transaction
// (Entry.estimateSizeAndSetThreshold): a value of valueThreshold bytes or
// more counts as its 12-byte pointer. The 2 bytes of metas are rounded up
// with the version Badger appends to the key. It also returns the bytes
// the entry writes to the value log.
func entrySize(key, val []byte) (est, vlog int64) {
	if len(val) < valueThreshold {
		return int64(len(key) + len(val) + 12), 0
	}
	return int64(len(key) + 12 + 12), int64(len(val))
}

func (w *writer) reserve(est, vlog int64) error {
	if w.count > 0 && (w.size+est > w.maxSize || w.count+1 > w.maxCount || w.vlog+vlog > maxTxnValueBytes) {
		if err := w.commit(); err != nil {
			return err
		}
	}
	w.size += est
	w.vlog += vlog
	w.count++
	return nil
}

// set adds key=val; next is the meta's next seq once it is stored.
func (w *writer) set(key, val []byte, next uint64) error {
	if err := w.reserve(entrySize(key, val)); err != nil {
		return err
	}
	if err := w.txn.Set(key, val); err != nil {
		return err
	}
	w.m.next = max(w.m.next, next)
	return nil
}

// room reports whether est more bytes in n more entries, vlog of them for
// the value log, fit the current transaction without a commit (always true
// for an empty one).
func (w *writer) room(est, vlog, n int64) bool {
	return w.count == 0 || (w.size+est <= w.maxSize && w.count+n <= w.maxCount && w.vlog+vlog <= maxTxnValueBytes)
}

// move deletes delKey and sets setKey=val in the same transaction (it
// commits what is pending first if both do not fit); next is the meta's
// next seq once they are stored.
func (w *writer) move(delKey, setKey, val []byte, next uint64) error {
	est, vlog := entrySize(setKey, val)
	est += int64(len(delKey) + 12)
	if !w.room(est, vlog, 2) {
		if err := w.commit(); err != nil {
			return err
		}
	}
	w.size += est
	w.vlog += vlog
	w.count += 2
	if err := w.txn.Delete(delKey); err != nil {
		return err
	}
	if err := w.txn.Set(setKey, val); err != nil {
		return err
	}
	w.m.next = max(w.m.next, next)
	return nil
}

func (w *writer) del(key []byte) error {
	if err := w.reserve(int64(len(key)+12), 0); err != nil {
		return err
	}
	return w.txn.Delete(key)
}

func (w *writer) commit() error {
	if err := w.txn.Set(metaKey, w.m.encode()); err != nil {
		return err
	}
	err := w.txn.Commit()
	w.txn = w.q.db.NewTransaction(true)
	w.size, w.count, w.vlog = 0, 0, 0
	if err != nil {
		return err
	}
	if w.q.opts.syncExplicit {
		w.dirty = true
	} else {
		w.durable = w.m
	}
	return nil
}

// finish commits what is pending and, without SyncWrites, syncs.
func (w *writer) finish() error {
	// commit replaces w.txn: discard the one current at return. (A
	// deferred w.txn.Discard() would bind the committed transaction and
	// leak the new one's read mark, which pins Badger's discard
	// watermark: compaction then keeps every deleted event for good.)
	defer func() { w.txn.Discard() }()
	if w.count > 0 {
		if err := w.commit(); err != nil {
			return err
		}
	}
	if w.dirty {
		if err := w.q.db.Sync(); err != nil {
			return err
		}
		w.durable = w.m
	}
	return nil
}

func (w *writer) discard() { w.txn.Discard() }

// recover rebuilds the in-memory state from the meta key and a scan of the
// queued keys from the head hint.
func (q *Queue) recover() error {
	txn := q.db.NewTransaction(false)
	defer txn.Discard()
	m := meta{next: 1, head: 1}
	item, err := txn.Get(metaKey)
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
	case err != nil:
		return err
	default:
		if err := item.Value(func(v []byte) error {
			m, err = decodeMeta(v)
			return err
		}); err != nil {
			return err
		}
	}
	q.nextSeq = max(m.next, 1)
	// Depth, bytes and head come from the keys and Item.ValueSize; values
	// are read (from the value log) only until the oldest received-at is
	// known, and for every event only when a channel has a drop policy
	// and so needs its index.
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixEvent}})
	defer it.Close()
	var kb [keyLen]byte
	for it.Seek(eventKey(kb[:0], m.head)); it.Valid(); it.Next() {
		item := it.Item()
		seq, ok := keySeq(item.Key())
		if !ok {
			continue
		}
		var at time.Time
		if q.oldest.IsZero() || len(q.chans) > 0 {
			err := item.Value(func(v []byte) error {
				if len(v) >= headerLen && v[0] == valueVersion && len(v) > headerLen+int(v[9]) {
					at = time.Unix(0, int64(beUint64(v[1:9])))
					if idx := q.chans[string(v[headerLen:headerLen+int(v[9])])]; idx != nil {
						idx.add(seq)
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
		if q.depth == 0 {
			q.head = seq
		}
		if q.oldest.IsZero() {
			q.oldest = at
		}
		q.depth++
		q.bytes += item.KeySize() + item.ValueSize()
		q.nextSeq = max(q.nextSeq, seq+1)
	}
	if q.depth == 0 {
		q.head = q.nextSeq
	}
	return q.recoverQuarantine(txn)
}
