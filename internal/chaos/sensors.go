package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/protocol"
	"github.com/unico-cdp/unico/simulate"
)

// Sizes of sensor_sigkill. Every store has six scanners (one per zone),
// each an MQTT client of its edge's device listener reporting every
// sensorInterval; visits start at sensorVisitRate a second and last a few
// seconds.
const (
	sensorStores      = 10
	sensorPopulation  = 5000
	sensorVisitRate   = 100
	sensorInterval    = 100 * time.Millisecond
	sensorMinDwell    = time.Second
	sensorExitTimeout = 2 * time.Second
	// sensorTraffic is how long visits start, at CHAOS_SCALE=1; the
	// kills run meanwhile.
	sensorTraffic = 40 * time.Second
)

// sensorLedger records every frame an edge agent PUBACKed, credited to the
// run of the agent that acknowledged it, and replays the frames of each
// run through a fresh bridge configured like the agents, in the order
// they were acknowledged (simulate.PresenceExpectation): the events the
// run must have stored before its PUBACKs.
type sensorLedger struct {
	mu     sync.Mutex
	starts [][]time.Time // per edge: when each run was started, in order
	x      *simulate.PresenceExpectation
	kills  []int // per edge
	// armed, per edge, is a kill to fire (then cleared) when the edge
	// acknowledges a frame that yields events.
	armed []*armedKill
	// err is the first frame the bridge refused.
	err error
	// log, when set, records every PUBACKed frame for a post-mortem
	// (acked-frames.jsonl in the scenario's directory, kept with -keep).
	log *simulate.AckedLog
}

// dwellMargin is how far over the minimum dwell a derived stay must be to
// be checked: the agents stamp sightings with their own receive times and
// the replay with the PUBACK's arrival, so a stay cut short by a restart
// (the next run first sees the identifier in mid-stay) may come out just
// over the minimum in the replay and just under it at the agent.
const dwellMargin = sensorMinDwell / 2

func newSensorLedger(edges int, startedAt time.Time) *sensorLedger {
	l := &sensorLedger{starts: make([][]time.Time, edges), armed: make([]*armedKill, edges), kills: make([]int, edges),
		x: simulate.NewPresenceExpectation(bridge.Config{ExitTimeout: sensorExitTimeout, MinDwell: sensorMinDwell, MaxFrameDelay: sensorExitTimeout}, dwellMargin)}
	for e := range l.starts {
		l.starts[e] = []time.Time{startedAt}
		l.x.RunStarted(simulate.PresenceRun{Edge: e}, startedAt)
	}
	return l
}

// onAcked is simulate.FrameConfig.OnAcked.
func (l *sensorLedger) onAcked(a simulate.AckedFrame) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rk := simulate.PresenceRun{Edge: a.Edge, Run: l.run(a.Edge, a.ConnectedAt)}
	n, err := l.x.AddFrame(rk, a)
	if l.log != nil {
		l.log.Add(a)
	}
	if err != nil && l.err == nil {
		l.err = err
	}
	if k := l.armed[a.Edge]; n > 0 && k != nil {
		// At once, before anything else the agent does after the PUBACK.
		_ = syscall.Kill(k.pid, syscall.SIGKILL)
		close(k.fired)
		l.armed[a.Edge] = nil
	}
}

// armedKill is a SIGKILL of process pid waiting for a PUBACK.
type armedKill struct {
	pid   int
	fired chan struct{}
}

// arm has edge e's agent, process pid, killed with SIGKILL as soon as it
// acknowledges a frame that yields events; the channel is closed then.
func (l *sensorLedger) arm(e, pid int) <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := &armedKill{pid: pid, fired: make(chan struct{})}
	l.armed[e] = k
	return k.fired
}

// disarm cancels edge e's armed kill.
func (l *sensorLedger) disarm(e int) {
	l.mu.Lock()
	l.armed[e] = nil
	l.mu.Unlock()
}

// restarted records that edge e was killed and is started again at at.
func (l *sensorLedger) restarted(e int, at time.Time) {
	l.mu.Lock()
	l.kills[e]++
	l.starts[e] = append(l.starts[e], at)
	l.x.RunStarted(simulate.PresenceRun{Edge: e, Run: len(l.starts[e]) - 1}, at)
	l.mu.Unlock()
}

