package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
)

// Quarantine layout; see the package documentation.
const (
	prefixQuarantine  byte = 'q'
	quarantineVersion byte = 1
	// quarantineHeaderLen is the fixed part of a quarantine value:
	// version, quarantined-at, received-at, channel length; the channel,
	// the error length (2 bytes) and the error follow.
	quarantineHeaderLen = 1 + 8 + 8 + 1
)

// MaxQuarantineErrorBytes bounds the hub error text kept with a
// quarantined event; longer texts are cut.
const MaxQuarantineErrorBytes = 1024

// Bounds of ListQuarantined.
const (
	// DefaultQuarantineList applies when ListQuarantined gets limit <= 0.
	DefaultQuarantineList = 100
	// MaxQuarantineList is the most records one ListQuarantined returns.
	MaxQuarantineList = 1000
	// maxQuarantineListBytes bounds the event bytes of one list (at least
	// one record is returned).
	maxQuarantineListBytes = 4 << 20
)

// ErrNotQuarantined is returned by RetryQuarantined and DiscardQuarantined
// when no quarantined event has the given seq.
var ErrNotQuarantined = errors.New("no quarantined event with this seq")

// QuarantinedRecord is one quarantined event.
type QuarantinedRecord struct {
	// Seq is the seq the event had in the queue; it names the event in
	// the quarantine.
	Seq           uint64
	ReceivedAt    time.Time
	QuarantinedAt time.Time
	Channel       string
	// HubError is the hub's error text when it refused the event.
	HubError string
	// Data is the event as it was queued (protocol.MarshalEvent's
	// encoding when the agent wrote it).
	Data []byte
}

func quarantineKey(dst []byte, seq uint64) []byte {
	dst = append(dst, prefixQuarantine)
	return binary.BigEndian.AppendUint64(dst, seq)
}

func quarantineKeySeq(k []byte) (uint64, bool) {
	if len(k) != keyLen || k[0] != prefixQuarantine {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func encodeQuarantine(r QuarantinedRecord) []byte {
	hubErr := truncateUTF8(r.HubError, MaxQuarantineErrorBytes)
	b := make([]byte, 0, quarantineHeaderLen+len(r.Channel)+2+len(hubErr)+len(r.Data))
	b = append(b, quarantineVersion)
	b = binary.BigEndian.AppendUint64(b, uint64(r.QuarantinedAt.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(r.ReceivedAt.UnixNano()))
	b = append(b, byte(len(r.Channel)))
	b = append(b, r.Channel...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(hubErr)))
	b = append(b, hubErr...)
	return append(b, r.Data...)
}

// decodeQuarantine decodes a quarantine value; Data aliases v.
func decodeQuarantine(seq uint64, v []byte) (QuarantinedRecord, error) {
	r := QuarantinedRecord{Seq: seq}
	if len(v) < quarantineHeaderLen || v[0] != quarantineVersion {
		return r, fmt.Errorf("quarantined event %d: %w: bad header", seq, errCorrupt)
	}
	r.QuarantinedAt = time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9])))
	r.ReceivedAt = time.Unix(0, int64(binary.BigEndian.Uint64(v[9:17])))
	n := int(v[17])
	rest := v[quarantineHeaderLen:]
	if len(rest) < n+2 {
		return r, fmt.Errorf("quarantined event %d: %w: channel length %d", seq, errCorrupt, n)
	}
	r.Channel = string(rest[:n])
	rest = rest[n:]
	m := int(binary.BigEndian.Uint16(rest))
	rest = rest[2:]
	if len(rest) < m {
		return r, fmt.Errorf("quarantined event %d: %w: error length %d", seq, errCorrupt, m)
	}
	r.HubError = string(rest[:m])
	r.Data = rest[m:]
	return r, nil
}

