// Package edge is the Unico edge agent as a library: it wires the
// Segment-compatible HTTP ingest (edge/ingest), the durable Badger queue
// (edge/queue), the MQTT forwarder to the hub (edge/uplink) and the profile
// cache fed by the hub's snapshots (edge/cache) into one service with
// status, metrics and graceful shutdown.
//
// The agent's promise: an event answered with 200 is fsynced in the queue,
// stays there until the hub acknowledges its batch, and reaches the hub
// exactly once in effect, whatever fails in between.
package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/valyala/fasthttp"
	"golang.org/x/sync/errgroup"

	"github.com/unico-cdp/unico/edge/cache"
	"github.com/unico-cdp/unico/edge/devices"
	"github.com/unico-cdp/unico/edge/ingest"
	"github.com/unico-cdp/unico/edge/queue"
	"github.com/unico-cdp/unico/edge/uplink"
	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/protocol"
)

// Config configures an agent.
type Config struct {
	// DataDir holds the queue (DataDir/queue) and the profile cache
	// (DataDir/cache). Required.
	DataDir string
	// HTTPAddr is the ingest and status address; default ":8080".
	HTTPAddr string
	// Tenant and EdgeID name this edge; EdgeID is required.
	Tenant string
	EdgeID string
	// Site is the store or site id stamped on events; default EdgeID.
	Site string
	// Ingest configures HTTP ingest. Its Map.Source is set from Tenant,
	// Site and EdgeID; its Registry and Status are set by the agent.
	Ingest ingest.Config
	// Queue configures the durable queue; its Dir is DataDir/queue.
	Queue queue.Options
	// Uplink configures the forwarder; its Tenant and EdgeID are set from
	// the agent's, and the agent adds the snapshot subscription and
	// OnConnect.
	Uplink uplink.Config
	// Cache configures the profile cache; its Dir is DataDir/cache and its
	// DefaultCountryCode defaults to Ingest.Map.DefaultCountryCode.
	Cache cache.Options
	// Devices, when its ListenAddr or BrokerURL is set, takes frames from
	// in-store sensors into the queue (channel iot); its Bridge.Source is
	// set from the agent's.
	Devices devices.Config
	// Snapshots configures snapshot sync; Tenant, EdgeID and Publish are
	// set by the agent.
	Snapshots cache.SyncerConfig
	// MemoryLimit, when positive, is the memory the process is meant to
	// stay within (the caller sets the Go runtime's limit to it): the
	// Badger memtables and block caches of the queue and the profile
	// cache are scaled to it (see MemoryBudget) unless Queue or Cache
	// set them.
	MemoryLimit int64
	// Version is reported by /v1/status.
	Version string
}

// Memory is how a process memory limit is divided among Badger's fixed
// allocations: the memtables (allocated whole on the Go heap) and block
// caches of the queue and of the profile cache.
type Memory struct {
	QueueMemTable, QueueBlockCache int64
	CacheMemTable, CacheBlockCache int64
}

// MemoryBudget divides a process memory limit: each memtable 1/32 of it
// (the queue's at least queue.MinMemTableBytes, the cache's at least
// cache.MinMemTableBytes), the queue's block cache 1/64 (it caches only
// blocks of keys: events live in the value log), the cache's 1/32 (at
// least 1 MiB each); all at most 64 MiB. Two memtables each, so Badger
// takes about a fifth of the limit and the rest is the agent's working
// heap and the collector's headroom.
func MemoryBudget(limit int64) Memory {
	clamp := func(v, lo int64) int64 { return min(max(v, lo), 64<<20) }
	return Memory{
		QueueMemTable:   clamp(limit/32, queue.MinMemTableBytes),
		QueueBlockCache: clamp(limit/64, 1<<20),
		CacheMemTable:   clamp(limit/32, cache.MinMemTableBytes),
		CacheBlockCache: clamp(limit/32, 1<<20),
	}
}

// Agent is a running edge agent.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	reg   *prometheus.Registry
	start time.Time
}

