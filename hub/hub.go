// Package hub wires the hub's parts into one service: the profile store,
// the embedded MQTT broker (or an external one), batch intake and the HTTP
// API with the web UI.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/unico-cdp/unico/hub/api"
	"github.com/unico-cdp/unico/hub/broker"
	"github.com/unico-cdp/unico/hub/identity"
	"github.com/unico-cdp/unico/hub/intake"
	"github.com/unico-cdp/unico/hub/offers"
	"github.com/unico-cdp/unico/hub/profile"
	"github.com/unico-cdp/unico/hub/snapshot"
	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/hub/ui"
)

// Config configures a hub. Zero fields take the documented defaults.
type Config struct {
	// DataDir holds the profile store (DataDir/store). Required.
	DataDir string
	// CacheProfiles and CacheNodes bound the decoded profiles and
	// identifiers the store's writer keeps in memory; zero takes the
	// store's defaults.
	CacheProfiles, CacheNodes int
	// ValueThreshold is the size from which the store writes a value to
	// Badger's value log (store.Options.ValueThreshold); zero takes the
	// store's default.
	ValueThreshold int
	// HTTPAddr is the API and UI address; default ":8090".
	HTTPAddr string
	// MQTTAddr is the embedded broker's address; default ":1883". Ignored
	// when BrokerURL is set.
	MQTTAddr string
	// BrokerURL makes the hub use an external broker instead of the
	// embedded one.
	BrokerURL string
	// BrokerUsers are the embedded broker's credentials (username →
	// password); empty allows anonymous clients.
	BrokerUsers map[string]string
	// AdminToken protects /api/v1/. Required.
	AdminToken string
	Identity   *identity.Rules
	Profile    profile.Rules
	// Snapshot configures profile snapshots to the edges; its Dir is
	// DataDir/snapshot and its Offers hook is the offers engine.
	Snapshot snapshot.Config
	// Offers configures next-best offers; OffersRefresh is how often the
	// association model is rebuilt (default 10 minutes).
	Offers        offers.Config
	OffersRefresh time.Duration
	// ShutdownTimeout bounds the HTTP drain on shutdown; default 10s.
	ShutdownTimeout time.Duration
}

// Hub is a running hub.
type Hub struct {
	cfg Config
	log *slog.Logger
	reg *prometheus.Registry
}

// New validates cfg.
func New(cfg Config, logger *slog.Logger) (*Hub, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		return nil, errors.New("data-dir: required")
	}
	if cfg.AdminToken == "" {
		return nil, errors.New("admin-token: required")
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = ":8090"
	}
	if cfg.MQTTAddr == "" {
		cfg.MQTTAddr = ":1883"
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 10 * time.Second
	}
	switch cfg.Snapshot.Scope {
	case "", snapshot.ScopeSite, snapshot.ScopeAll:
	case snapshot.ScopeRegion:
		if len(cfg.Snapshot.Regions) == 0 {
			return nil, errors.New("snapshot-regions: required with --snapshot-scope region")
		}
	default:
		return nil, fmt.Errorf("snapshot-scope %q: want site, region or all", cfg.Snapshot.Scope)
	}
	if cfg.OffersRefresh <= 0 {
		cfg.OffersRefresh = 10 * time.Minute
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Hub{cfg: cfg, log: logger, reg: reg}, nil
}

// Run listens on the configured addresses and serves until ctx is
// cancelled.
func (h *Hub) Run(ctx context.Context) error {
	httpLn, err := net.Listen("tcp", h.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http-addr: %w", err)
	}
	var mqttLn net.Listener
	if h.cfg.BrokerURL == "" {
		if mqttLn, err = net.Listen("tcp", h.cfg.MQTTAddr); err != nil {
			httpLn.Close()
			return fmt.Errorf("mqtt-addr: %w", err)
		}
	}
	return h.Serve(ctx, httpLn, mqttLn)
}