// run returns the run of edge e that a connection made at connAt reached:
// a connection needs a running agent, so it is the last run started
// before. Callers hold mu.
func (l *sensorLedger) run(e int, connAt time.Time) int {
	r := 0
	for i, s := range l.starts[e] {
		if !s.After(connAt) {
			r = i
		}
	}
	return r
}

// expect returns what the PUBACKed frames imply and the kills per edge.
func (l *sensorLedger) expect() (*simulate.PresenceExpectation, []int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.x, slices.Clone(l.kills), l.err
}

// sensorReport is sensor_sigkill's part of the report.
type sensorReport struct {
	Visits        int64 `json:"visits"`
	FramesSent    int64 `json:"frames_sent"`
	FramesUnacked int64 `json:"frames_unacked"`
	Resends       int64 `json:"resends"`
	Reconnects    int64 `json:"reconnects"`
	// The checks of the hub against the PUBACKed frames (their JSON
	// fields inline).
	simulate.PresenceReport
	Kills []int `json:"kills"`
	// HTTPAccepted and HTTPRejected count the app's identify calls of
	// the visits (not checked here).
	HTTPAccepted int64 `json:"http_accepted"`
	HTTPRejected int64 `json:"http_rejected"`
}

// sensorSigkill is the sensor_sigkill scenario. Simulated presence
// scanners (package simulate's frame sender: six per store, ten stores,
// one frame every 100 ms each, 100 visits started a second, QoS 1, unacked
// frames resent unchanged after a reconnect) report to both edge agents'
// device listeners while the agents are killed with SIGKILL, alternately
// one and the other: every 1.5–3 s, from within the callback of the
// PUBACK of a frame that yields events (the worst moment for a PUBACK sent
// before the fsync), then once more 0.2–0.8 s after its restart, while the
// sensors reconnect and resend. After the traffic the suite waits for the last
// sessions to close and the edges to drain, and checks the hub against
// the PUBACKed frames as verifySensors says. Its figures: 4,100–4,200
// frames PUBACKed, 6 kills and about 650 identifiers checked at
// CHAOS_SCALE=0.1, in about 17 s.
func (sc *scenario) sensorSigkill(ctx context.Context, started time.Time) error {
	t := sc.topo
	led := newSensorLedger(len(t.edges), started)
	sc.sensors = led
	// For a post-mortem (-keep): the PUBACKed frames, and when each run of
	// each agent started.
	af, err := os.Create(filepath.Join(sc.dir, "acked-frames.jsonl"))
	if err != nil {
		return err
	}
	led.log = simulate.NewAckedLog(af)
	defer func() {
		led.mu.Lock()
		err := led.log.Flush()
		led.log = nil
		b, _ := json.Marshal(led.starts)
		led.mu.Unlock()
		if err != nil {
			sc.logger.Warn("acked frames log", "err", err)
		}
		af.Close()
		_ = os.WriteFile(filepath.Join(sc.dir, "runs.json"), b, 0o644)
	}()
	pop, err := simulate.NewPopulation(7, sensorPopulation, simulate.PopulationOptions{Stores: sensorStores})
	if err != nil {
		return err
	}
	mix, err := simulate.ParseMix("presence=1")
	if err != nil {
		return err
	}
	gen, err := simulate.NewGenerator(pop, simulate.GeneratorConfig{Seed: 7, Mix: mix, Now: time.Now, RunID: sc.name, PresenceFrames: true})
	if err != nil {
		return err
	}
	// Quiet: every kill drops every sensor's connection.
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	sender, err := simulate.NewSender(simulate.SenderConfig{WriteKey: writeKey, MaxAttempts: 1000, MaxBackoff: time.Second}, quiet)
	if err != nil {
		return err
	}
	creds, err := readCredentials(sc.devices.credentials)
	if err != nil {
		return err
	}
	d := sc.suite.scaled(sensorTraffic, 8*time.Second)
	cfg := simulate.RunConfig{
		Edges: []string{t.edgeURL(0, ""), t.edgeURL(1, "")}, Sender: sender, Rate: sensorVisitRate, Duration: d,
		DrainTimeout: 2 * time.Minute,
		Frames: &simulate.FrameConfig{Brokers: t.deviceMQTT, Credentials: creds, Interval: sensorInterval,
			MinDwell: sensorMinDwell, ExitTimeout: sensorExitTimeout, AckTimeout: 5 * time.Second, OnAcked: led.onAcked},
	}
	type result struct {
		sum simulate.Summary
		err error
	}
	done := make(chan result, 1)
	go func() {
		sum, err := simulate.Run(ctx, gen, cfg, quiet)
		done <- result{sum, err}
	}()
	end := time.Now().Add(d - time.Second)
	kill := func(e int) error {
		_ = t.edges[e].Stop(syscall.SIGKILL, stopTimeout)
		sc.faults++
		led.restarted(e, time.Now())
		return t.startEdge(ctx, e)
	}
	var faultErr error
	for i := 0; faultErr == nil && time.Now().Before(end); i++ {
		if faultErr = pause(ctx, sc.between(1500*time.Millisecond, 3*time.Second)); faultErr != nil {
			break
		}
		// Kill at the worst moment for a PUBACK sent too early: just
		// after the agent acknowledged a frame that yields events.
		e := i % len(t.edges)
		select {
		case <-led.arm(e, t.edges[e].Pid()):
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		}
		led.disarm(e)
		if faultErr = kill(e); faultErr != nil {
			break
		}
		// Again while the sensors reconnect and resend what the killed
		// run left unacknowledged: a burst of frames, most of them
		// opening sessions in the fresh run.
		if faultErr = pause(ctx, sc.between(200*time.Millisecond, 800*time.Millisecond)); faultErr == nil {
			faultErr = kill(e)
		}
	}
	res := <-done
	sc.sensorSum = res.sum
	if faultErr != nil {
		return faultErr
	}
	if res.err != nil {
		return fmt.Errorf("traffic: %w", res.err)
	}
	fs := res.sum.Frames
	if fs == nil || fs.FramesAcked == 0 || fs.Visits == 0 {
		return fmt.Errorf("no frame was acknowledged")
	}
	if fs.FramesUnacked > 0 {
		return fmt.Errorf("%d frames still unacknowledged after the traffic", fs.FramesUnacked)
	}
	for _, p := range t.procs() {
		if !p.Running() {
			return fmt.Errorf("%s is not running after the faults", p.Name)
		}
	}
	sc.logger.Info("faults done, waiting for the last exits", "frames_acked", fs.FramesAcked, "kills", sc.faults)
	// The last sessions close by the wall clock once the sensors are
	// silent: the exit timeout plus as much again for late frames.
	if err := pause(ctx, 2*sensorExitTimeout+time.Second); err != nil {
		return err
	}
	return drain(ctx, t, drainTimeout, sc.logger)
}

