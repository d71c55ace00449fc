package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// Syncer defaults.
const (
	// DefaultBuffer is the number of received snapshot payloads waiting to
	// be applied; more are dropped (the hub resends unacked batches).
	DefaultBuffer = 64
	// DefaultPublishTimeout bounds the wait for the broker's PUBACK of a
	// snapshot ack.
	DefaultPublishTimeout = 10 * time.Second
	// maxBuffer bounds Buffer.
	maxBuffer = 4096
)

// ErrConfig is returned by NewSyncer for an invalid SyncerConfig; the
// message names the field.
var ErrConfig = errors.New("invalid syncer config")

// PublishFunc publishes payload on topic and waits up to timeout for the
// broker's PUBACK, such as (*uplink.Forwarder).Publish.
type PublishFunc func(topic string, payload []byte, timeout time.Duration) error

// SyncerConfig configures a Syncer. Zero fields take the documented
// defaults.
type SyncerConfig struct {
	// Tenant and EdgeID name this edge in topics. Required.
	Tenant string
	EdgeID string
	// Publish sends acks to the hub. Required.
	Publish PublishFunc
	// Buffer bounds the payloads waiting to be applied. Default
	// DefaultBuffer, at most 4096.
	Buffer int
	// PublishTimeout bounds one ack publish. Default DefaultPublishTimeout.
	PublishTimeout time.Duration
	// Limits bound decoding of snapshot payloads; zero fields take the
	// protocol defaults.
	Limits protocol.Limits
	// Now stamps acks. Default time.Now.
	Now func() time.Time
}

// SyncerStats counts the syncer's work since start.
type SyncerStats struct {
	Received   uint64 // payloads received
	Dropped    uint64 // payloads dropped because the buffer was full
	AcksSent   uint64 // acks published (including resume acks)
	AckErrors  uint64 // acks that could not be published
	LastAckSeq uint64 // seq of the last published ack
}

// Syncer applies snapshot batches received from the hub to a Cache and
// acknowledges them. Handle receives payloads (from an MQTT subscription
// handler) without blocking; Run decodes, applies and acks them in order;
// Connected asks Run to announce the resume point after a (re)connect.
type Syncer struct {
	cfg    SyncerConfig
	c      *Cache
	log    *slog.Logger
	topic  string
	ackTop string
	in     chan []byte
	resume chan struct{}

	received, dropped, acks, ackErrs, lastAck atomic.Uint64
}

// NewSyncer returns a Syncer applying to c.
func NewSyncer(c *Cache, cfg SyncerConfig, logger *slog.Logger) (*Syncer, error) {
	if c == nil {
		return nil, fmt.Errorf("%w: cache: required", ErrConfig)
	}
	if !protocol.ValidName(cfg.Tenant) {
		return nil, fmt.Errorf("%w: Tenant: %q must be 1-64 characters of [A-Za-z0-9._-]", ErrConfig, cfg.Tenant)
	}
	if !protocol.ValidName(cfg.EdgeID) {
		return nil, fmt.Errorf("%w: EdgeID: %q must be 1-64 characters of [A-Za-z0-9._-]", ErrConfig, cfg.EdgeID)
	}
	if cfg.Publish == nil {
		return nil, fmt.Errorf("%w: Publish: required", ErrConfig)
	}
	switch {
	case cfg.Buffer == 0:
		cfg.Buffer = DefaultBuffer
	case cfg.Buffer < 0 || cfg.Buffer > maxBuffer:
		return nil, fmt.Errorf("%w: Buffer: %d out of range 1..%d", ErrConfig, cfg.Buffer, maxBuffer)
	}
	switch {
	case cfg.PublishTimeout == 0:
		cfg.PublishTimeout = DefaultPublishTimeout
	case cfg.PublishTimeout < 0:
		return nil, fmt.Errorf("%w: PublishTimeout: negative duration %s", ErrConfig, cfg.PublishTimeout)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Syncer{
		cfg:    cfg,
		c:      c,
		log:    logger.With("component", "snapshot-sync"),
		topic:  protocol.SnapshotTopic(cfg.Tenant, cfg.EdgeID),
		ackTop: protocol.SnapshotAckTopic(cfg.Tenant, cfg.EdgeID),
		in:     make(chan []byte, cfg.Buffer),
		resume: make(chan struct{}, 1),
	}, nil
}

// Topic is the snapshot topic to subscribe Handle to.
func (s *Syncer) Topic() string { return s.topic }

// Handle queues a received snapshot payload for Run. It never blocks: when
// the buffer is full the payload is dropped and counted, and the hub resends
// it because it stays unacked. payload must not be modified afterwards.
func (s *Syncer) Handle(payload []byte) {
	s.received.Add(1)
	select {
	case s.in <- payload:
	default:
		s.dropped.Add(1)
		s.c.ignore(ReasonOverflow)
	}
}

// Connected asks Run to publish a resume ack (the applied seq) on the new
// connection. It never blocks.
func (s *Syncer) Connected() {
	select {
	case s.resume <- struct{}{}:
	default:
	}
}

// Stats returns the syncer's counters.
func (s *Syncer) Stats() SyncerStats {
	return SyncerStats{
		Received: s.received.Load(), Dropped: s.dropped.Load(),
		AcksSent: s.acks.Load(), AckErrors: s.ackErrs.Load(), LastAckSeq: s.lastAck.Load(),
	}
}

// Run applies and acks snapshot batches until ctx is cancelled. It returns
// nil on cancellation; an error applying a batch to Badger is logged and the
// batch left unacked for the hub to resend.
func (s *Syncer) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.resume:
			s.ack("resume")
		case p := <-s.in:
			s.process(p)
		}
	}
}

// process decodes, applies and acks one payload.
func (s *Syncer) process(payload []byte) {
	var b protocol.SnapshotBatch
	if err := protocol.Unmarshal(payload, &b, s.cfg.Limits); err != nil {
		s.c.ignore(ReasonDecode)
		s.log.Warn("snapshot batch ignored: undecodable", "err", err, "bytes", len(payload))
		return
	}
	if b.EdgeID != "" && b.EdgeID != s.cfg.EdgeID {
		s.c.ignore(ReasonDecode)
		s.log.Warn("snapshot batch ignored: for another edge", "batch_edge", b.EdgeID, "seq", b.Seq)
		return
	}
	applied, err := s.c.Apply(&b)
	if err != nil {
		s.log.Error("apply snapshot batch", "seq", b.Seq, "err", err)
		return
	}
	if applied {
		s.log.Debug("snapshot batch applied", "seq", b.Seq, "profiles", len(b.Profiles), "full_sync", b.FullSync)
		s.ack("applied")
		return
	}
	if b.Seq <= s.c.Applied() {
		// A duplicate: the hub missed our ack.
		s.ack("duplicate")
	}
	// A gap: ignored; the hub resends from its last acked seq.
}

// ack publishes the applied seq on the snapack topic.
func (s *Syncer) ack(why string) {
	seq := s.c.Applied()
	status := protocol.AckOK
	if why == "resume" {
		status = protocol.AckResume
	}
	b, err := protocol.Marshal(&protocol.Ack{
		EdgeID: s.cfg.EdgeID, FirstSeq: seq, LastSeq: seq, Status: status, AckedAt: s.cfg.Now().UTC(),
	})
	if err == nil {
		err = s.cfg.Publish(s.ackTop, b, s.cfg.PublishTimeout)
	}
	if err != nil {
		s.ackErrs.Add(1)
		s.log.Debug("snapshot ack not sent", "why", why, "seq", seq, "err", err)
		return
	}
	s.acks.Add(1)
	s.lastAck.Store(seq)
}
