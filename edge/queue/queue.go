// Package queue is the edge agent's durable event queue on Badger: appends
// are fsynced with group commit before they return, events are read in
// sequence order, and deleted only when the hub has acknowledged them.
package queue

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// ErrFull is returned by Append when the disk quota would be exceeded and
// the events' channels have no overflow policy that frees room.
var ErrFull = errors.New("queue full")

// ErrClosed is returned by calls on a closed queue.
var ErrClosed = errors.New("queue closed")

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
	// QuotaBytes bounds the stored bytes of queued events. Default 1 GiB.
	QuotaBytes int64
	// Overflow maps a channel ("iot", …) to its policy; unlisted channels
	// use OverflowReject.
	Overflow map[string]OverflowPolicy
	// GCInterval is how often value-log GC runs. Default 1 minute.
	GCInterval time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
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
}

// Queue is a durable FIFO of events. All methods are safe for concurrent use.
type Queue struct{}

// Open opens or creates the queue in opts.Dir and recovers its state.
func Open(opts Options) (*Queue, error) { panic("todo") }

// Append stores events durably (fsynced) and assigns each a sequence number,
// in order. It returns only after the fsync. Many concurrent callers share
// one fsync (group commit). It returns ErrFull when the quota is reached, in
// which case none of the events is stored.
func (q *Queue) Append(ctx context.Context, events []protocol.Event) error { panic("todo") }

// Read returns queued records with Seq >= from, in order, at most maxEvents
// of them and at most about maxBytes of Data (at least one record when any
// is queued).
func (q *Queue) Read(from uint64, maxEvents, maxBytes int) ([]Record, error) { panic("todo") }

// Wait blocks until a record with Seq >= seq is queued or ctx is done.
func (q *Queue) Wait(ctx context.Context, seq uint64) error { panic("todo") }

// Ack deletes the records with first <= Seq <= last, durably.
func (q *Queue) Ack(first, last uint64) error { panic("todo") }

// Stats returns the current statistics.
func (q *Queue) Stats() Stats { panic("todo") }

// Close finishes in-flight appends and closes Badger cleanly.
func (q *Queue) Close() error { panic("todo") }