// New validates cfg.
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("data-dir: required")
	}
	if cfg.Tenant == "" {
		cfg.Tenant = "default"
	}
	if !protocol.ValidName(cfg.Tenant) {
		return nil, fmt.Errorf("tenant %q: want 1-64 of [A-Za-z0-9._-]", cfg.Tenant)
	}
	if !protocol.ValidName(cfg.EdgeID) {
		return nil, fmt.Errorf("edge-id %q: want 1-64 of [A-Za-z0-9._-]", cfg.EdgeID)
	}
	if cfg.Site == "" {
		cfg.Site = cfg.EdgeID
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = ":8080"
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Agent{cfg: cfg, log: logger, reg: reg}, nil
}

// Run listens on HTTPAddr and serves until ctx is cancelled.
func (a *Agent) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http-addr: %w", err)
	}
	return a.Serve(ctx, ln)
}

// Status is the JSON of GET /v1/status.
type Status struct {
	EdgeID                 string            `json:"edge_id"`
	Tenant                 string            `json:"tenant"`
	Site                   string            `json:"site"`
	Version                string            `json:"version,omitempty"`
	UptimeSeconds          float64           `json:"uptime_seconds"`
	QueueDepth             int64             `json:"queue_depth"`
	QueueBytes             int64             `json:"queue_bytes"`
	QueueQuotaBytes        int64             `json:"queue_quota_bytes"`
	OldestQueuedAgeSeconds float64           `json:"oldest_queued_age_seconds"`
	HubConnected           bool              `json:"hub_connected"`
	LastAckAt              *time.Time        `json:"last_ack_at"`
	EventsAccepted         uint64            `json:"events_accepted"`
	EventsForwarded        uint64            `json:"events_forwarded"`
	EventsDropped          map[string]uint64 `json:"events_dropped"`
	CorruptRecords         uint64            `json:"corrupt_records"`
	QuarantinedEvents      int64             `json:"quarantined_events"`
	QuarantinedBytes       int64             `json:"quarantined_bytes"`
	BatchesInFlight        int               `json:"batches_in_flight"`
	BatchesRejected        uint64            `json:"batches_rejected"`
	Reconnects             uint64            `json:"reconnects"`
	ProfilesCached         int64             `json:"profiles_cached"`
	// Devices is the registry of in-store sensors (when device intake is
	// on): last seen, firmware, battery, frames, gaps, duplicates, reboots.
	Devices            []bridge.DeviceInfo `json:"devices,omitempty"`
	SnapshotAppliedSeq uint64              `json:"snapshot_applied_seq"`
	LastSnapshotAt     *time.Time          `json:"last_snapshot_at"`
	LastFullSyncAt     *time.Time          `json:"last_full_sync_at"`
}

