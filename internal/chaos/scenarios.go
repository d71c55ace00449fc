package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/unico-cdp/unico/internal/procs"
	"github.com/unico-cdp/unico/simulate"
)

const (
	customers = 100
	// scenarioTimeout bounds one scenario at CHAOS_SCALE=1, traffic, faults
	// and drain included; it scales down to a floor of 2 minutes.
	scenarioTimeout = 10 * time.Minute
	// drainTimeout bounds the wait for delivery after the faults.
	drainTimeout = 3 * time.Minute
)

// traffic is the same for every scenario: 4 clients, 2 per edge, batches
// of 20 orders, 800 orders/s in all.
var traffic = loadConfig{clients: 4, perBatch: 20, rate: 800}

// edgeKillTraffic keeps more requests in flight for edge_sigkill: 8
// clients, batches of 100, 2,000 orders/s.
var edgeKillTraffic = loadConfig{clients: 8, perBatch: 100, rate: 2000}

// errSkipped is returned by a scenario that cannot run here.
var errSkipped = errors.New("skipped")

type suite struct {
	cfg    config
	logger *slog.Logger
	dir    string
}

// scaled is d × scale, at least floor.
func (s *suite) scaled(d, floor time.Duration) time.Duration {
	return max(time.Duration(float64(d)*s.cfg.scale), floor)
}

// scenario is one scenario's running state.
type scenario struct {
	suite  *suite
	name   string
	dir    string
	logger *slog.Logger
	rng    *rand.Rand
	topo   *topology
	ledger *ledger
	faults int
	skip   string
	// sensor_sigkill only: the sensors' settings, their PUBACKed frames
	// and the traffic's summary.
	devices   *deviceOptions
	sensors   *sensorLedger
	sensorSum simulate.Summary
}

func (s *suite) run(ctx context.Context, name string) report {
	rep := report{Scenario: name, Scale: s.cfg.scale}
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.scaled(scenarioTimeout, 2*time.Minute))
	defer cancel()
	sc := &scenario{suite: s, name: name, dir: filepath.Join(s.dir, name), logger: s.logger.With("scenario", name),
		rng: rand.New(rand.NewPCG(uint64(len(name)), 42)), ledger: newLedger()}
	err := os.MkdirAll(sc.dir, 0o755)
	if err == nil {
		err = sc.run(ctx)
	}
	rep.Seconds = math.Round(time.Since(t0).Seconds()*10) / 10
	if errors.Is(err, errSkipped) {
		rep.OK, rep.Skipped = true, sc.skip
		return rep
	}
	l := sc.ledger
	rep.FaultsInjected = sc.faults
	rep.Requests, rep.Retries = l.requests.Load(), l.retries.Load()
	rep.TransportErrors, rep.Status429, rep.Status5xx = l.transportErrors.Load(), l.status429.Load(), l.status503.Load()
	var v verdict
	switch {
	case err == nil && sc.sensors != nil:
		v, rep.Sensors, err = sc.verifySensors(ctx)
	case err == nil:
		v, err = verify(ctx, sc.topo, l, customers)
	}
	rep.Acknowledged, rep.AtHub, rep.CustomersChecked, rep.Mismatches = v.acknowledged, v.atHub, v.customersChecked, v.mismatches
	rep.GivenUp, rep.FirstMismatch = v.givenUp, v.firstMismatch
	if rep.Acknowledged == 0 {
		rep.Acknowledged = l.ackedCount()
	}
	rep.OK = err == nil && v.ok()
	if err == nil && !v.ok() {
		if sc.sensors != nil {
			err = fmt.Errorf("%d of %d identifiers differ from the PUBACKed frames", v.mismatches, v.customersChecked)
		} else {
			err = fmt.Errorf("hub holds %d events for %d acknowledged (%d given up), %d customers differ", v.atHub, v.acknowledged, v.givenUp, v.mismatches)
		}
	}
	if err != nil {
		rep.Error = err.Error()
		if sc.topo != nil {
			sc.logger.Error("scenario failed", "err", err)
			fmt.Fprintln(os.Stderr, sc.topo.logTails())
		}
	}
	if sc.topo != nil {
		sc.topo.close()
	}
	return rep
}