// Quarantine moves the queued event seq into the quarantine with the hub's
// error text, in one durable transaction: afterwards the event is either
// still queued (on error) or quarantined, never both and never neither. It
// returns false when seq is not queued (already acked, dropped or
// quarantined). Read no longer returns the event; it is not dropped by any
// overflow policy and keeps counting against the quota until
// RetryQuarantined or DiscardQuarantined.
func (q *Queue) Quarantine(seq uint64, hubError string) (bool, error) {
	if err := q.begin(); err != nil {
		return false, err
	}
	defer q.inflight.Done()
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	q.mu.Lock()
	head, next := q.head, q.nextSeq
	q.mu.Unlock()
	if seq < head || seq >= next {
		return false, nil
	}
	var val []byte
	err := q.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(eventKey(nil, seq))
		if err != nil {
			return err
		}
		val, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("quarantine %d: %w", seq, err)
	}
	rec := QuarantinedRecord{Seq: seq, QuarantinedAt: q.opts.Now(), HubError: hubError}
	if at, ch, data, derr := decodeValue(val); derr == nil {
		rec.ReceivedAt, rec.Channel, rec.Data = at, ch, data
	} else {
		// Read deletes undecodable values before anyone could ask for
		// this; keep the raw value rather than lose it.
		rec.Data = val
	}
	seqs, freed, newHead, newOldest, err := q.collect(seq, seq, head, next)
	if err != nil {
		return false, fmt.Errorf("quarantine %d: %w", seq, err)
	}
	if len(seqs) == 0 {
		return false, nil
	}
	qv := encodeQuarantine(rec)
	w := q.newWriter(meta{next: next, head: newHead})
	if err := w.move(eventKey(nil, seq), quarantineKey(nil, seq), qv, next); err != nil {
		w.discard()
		return false, fmt.Errorf("quarantine %d: %w", seq, err)
	}
	if err := w.finish(); err != nil {
		return false, fmt.Errorf("quarantine %d: %w", seq, err)
	}
	q.mu.Lock()
	q.depth--
	q.bytes -= freed
	q.qdepth++
	q.qbytes += storedSize(len(qv))
	q.quarantined++
	q.removedLocked(seq, seq, head, newHead, newOldest)
	q.mu.Unlock()
	return true, nil
}

// ListQuarantined returns quarantined events with Seq >= from in seq order:
// at most limit (<= 0: DefaultQuarantineList; at most MaxQuarantineList)
// and about 4 MiB of event bytes, at least one when any is there. next is
// the from of the following page, 0 when there is none. A record whose
// quarantine header does not decode is returned with its raw value as Data
// and the decoding error as HubError.
func (q *Queue) ListQuarantined(from uint64, limit int) (recs []QuarantinedRecord, next uint64, err error) {
	if err := q.begin(); err != nil {
		return nil, 0, err
	}
	defer q.inflight.Done()
	if limit <= 0 {
		limit = DefaultQuarantineList
	}
	limit = min(limit, MaxQuarantineList)
	size := 0
	err = q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixQuarantine}})
		defer it.Close()
		for it.Seek(quarantineKey(nil, from)); it.Valid(); it.Next() {
			seq, ok := quarantineKeySeq(it.Item().Key())
			if !ok {
				continue
			}
			if len(recs) == limit || (len(recs) > 0 && size >= maxQuarantineListBytes) {
				next = seq
				return nil
			}
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			r, derr := decodeQuarantine(seq, v)
			if derr != nil {
				r = QuarantinedRecord{Seq: seq, HubError: derr.Error(), Data: v}
			}
			size += len(r.Data)
			recs = append(recs, r)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("list quarantine: %w", err)
	}
	return recs, next, nil
}

// RetryQuarantined moves quarantined events back to the tail of the queue
// under new seqs, in their quarantine order, keeping their received-at and
// channel: the one with seq, or all of them when seq is 0. Each event's
// move is atomic (it is in one transaction with others of its chunk), so a
// crash midway leaves every event either queued or quarantined. It returns
// how many events it moved and the first new seq (0 when none). A record
// whose quarantine header does not decode is left in place and logged.
func (q *Queue) RetryQuarantined(seq uint64) (moved int, first uint64, err error) {
	if err := q.begin(); err != nil {
		return 0, 0, err
	}
	defer q.inflight.Done()
	from := seq
	for {
		n, f, more, err := q.retryChunk(from, seq != 0)
		moved += n
		if first == 0 {
			first = f
		}
		if err != nil {
			return moved, first, fmt.Errorf("retry quarantined events: %w", err)
		}
		if seq != 0 && moved == 0 {
			return 0, 0, fmt.Errorf("retry quarantined event %d: %w", seq, ErrNotQuarantined)
		}
		if more == 0 {
			return moved, first, nil
		}
		from = more
	}
}

type requeued struct {
	qsize int64
	val   []byte
	at    time.Time
	ch    string
}