// Serve serves on ln until ctx is cancelled. Shutdown order: ingest stops
// accepting and finishes in-flight appends, the forwarder and the snapshot
// syncer stop, then the queue and the cache close Badger cleanly.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	a.start = time.Now()
	qo := a.cfg.Queue
	qo.Dir = filepath.Join(a.cfg.DataDir, "queue")
	if qo.PageOutDir == "" {
		// The profile cache's Badger (DataDir/cache) too.
		qo.PageOutDir = a.cfg.DataDir
	}
	if qo.Logger == nil {
		qo.Logger = a.log
	}
	mem := MemoryBudget(a.cfg.MemoryLimit)
	if a.cfg.MemoryLimit > 0 {
		if qo.MemTableBytes == 0 {
			qo.MemTableBytes = mem.QueueMemTable
		}
		if qo.BlockCacheBytes == 0 {
			qo.BlockCacheBytes = mem.QueueBlockCache
		}
	}
	q, err := queue.Open(qo)
	if err != nil {
		ln.Close()
		return fmt.Errorf("open queue: %w", err)
	}
	defer func() {
		if err := q.Close(); err != nil {
			a.log.Error("close queue", "err", err)
		}
	}()
	st := q.Stats()
	a.log.Info("queue opened", "dir", qo.Dir, "depth", st.Depth, "bytes", st.Bytes, "quota", st.QuotaBytes)

	co := a.cfg.Cache
	co.Dir = filepath.Join(a.cfg.DataDir, "cache")
	if co.Logger == nil {
		co.Logger = a.log
	}
	if a.cfg.MemoryLimit > 0 {
		if co.MemTableBytes == 0 {
			co.MemTableBytes = mem.CacheMemTable
		}
		if co.BlockCacheBytes == 0 {
			co.BlockCacheBytes = mem.CacheBlockCache
		}
	}
	if co.DefaultCountryCode == "" {
		co.DefaultCountryCode = a.cfg.Ingest.Map.DefaultCountryCode
	}
	pc, err := cache.Open(co)
	if err != nil {
		ln.Close()
		return fmt.Errorf("open profile cache: %w", err)
	}
	defer func() {
		if err := pc.Close(); err != nil {
			a.log.Error("close profile cache", "err", err)
		}
	}()

	// The syncer publishes through the forwarder, which is built after it:
	// fwd is set before either runs.
	var fwd *uplink.Forwarder
	sc := a.cfg.Snapshots
	sc.Tenant, sc.EdgeID = a.cfg.Tenant, a.cfg.EdgeID
	sc.Publish = func(topic string, payload []byte, timeout time.Duration) error {
		return fwd.Publish(topic, payload, timeout)
	}
	syncer, err := cache.NewSyncer(pc, sc, a.log)
	if err != nil {
		ln.Close()
		return err
	}

	uc := a.cfg.Uplink
	uc.Tenant, uc.EdgeID = a.cfg.Tenant, a.cfg.EdgeID
	subs := make(map[string]func([]byte), len(uc.Subscriptions)+1)
	for t, h := range uc.Subscriptions {
		subs[t] = h
	}
	subs[syncer.Topic()] = syncer.Handle
	uc.Subscriptions = subs
	onConnect := uc.OnConnect
	uc.OnConnect = func() {
		syncer.Connected()
		if onConnect != nil {
			onConnect()
		}
	}
	fwd, err = uplink.New(uc, a.log, uplink.QueueSource(q))
	if err != nil {
		ln.Close()
		return err
	}
	a.reg.MustRegister(fwd.Collectors()...)
	a.reg.MustRegister(pc.Collectors()...)
	a.registerQueueMetrics(q)

	var devs *devices.Devices
	if dc := a.cfg.Devices; dc.ListenAddr != "" || dc.BrokerURL != "" {
		dc.Bridge.Source = protocol.Source{Tenant: a.cfg.Tenant, Site: a.cfg.Site, Edge: a.cfg.EdgeID}
		if devs, err = devices.New(dc, q, a.log); err != nil {
			ln.Close()
			return err
		}
		a.reg.MustRegister(devs.Collectors()...)
	}

	status := func() Status {
		qs, us := q.Stats(), fwd.Stats()
		s := Status{
			EdgeID: a.cfg.EdgeID, Tenant: a.cfg.Tenant, Site: a.cfg.Site, Version: a.cfg.Version,
			UptimeSeconds: time.Since(a.start).Seconds(),
			QueueDepth:    qs.Depth, QueueBytes: qs.Bytes, QueueQuotaBytes: qs.QuotaBytes,
			HubConnected: us.Connected, EventsAccepted: qs.Appended, EventsForwarded: us.EventsForwarded,
			EventsDropped: qs.Dropped, CorruptRecords: qs.Corrupt, BatchesInFlight: us.InFlight,
			QuarantinedEvents: qs.QuarantineDepth, QuarantinedBytes: qs.QuarantineBytes,
			BatchesRejected: us.Rejected, Reconnects: us.Reconnects,
		}
		if s.EventsDropped == nil {
			s.EventsDropped = map[string]uint64{}
		}
		if !qs.OldestReceivedAt.IsZero() {
			s.OldestQueuedAgeSeconds = time.Since(qs.OldestReceivedAt).Seconds()
		}
		if !us.LastAckAt.IsZero() {
			t := us.LastAckAt.UTC()
			s.LastAckAt = &t
		}
		cs := pc.Stats()
		s.ProfilesCached, s.SnapshotAppliedSeq = cs.Profiles, cs.Applied
		if devs != nil {
			s.Devices = devs.Registry()
		}
		if !cs.LastSnapshotAt.IsZero() {
			t := cs.LastSnapshotAt.UTC()
			s.LastSnapshotAt = &t
		}
		if !cs.LastFullSyncAt.IsZero() {
			t := cs.LastFullSyncAt.UTC()
			s.LastFullSyncAt = &t
		}
		return s
	}
	ic := a.cfg.Ingest
	ic.Map.Source = protocol.Source{Tenant: a.cfg.Tenant, Site: a.cfg.Site, Edge: a.cfg.EdgeID}
	ic.Registry = a.reg
	ic.Status = func() any { return status() }
	extra := make(map[string]fasthttp.RequestHandler, len(ic.Extra)+1)
	for p, h := range ic.Extra {
		extra[p] = h
	}
	extra[cache.LookupPath] = pc.LookupHandler()
	ic.Extra = extra
	qapi := quarantineAPI{q}
	admin := make(map[string]fasthttp.RequestHandler, len(ic.Admin)+2)
	for p, h := range ic.Admin {
		admin[p] = h
	}
	admin[QuarantinePath] = qapi.handle
	admin[QuarantineRetryPath] = qapi.retry
	for p, h := range ingest.PprofRoutes() {
		admin[p] = h
	}
	ic.Admin = admin
	srv, err := ingest.New(ic, a.log, q)
	if err != nil {
		ln.Close()
		return err
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return srv.Serve(gctx, ln) })
	g.Go(func() error { return fwd.Run(gctx) })
	g.Go(func() error { return syncer.Run(gctx) })
	if devs != nil {
		g.Go(func() error { return devs.Run(gctx) })
	}
	a.log.Info("edge agent ready", "http", ln.Addr().String(), "edge_id", a.cfg.EdgeID, "tenant", a.cfg.Tenant, "site", a.cfg.Site, "hub", a.cfg.Uplink.BrokerURL)
	err = g.Wait()
	a.log.Info("edge agent stopping", "queue_depth", q.Stats().Depth)
	return err
}