// run starts the topology and the traffic, injects the scenario's faults,
// stops the traffic and waits until the edges drained into the hub.
func (sc *scenario) run(ctx context.Context) error {
	var opts topoOptions
	var fault func(context.Context) error
	switch sc.name {
	case "edge_sigkill":
		fault = sc.edgeSigkill
	case "hub_sigkill":
		fault = sc.hubSigkill
	case "broker_restart_mosquitto":
		path, err := exec.LookPath(sc.suite.cfg.mosquitto)
		if err != nil {
			path, err = exec.LookPath(filepath.Join("/usr/sbin", sc.suite.cfg.mosquitto))
		}
		if err != nil {
			sc.skip = "mosquitto not installed"
			return errSkipped
		}
		opts.mosquitto = path
		// Mosquitto keeps no session for the hub across its restart: batches
		// the edges send before the hub has subscribed again are dropped,
		// and the edges resend them after the ack timeout (30 s by default).
		opts.ackTimeout = "5s"
		fault = sc.brokerRestart
	case "sensor_sigkill":
		var err error
		if opts.devices, err = writeSensorCredentials(sc.dir); err != nil {
			return err
		}
		sc.devices = opts.devices
	case "hub_unreachable":
		fault = sc.hubUnreachable
	case "quota":
		opts.quotaBytes = "64KiB"
		fault = sc.quota
	case "slow_network":
		var proxy *slowProxy
		opts.viaProxy = func(brokerAddr string) (string, error) {
			p, err := newSlowProxy(brokerAddr, 50*time.Millisecond, 100*time.Millisecond, 1)
			if err != nil {
				return "", err
			}
			proxy = p
			return p.addr(), nil
		}
		defer func() {
			if proxy != nil {
				proxy.close()
			}
		}()
		fault = func(ctx context.Context) error { return sc.slowNetwork(ctx, proxy) }
	default:
		return fmt.Errorf("unknown scenario %q", sc.name)
	}
	started := time.Now()
	topo, err := startTopology(ctx, sc.suite.cfg.binDir, sc.dir, opts)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	sc.topo = topo
	if sc.devices != nil {
		return sc.sensorSigkill(ctx, started)
	}
	gen := generator{prefix: sc.name, customers: customers}
	edges := []string{topo.edgeURL(0, ""), topo.edgeURL(1, "")}
	cfg := traffic
	if sc.name == "edge_sigkill" {
		// More and larger requests, so that kills land inside requests too.
		cfg = edgeKillTraffic
	}
	ld := startLoad(ctx, gen, edges, cfg, sc.ledger)
	faultErr := fault(ctx)
	// Every process runs again before the clients finish and the drain.
	for _, p := range topo.procs() {
		if !p.Running() && faultErr == nil {
			faultErr = fmt.Errorf("%s is not running after the faults", p.Name)
		}
	}
	loadErr := ld.stop(faultErr != nil)
	if faultErr != nil {
		return faultErr
	}
	if loadErr != nil {
		return fmt.Errorf("traffic: %w", loadErr)
	}
	sc.logger.Info("faults done, draining", "acknowledged", sc.ledger.ackedCount(), "faults", sc.faults)
	return drain(ctx, topo, drainTimeout, sc.logger)
}

// pause waits d (pacing the faults, not waiting for a condition) unless ctx
// ends first.
func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// between is a random duration in [lo, hi).
func (sc *scenario) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(sc.rng.Int64N(int64(hi-lo)))
}

// edgeSigkill kills an edge agent (alternately one and the other) with
// SIGKILL every 2–4 s during load and starts it again at once.
func (sc *scenario) edgeSigkill(ctx context.Context) error {
	end := time.Now().Add(sc.suite.scaled(40*time.Second, 6*time.Second))
	for i := 0; time.Now().Before(end); i++ {
		if err := pause(ctx, sc.between(2*time.Second, 4*time.Second)); err != nil {
			return err
		}
		e := i % len(sc.topo.edges)
		_ = sc.topo.edges[e].Stop(syscall.SIGKILL, stopTimeout)
		sc.faults++
		if err := sc.topo.startEdge(ctx, e); err != nil {
			return err
		}
	}
	return pause(ctx, time.Second)
}

