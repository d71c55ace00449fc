// Package snapshot keeps the edges' profile caches in step with the hub:
// for each edge it decides which profiles the edge should hold (Config.Scope),
// queues every change of those profiles in a durable per-edge outbox, and
// delivers compact profile snapshots over MQTT in batches with a per-edge
// sequence, acked by the edge. An edge that was offline resumes from its
// last acked sequence out of the hub's own store (never a broker queue); a
// new or wiped edge gets a full sync streamed in pages; profiles that leave
// an edge's set, are merged away or erased reach the edge as tombstones.
//
// One goroutine (Run) owns all state; HandleAck and Notify only hand work
// to it.
package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/protocol"
)

// ErrRunning is returned by Run when the manager already runs.
var ErrRunning = errors.New("snapshot: already running")

// Publisher sends a payload with QoS 1 and waits for the PUBACK.
// (*intake.Intake) implements it.
type Publisher interface {
	Publish(topic string, payload []byte, timeout time.Duration) error
}

// Subscriber adds a subscription made on every connection.
// (*intake.Intake) implements it.
type Subscriber interface {
	Subscribe(filter string, handler func(topic string, payload []byte))
}

// Source is what the manager reads from the profile store. (*store.Store)
// implements it.
type Source interface {
	Changes(limit int) ([]store.Change, error)
	ClearChanges([]store.Change) error
	Profile(id string) (*store.View, error)
	Profiles(cursor string, limit int) ([]*store.View, store.Page, error)
}

// EdgeSync is the snapshot delivery status of one edge.
type EdgeSync struct {
	Tenant string `json:"tenant"`
	Edge   string `json:"edge"`
	// AckedSeq is the highest snapshot batch the edge has applied.
	AckedSeq uint64 `json:"acked_seq"`
	// NextSeq is the seq the next new batch gets.
	NextSeq uint64 `json:"next_seq"`
	// Inflight is the number of sent, unacked batches.
	Inflight int `json:"inflight"`
	// Outbox is the number of queued profile entries (sent or not, not
	// yet acked).
	Outbox int64 `json:"outbox"`
	// Lag is the age of the oldest unacked change (or of the running full
	// sync); zero when the edge is up to date.
	Lag time.Duration `json:"lag_ns"`
	// LastAckAt is when the edge last acked or resumed.
	LastAckAt time.Time `json:"last_ack_at"`
	// FullSync is true while a full sync is being streamed.
	FullSync bool `json:"full_sync"`
}

type ackMsg struct {
	tenant, edge string
	seq          uint64
	resume       bool // sent on the edge's (re)connect
}

// Manager delivers profile snapshots to edges.
type Manager struct {
	cfg  Config
	src  Source
	pub  Publisher
	log  *slog.Logger
	db   *badger.DB
	hash map[string]bool

	acks    chan ackMsg
	wake    chan struct{}
	running atomic.Bool
	closed  atomic.Bool
	status  atomic.Pointer[[]EdgeSync]

	// Owned by Run (and New).
	edges map[string]*edge     // by tenant/edge
	built map[string]builtSnap // recent snapshots by profile id, shared by all edges (Run's goroutine only)
	// members caches the edges holding a profile, as read from or
	// written to its member key (Run's goroutine only; see members.go).
	members map[string][]uint32
	// indexed counts the entries of the edges' index mirrors (index.go).
	indexed  int
	byNum    map[uint32]*edge
	byEdgeID map[string][]*edge
	byRegion map[string][]*edge
	nextNum  uint32

	lag       *prometheus.GaugeVec
	outbox    *prometheus.GaugeVec
	sent      prometheus.Counter
	fullSyncs prometheus.Counter
	dropped   prometheus.Counter
}

// New opens the manager's Badger directory and loads the edges' state.
// src is the profile store, pub the hub's MQTT connection. Call Run to
// deliver, and Close when done.
func New(cfg Config, src Source, pub Publisher, logger *slog.Logger) (*Manager, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if src == nil || pub == nil {
		return nil, fmt.Errorf("%w: source and publisher are required", ErrInvalidConfig)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "snapshot")
	db, err := badger.Open(badgerOptions(cfg.Dir, logger))
	if err != nil {
		return nil, fmt.Errorf("open snapshot store %s: %w", cfg.Dir, err)
	}
	m := &Manager{
		cfg: cfg, src: src, pub: pub, log: logger, db: db,
		hash: map[string]bool{},
		acks: make(chan ackMsg, 4096),
		wake: make(chan struct{}, 1),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "unico_hub_snapshot_lag_seconds",
			Help: "Age of the oldest change not yet acked by the edge (tenant/edge).",
		}, []string{"edge"}),
		outbox: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "unico_hub_snapshot_outbox",
			Help: "Profile entries queued for the edge and not yet acked.",
		}, []string{"edge"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unico_hub_snapshots_sent_total",
			Help: "Profile snapshots published to edges, resends included.",
		}),
		fullSyncs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unico_hub_snapshot_full_syncs_total",
			Help: "Full syncs started (new or wiped edges).",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unico_hub_snapshot_acks_dropped_total",
			Help: "Snapshot acks dropped (bad payload, full queue or too many edges).",
		}),
	}
	for _, t := range cfg.HashTypes {
		m.hash[t] = true
	}
	if err := m.load(); err != nil {
		db.Close()
		return nil, err
	}
	m.publishStatus(cfg.Now())
	return m, nil
}