// Serve serves on the given listeners until ctx is cancelled. mqttLn is
// the embedded broker's listener; nil when BrokerURL names an external
// broker.
func (h *Hub) Serve(ctx context.Context, httpLn, mqttLn net.Listener) error {
	closeListeners := func() {
		httpLn.Close()
		if mqttLn != nil {
			mqttLn.Close()
		}
	}
	st, err := store.Open(store.Options{
		Dir:      filepath.Join(h.cfg.DataDir, "store"),
		Identity: h.cfg.Identity,
		Profile:  h.cfg.Profile,
		Logger:   h.log,
		// Zero takes the store's defaults.
		CacheProfiles:  h.cfg.CacheProfiles,
		CacheNodes:     h.cfg.CacheNodes,
		ValueThreshold: h.cfg.ValueThreshold,
	})
	if err != nil {
		closeListeners()
		return err
	}
	defer st.Close()
	h.registerStoreMetrics(st)

	// Build every part before starting any, so a configuration error
	// leaves nothing running.
	var snap *snapshot.Manager
	ic := intake.Config{BrokerURL: h.cfg.BrokerURL, OnCommit: func() { snap.Notify() }, Properties: st.ReadsProperties}
	var brk *broker.Broker
	if mqttLn != nil {
		if brk, err = broker.New(broker.Config{Users: h.cfg.BrokerUsers}, h.log); err != nil {
			closeListeners()
			return err
		}
		// Intake takes the edges' batches from the embedded broker
		// directly, not through a connection to it.
		ic.Inline = brk
	}
	in, err := intake.New(ic, st, h.reg, h.log)
	if err != nil {
		closeListeners()
		return err
	}
	oc := h.cfg.Offers
	if len(oc.OrderEvents) == 0 {
		oc.OrderEvents = h.cfg.Profile.OrderEvents
	}
	eng, err := offers.New(oc, h.log)
	if err != nil {
		closeListeners()
		return err
	}
	sc := h.cfg.Snapshot
	sc.Dir = filepath.Join(h.cfg.DataDir, "snapshot")
	sc.Offers = eng.Hook(st)
	if snap, err = snapshot.New(sc, st, in, h.log); err != nil {
		closeListeners()
		return err
	}
	defer snap.Close()
	snap.Subscribe(in)
	h.reg.MustRegister(snap.Collectors()...)
	handler, err := api.New(api.Config{
		AdminToken: h.cfg.AdminToken,
		Store:      st,
		Gatherer:   h.reg,
		Ready: func() error {
			if !in.Connected() {
				return errors.New("not connected to the broker")
			}
			return nil
		},
		Status: func() map[string]any {
			m := map[string]any{"broker_connected": in.Connected(), "snapshot_sync": snap.Edges()}
			if brk != nil {
				m["broker_clients"] = brk.Clients()
			}
			return m
		},
		UI:     ui.Handler(),
		Offers: sc.Offers,
	}, h.log)
	if err != nil {
		closeListeners()
		return err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}

	g, gctx := errgroup.WithContext(ctx)
	if brk != nil {
		g.Go(func() error { return brk.Serve(gctx, mqttLn) })
	}
	g.Go(func() error { return in.Run(gctx) })
	g.Go(func() error { return snap.Run(gctx) })
	g.Go(func() error { return eng.Run(gctx, st, h.cfg.OffersRefresh) })
	g.Go(func() error {
		if err := srv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), h.cfg.ShutdownTimeout)
		defer cancel()
		return srv.Shutdown(sctx)
	})
	mqttAddr := h.cfg.BrokerURL
	if mqttLn != nil {
		mqttAddr = mqttLn.Addr().String()
	}
	h.log.Info("hub ready", "http", httpLn.Addr().String(), "mqtt", mqttAddr, "data_dir", h.cfg.DataDir)
	err = g.Wait()
	h.log.Info("hub stopped")
	return err
}

func (h *Hub) registerStoreMetrics(st *store.Store) {
	gauge := func(name, help string, f func(store.Stats) int64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f(st.Stats())) })
	}
	counter := func(name, help string, f func(store.Stats) int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f(st.Stats())) })
	}
	h.reg.MustRegister(
		gauge("unico_hub_profiles", "Profiles in the store.", func(s store.Stats) int64 { return s.Profiles }),
		gauge("unico_hub_events_stored", "Events in the store.", func(s store.Stats) int64 { return s.Events }),
		counter("unico_hub_merges_total", "Profiles merged into others.", func(s store.Stats) int64 { return s.Merges }),
		counter("unico_hub_repartitions_total", "Identity components recomputed after a rule conflict.", func(s store.Stats) int64 { return s.Repartitions }),
		counter("unico_hub_unresolved_events_total", "Events with no identifier that links (only shared or never-link ones).", func(s store.Stats) int64 { return s.Unresolved }),
	)
}

// Registry returns the hub's metrics registry.
func (h *Hub) Registry() *prometheus.Registry { return h.reg }