func (a *Agent) registerQueueMetrics(q *queue.Queue) {
	g := func(name, help string, f func(queue.Stats) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(q.Stats()) })
	}
	a.reg.MustRegister(
		g("unico_edge_queue_depth", "Events queued, not yet acknowledged by the hub.", func(s queue.Stats) float64 { return float64(s.Depth) }),
		g("unico_edge_queue_bytes", "Bytes of queued events counted against the quota.", func(s queue.Stats) float64 { return float64(s.Bytes) }),
		g("unico_edge_queue_quota_bytes", "The queue's disk quota.", func(s queue.Stats) float64 { return float64(s.QuotaBytes) }),
		g("unico_edge_oldest_queued_age_seconds", "Age of the oldest queued event.", func(s queue.Stats) float64 {
			if s.OldestReceivedAt.IsZero() {
				return 0
			}
			return time.Since(s.OldestReceivedAt).Seconds()
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "unico_edge_events_appended_total", Help: "Events durably appended to the queue since start."},
			func() float64 { return float64(q.Stats().Appended) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "unico_edge_events_acked_total", Help: "Queued events deleted after the hub's ack since start."},
			func() float64 { return float64(q.Stats().Acked) }),
		g("unico_edge_quarantined_events", "Events in the quarantine: refused by the hub on their own, kept until retried or discarded.", func(s queue.Stats) float64 { return float64(s.QuarantineDepth) }),
		g("unico_edge_quarantined_bytes", "Bytes of quarantined events, counted against the quota with the queue's.", func(s queue.Stats) float64 { return float64(s.QuarantineBytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "unico_edge_events_quarantined_total", Help: "Events moved to the quarantine since start."},
			func() float64 { return float64(q.Stats().Quarantined) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "unico_edge_events_requeued_total", Help: "Quarantined events moved back to the queue by an operator since start."},
			func() float64 { return float64(q.Stats().Requeued) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "unico_edge_events_discarded_total", Help: "Quarantined events discarded by an operator since start."},
			func() float64 { return float64(q.Stats().Discarded) }),
		&droppedCollector{q: q, desc: prometheus.NewDesc("unico_edge_events_dropped_total", "Events dropped by a channel's overflow policy since start.", []string{"channel"}, nil)},
	)
}

type droppedCollector struct {
	q    *queue.Queue
	desc *prometheus.Desc
}

func (d *droppedCollector) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d *droppedCollector) Collect(ch chan<- prometheus.Metric) {
	for c, n := range d.q.Stats().Dropped {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.CounterValue, float64(n), c)
	}
}