// restartLoop runs rounds of: traffic for a third of the load time, kill,
// down for a while, start.
func (sc *scenario) restartLoop(ctx context.Context, p *procs.Proc, startAgain func(context.Context) error) error {
	third := sc.suite.scaled(10*time.Second, 2*time.Second)
	for range 2 {
		if err := pause(ctx, third); err != nil {
			return err
		}
		_ = p.Stop(syscall.SIGKILL, stopTimeout)
		sc.faults++
		if err := pause(ctx, sc.suite.scaled(5*time.Second, time.Second)); err != nil {
			return err
		}
		if err := startAgain(ctx); err != nil {
			return err
		}
	}
	return pause(ctx, third)
}

// hubSigkill kills the hub, and with it the embedded broker, mid-load.
func (sc *scenario) hubSigkill(ctx context.Context) error {
	return sc.restartLoop(ctx, sc.topo.hub, sc.topo.startHub)
}

// brokerRestart kills Mosquitto, which the hub and the edges use, mid-load.
func (sc *scenario) brokerRestart(ctx context.Context) error {
	return sc.restartLoop(ctx, sc.topo.broker, sc.topo.startBroker)
}

// hubOutage stops the hub gracefully, keeps it down for d while the
// traffic goes on, checks that the edges queued meanwhile, and starts it.
// during, if not nil, runs once the hub is down and before d counts.
func (sc *scenario) hubOutage(ctx context.Context, d time.Duration, during func(context.Context) error) error {
	if err := sc.topo.hub.Stop(syscall.SIGTERM, stopTimeout); err != nil {
		return err
	}
	sc.faults++
	if during != nil {
		if err := during(ctx); err != nil {
			return err
		}
	}
	if err := pause(ctx, d); err != nil {
		return err
	}
	depth, err := sc.topo.queueDepth(ctx)
	if err != nil {
		return err
	}
	if depth == 0 {
		return errors.New("the edges queued nothing while the hub was down")
	}
	sc.logger.Info("hub coming back", "queued", depth)
	return sc.topo.startHub(ctx)
}

// hubUnreachable keeps the hub down for minutes (scaled) under traffic.
func (sc *scenario) hubUnreachable(ctx context.Context) error {
	if err := pause(ctx, 2*time.Second); err != nil {
		return err
	}
	if err := sc.hubOutage(ctx, sc.suite.scaled(120*time.Second, 10*time.Second), nil); err != nil {
		return err
	}
	return pause(ctx, 2*time.Second)
}

// quota runs edges with a 64 KiB queue quota and stops the hub: the queues
// fill, clients get 429 and retry until the hub is back and the queues
// drain.
func (sc *scenario) quota(ctx context.Context) error {
	if err := pause(ctx, time.Second); err != nil {
		return err
	}
	full := func(ctx context.Context) error {
		return procs.WaitUntil(ctx, time.Minute, pollEvery, "clients refused with 429", func(context.Context) bool {
			return sc.ledger.status429.Load() >= 10
		})
	}
	if err := sc.hubOutage(ctx, sc.suite.scaled(20*time.Second, 3*time.Second), full); err != nil {
		return err
	}
	acked := sc.ledger.ackedCount()
	if err := procs.WaitUntil(ctx, time.Minute, pollEvery, "clients accepted again", func(context.Context) bool {
		return sc.ledger.ackedCount() > acked+10*traffic.perBatch
	}); err != nil {
		return err
	}
	return pause(ctx, time.Second)
}

// slowNetwork runs the edges' MQTT sessions through a proxy adding 50–100
// ms per chunk, and cuts every connection at random 1–4 s intervals.
func (sc *scenario) slowNetwork(ctx context.Context, p *slowProxy) error {
	end := time.Now().Add(sc.suite.scaled(40*time.Second, 8*time.Second))
	for time.Now().Before(end) {
		if err := pause(ctx, sc.between(time.Second, 4*time.Second)); err != nil {
			return err
		}
		p.cut()
		sc.faults++
	}
	return pause(ctx, time.Second)
}