// Collectors returns the manager's Prometheus collectors.
func (m *Manager) Collectors() []prometheus.Collector {
	return []prometheus.Collector{m.lag, m.outbox, m.sent, m.fullSyncs, m.dropped}
}

// Subscribe registers HandleAck for every edge's snapshot acks on sub.
// Call it before sub runs. The subscription is not shared: one manager
// serves all edges.
func (m *Manager) Subscribe(sub Subscriber) {
	sub.Subscribe(protocol.HubSnapAckFilter(false), m.HandleAck)
}

// Notify wakes the manager to read the store's change marks now; call it
// after each commit. It never blocks.
func (m *Manager) Notify() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// HandleAck takes one snapshot ack (or resume message) from an edge. It
// returns at once; the work happens in Run.
func (m *Manager) HandleAck(topic string, payload []byte) {
	tenant, edgeID, leaf, err := protocol.ParseTopic(topic)
	if err != nil || leaf != "snapack" {
		m.dropped.Inc()
		return
	}
	var a protocol.Ack
	if err := protocol.Unmarshal(payload, &a, protocol.Limits{MaxPayload: 64 << 10}); err != nil {
		m.dropped.Inc()
		m.log.Warn("bad snapshot ack", "tenant", tenant, "edge", edgeID, "err", err)
		return
	}
	if a.Status != protocol.AckOK && a.Status != protocol.AckResume {
		m.dropped.Inc()
		return
	}
	select {
	case m.acks <- ackMsg{tenant: tenant, edge: edgeID, seq: a.LastSeq, resume: a.Status == protocol.AckResume}:
	default:
		// The edge acks again after its next batch and on reconnect;
		// unacked batches are resent after AckTimeout.
		m.dropped.Inc()
	}
}

// Edges returns the delivery status of every known edge, sorted.
func (m *Manager) Edges() []EdgeSync {
	p := m.status.Load()
	if p == nil {
		return nil
	}
	return slices.Clone(*p)
}

// Close closes the manager's Badger directory. Call it after Run returned.
func (m *Manager) Close() error {
	if !m.closed.CompareAndSwap(false, true) {
		return nil
	}
	return m.db.Close()
}

// Run delivers snapshots until ctx is cancelled; it returns nil then.
func (m *Manager) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer m.running.Store(false)
	tick := time.NewTicker(m.cfg.PollInterval)
	defer tick.Stop()
	for {
		m.drainAcks()
		for range 16 {
			n, err := m.processChanges()
			if err != nil {
				if ctx.Err() == nil {
					m.log.Error("process changes", "err", err)
				}
				break
			}
			m.drainAcks()
			if n < m.cfg.ChangesPerRound {
				break
			}
		}
		m.pumpAll(ctx)
		m.publishStatus(m.cfg.Now())
		select {
		case <-ctx.Done():
			return nil
		case a := <-m.acks:
			m.onAck(a)
		case <-m.wake:
		case <-tick.C:
		}
	}
}

func (m *Manager) drainAcks() {
	for range cap(m.acks) {
		select {
		case a := <-m.acks:
			m.onAck(a)
		default:
			return
		}
	}
}

func (m *Manager) onAck(a ackMsg) {
	if err := m.handleAck(a, m.cfg.Now()); err != nil {
		m.log.Error("snapshot ack", "tenant", a.tenant, "edge", a.edge, "seq", a.seq, "err", err)
		m.reload()
	}
}

// pumpAll sends what every edge's window allows and resends timed-out
// batches. A failed publish stops the round: the connection is likely down.
func (m *Manager) pumpAll(ctx context.Context) {
	for _, e := range m.sortedEdges() {
		if ctx.Err() != nil {
			return
		}
		if err := m.pump(e, m.cfg.Now()); err != nil {
			if errors.Is(err, errPublish) {
				m.log.Warn("publish snapshots", "tenant", e.st.Tenant, "edge", e.st.Edge, "err", err)
				return
			}
			m.log.Error("send snapshots", "tenant", e.st.Tenant, "edge", e.st.Edge, "err", err)
			m.reload()
			return
		}
	}
}

func (m *Manager) sortedEdges() []*edge {
	out := make([]*edge, 0, len(m.edges))
	for _, e := range m.edges {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b *edge) int { return int(a.st.Num) - int(b.st.Num) })
	return out
}

func (m *Manager) publishStatus(now time.Time) {
	out := make([]EdgeSync, 0, len(m.edges))
	for _, e := range m.sortedEdges() {
		s := EdgeSync{
			Tenant: e.st.Tenant, Edge: e.st.Edge, AckedSeq: e.st.Acked, NextSeq: e.st.NextSeq,
			Inflight: len(e.st.Inflight), Outbox: e.st.Outbox, LastAckAt: e.st.LastAckAt,
			FullSync: e.st.Full != nil, Lag: e.lag(now),
		}
		out = append(out, s)
		label := e.key()
		m.lag.WithLabelValues(label).Set(s.Lag.Seconds())
		m.outbox.WithLabelValues(label).Set(float64(s.Outbox))
	}
	m.status.Store(&out)
}