// retryChunk moves the quarantined events from seq from on (only from
// itself when one is set) that fit one transaction. more is the seq to
// continue from, 0 when done.
func (q *Queue) retryChunk(from uint64, one bool) (moved int, first, more uint64, err error) {
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	q.mu.Lock()
	next, head := q.nextSeq, q.head
	q.mu.Unlock()

	w := q.newWriter(meta{next: next, head: head})
	defer w.discard()
	var batch []requeued
	err = q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixQuarantine}})
		defer it.Close()
		for it.Seek(quarantineKey(nil, from)); it.Valid(); it.Next() {
			item := it.Item()
			qseq, ok := quarantineKeySeq(item.Key())
			if !ok {
				continue
			}
			if one && qseq != from {
				return nil
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			r, derr := decodeQuarantine(qseq, v)
			if derr != nil {
				q.log.Error("corrupt quarantined event left in place", "seq", qseq, "err", derr)
				if one {
					return nil
				}
				continue
			}
			val := appendValue(nil, r.ReceivedAt, r.Channel, r.Data)
			est, vlog := entrySize(eventKey(nil, 0), val)
			if !w.room(est+int64(keyLen+12), vlog, 2) {
				more = qseq
				return nil
			}
			newSeq := next + uint64(len(batch))
			if err := w.move(item.KeyCopy(nil), eventKey(nil, newSeq), val, newSeq+1); err != nil {
				return err
			}
			batch = append(batch, requeued{qsize: item.KeySize() + item.ValueSize(), val: val, at: r.ReceivedAt, ch: r.Channel})
			if one {
				return nil
			}
		}
		return nil
	})
	if err != nil || len(batch) == 0 {
		return 0, 0, 0, err
	}
	if err := w.finish(); err != nil {
		return 0, 0, 0, err
	}
	q.mu.Lock()
	for i, r := range batch {
		s := next + uint64(i)
		if q.depth == 0 {
			q.head = s
			q.oldest = r.at
		}
		q.depth++
		q.bytes += storedSize(len(r.val))
		q.qdepth--
		q.qbytes -= r.qsize
		q.requeued++
		if idx := q.chans[r.ch]; idx != nil {
			idx.add(s)
		}
	}
	q.nextSeq = next + uint64(len(batch))
	close(q.notify)
	q.notify = make(chan struct{})
	q.mu.Unlock()
	q.log.Info("quarantined events moved back to the queue", "events", len(batch), "first_seq", next)
	return len(batch), next, more, nil
}

// DiscardQuarantined deletes the quarantined event seq for good. It returns
// ErrNotQuarantined when there is none.
func (q *Queue) DiscardQuarantined(seq uint64) error {
	if err := q.begin(); err != nil {
		return err
	}
	defer q.inflight.Done()
	q.writeMu.Lock()
	defer q.writeMu.Unlock()
	key := quarantineKey(nil, seq)
	var size int64
	err := q.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if err != nil {
			return err
		}
		size = item.KeySize() + item.ValueSize()
		return nil
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return fmt.Errorf("discard quarantined event %d: %w", seq, ErrNotQuarantined)
	}
	if err != nil {
		return fmt.Errorf("discard quarantined event %d: %w", seq, err)
	}
	q.mu.Lock()
	next, head := q.nextSeq, q.head
	q.mu.Unlock()
	w := q.newWriter(meta{next: next, head: head})
	if err := w.del(key); err != nil {
		w.discard()
		return fmt.Errorf("discard quarantined event %d: %w", seq, err)
	}
	if err := w.finish(); err != nil {
		return fmt.Errorf("discard quarantined event %d: %w", seq, err)
	}
	q.mu.Lock()
	q.qdepth--
	q.qbytes -= size
	q.discarded++
	q.mu.Unlock()
	q.log.Warn("quarantined event discarded", "seq", seq)
	return nil
}

// recoverQuarantine counts the quarantined events and their bytes.
func (q *Queue) recoverQuarantine(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixQuarantine}})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		item := it.Item()
		if _, ok := quarantineKeySeq(item.Key()); !ok {
			continue
		}
		q.qdepth++
		q.qbytes += item.KeySize() + item.ValueSize()
	}
	if q.qdepth > 0 {
		q.log.Warn("queue has quarantined events", "events", q.qdepth, "bytes", q.qbytes)
	}
	return nil
}