// readCredentials reads a --device-credentials file.
func readCredentials(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return simulate.ReadCredentials(f, path)
}

// writeSensorCredentials writes the credentials of every simulated sensor
// to dir and returns the edges' device options.
func writeSensorCredentials(dir string) (*deviceOptions, error) {
	path := filepath.Join(dir, "devices.txt")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("device credentials: %w", err)
	}
	if err := simulate.WriteCredentials(f, sensorStores); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("device credentials: %w", err)
	}
	return &deviceOptions{credentials: path, zones: simulate.ZoneMap(), minDwell: sensorMinDwell, exitTimeout: sensorExitTimeout}, nil
}

// hubPresence returns the presence events at the hub that carry id.
func hubPresence(ctx context.Context, t *topology, id protocol.Identifier, cache map[string][]protocol.Event) ([]protocol.Event, error) {
	var p struct {
		ID string `json:"id"`
	}
	code, err := t.getJSON(ctx, t.hubURL("/api/v1/profiles?identifier="+url.QueryEscape(id.String())), true, &p)
	if code == 404 {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	evs, ok := cache[p.ID]
	if !ok {
		cursor := ""
		for {
			var page struct {
				Events []protocol.Event `json:"events"`
				Next   string           `json:"next"`
			}
			u := t.hubURL("/api/v1/profiles/" + url.PathEscape(p.ID) + "/events?limit=1000")
			if cursor != "" {
				u += "&cursor=" + url.QueryEscape(cursor)
			}
			if _, err := t.getJSON(ctx, u, true, &page); err != nil {
				return nil, err
			}
			evs = append(evs, page.Events...)
			if page.Next == "" {
				break
			}
			cursor = page.Next
		}
		cache[p.ID] = evs
	}
	return simulate.PresenceEventsOf(evs, id), nil
}

// verifySensors checks the hub against the PUBACKed frames with
// simulate.PresenceExpectation.CheckPresence. A killed agent loses its
// presence sessions (they live in memory): a session open at the kill
// never gets its presence.exit, and the next run opens a new session for
// the identifier, with a presence.enter of its own. So, per identifier (a
// beacon id, or a hashed MAC address, fresh per visit): every
// presence.enter derived from the frames one run PUBACKed is at the hub,
// by id, or an enter of the identifier that run made is, from another
// frame it PUBACKed or, by its received_at, from a frame whose PUBACK the
// kill cut off and the next run sent (frames of two sensors racing to
// open the session); re-entries derived from two sensors' sightings near
// the exit timeout are optional; every zone-change presence.zone_dwell
// derived after a stay over the minimum dwell by half of it plus the time
// the agent may have received its frame before the PUBACK is at the hub,
// by id or as a zone change leaving the same zone, where the hub's enters
// are exactly the derived ones, unless the agent may have taken its
// sighting for a late one (see simulate.CheckPresence); no presence event
// id twice;
// at most the expected enters plus one per kill of the identifier's edge,
// and no more exits than enters; an exit where the last run of its agent
// opened a session; every presence event from a PUBACKed frame.
//
// A PUBACK sent before the frame's events are fsynced shows up as an enter
// or dwell of a PUBACKed frame missing at the hub.
func verifySensors(ctx context.Context, t *topology, x *simulate.PresenceExpectation, kills []int) (sensorReport, string, error) {
	cache := map[string][]protocol.Event{}
	pr, _, err := x.CheckPresence(func(id protocol.Identifier) ([]protocol.Event, error) {
		return hubPresence(ctx, t, id, cache)
	}, kills)
	r := sensorReport{PresenceReport: pr, Kills: kills}
	r.Mismatches = nil // written to mismatches.txt
	first := ""
	if len(pr.Mismatches) > 0 {
		first = pr.Mismatches[0]
		_ = os.WriteFile(filepath.Join(t.dir, "mismatches.txt"), []byte(strings.Join(pr.Mismatches, "\n")+"\n"), 0o644)
	}
	return r, first, err
}

// sensorFailures counts the identifiers' failed checks of r.
func (r *sensorReport) failures() int {
	return r.EntersMissing + r.DwellsMissing + r.Duplicates + r.OverBound + r.Unclosed + r.Unknown
}

// verifySensors runs verifySensors on the scenario's ledger and sums it
// up as a verdict.
func (sc *scenario) verifySensors(ctx context.Context) (verdict, *sensorReport, error) {
	x, kills, err := sc.sensors.expect()
	if err != nil {
		return verdict{}, nil, err
	}
	r, first, err := verifySensors(ctx, sc.topo, x, kills)
	if fs := sc.sensorSum.Frames; fs != nil {
		r.Visits, r.FramesSent, r.FramesUnacked = fs.Visits, fs.FramesSent, fs.FramesUnacked
		r.Resends, r.Reconnects = fs.Resends, fs.Reconnects
	}
	r.HTTPAccepted, r.HTTPRejected = sc.sensorSum.Accepted, sc.sensorSum.Rejected
	v := verdict{acknowledged: r.FramesAcked, atHub: int64(r.HubEnters + r.HubDwells + r.HubExits),
		customersChecked: r.Identifiers, mismatches: r.failures(), firstMismatch: first, perIdentifier: true}
	return v, &r, err
}
