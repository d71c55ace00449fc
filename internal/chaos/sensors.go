package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
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
// they were acknowledged: the events the run must have stored before its
// PUBACKs.
type sensorLedger struct {
	mu     sync.Mutex
	starts [][]time.Time // per edge: when each run was started, in order
	x      *expectation
	// armed, per edge, is a kill to fire (then cleared) when the edge
	// acknowledges a frame that yields events.
	armed []*armedKill
	// err is the first frame the bridge refused.
	err error
}

func newSensorLedger(edges int, startedAt time.Time) *sensorLedger {
	l := &sensorLedger{starts: make([][]time.Time, edges), armed: make([]*armedKill, edges),
		x: &expectation{frameRun: map[frameKey]runKey{}, idents: map[protocol.Identifier]*identExpect{},
			kills: make([]int, edges), bridges: map[runKey]*bridge.Bridge{}}}
	for e := range l.starts {
		l.starts[e] = []time.Time{startedAt}
	}
	return l
}

// onAcked is simulate.FrameConfig.OnAcked.
func (l *sensorLedger) onAcked(a simulate.AckedFrame) {
	l.mu.Lock()
	defer l.mu.Unlock()
	rk := runKey{a.Edge, l.run(a.Edge, a.ConnectedAt)}
	n, err := l.x.add(rk, a.Frame, a.AckedAt)
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
	l.x.kills[e]++
	l.starts[e] = append(l.starts[e], at)
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

// expect returns what the PUBACKed frames imply.
func (l *sensorLedger) expect() (*expectation, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	x := l.x
	x.lastRun = make([]int, len(l.starts))
	for e := range l.starts {
		x.lastRun[e] = len(l.starts[e]) - 1
	}
	return x, l.err
}

// frameKey names a frame: device, boot and sequence number, as in the
// bridge's event ids ("fw-<device>-<boot>-<seq>-<record>…").
type frameKey struct {
	dev  string
	boot uint32
	seq  uint32
}

func keyOfFrame(f *bridge.Frame) frameKey {
	return frameKey{dev: f.DeviceID.String(), boot: f.BootID, seq: f.Seq}
}

// keyOfEventID parses the frame out of a bridge event id.
func keyOfEventID(id string) (frameKey, bool) {
	parts := strings.SplitN(id, "-", 5)
	if len(parts) < 5 || parts[0] != "fw" {
		return frameKey{}, false
	}
	boot, err1 := strconv.ParseUint(parts[2], 16, 32)
	seq, err2 := strconv.ParseUint(parts[3], 10, 32)
	if err1 != nil || err2 != nil {
		return frameKey{}, false
	}
	return frameKey{dev: parts[1], boot: uint32(boot), seq: uint32(seq)}, true
}

// runKey is one run of one edge agent, between two kills.
type runKey struct{ edge, run int }

// expectation is what the PUBACKed frames imply, per identifier.
type expectation struct {
	frames   int
	frameRun map[frameKey]runKey
	idents   map[protocol.Identifier]*identExpect
	bridges  map[runKey]*bridge.Bridge
	lastRun  []int // per edge
	kills    []int // per edge
}

type identExpect struct {
	edge   int
	enters map[runKey][]string // enter ids the run's bridge derived
	dwells []dwell             // zone changes after a stay well over the minimum dwell
}

// dwell is a presence.zone_dwell a run's bridge derived.
type dwell struct {
	id      string
	seconds float64
}

// dwellMargin is how far over the minimum dwell a derived stay must be to
// be checked: the agents stamp sightings with their own receive times and
// the replay with the PUBACK's arrival, so a stay cut short by a restart
// (the next run first sees the identifier in mid-stay) may come out just
// over the minimum in the replay and just under it at the agent.
const dwellMargin = sensorMinDwell / 2

// add replays f, acknowledged at at by run rk, through rk's bridge and
// returns the number of events it yields. Only the events a frame itself
// yields are kept, presence.enter and the presence.zone_dwell of a zone
// change; exits come from the agents' sweeps, not from frames.
func (x *expectation) add(rk runKey, f *bridge.Frame, at time.Time) (int, error) {
	x.frames++
	x.frameRun[keyOfFrame(f)] = rk
	br := x.bridges[rk]
	if br == nil {
		var err error
		br, err = bridge.NewBridge(bridge.Config{ExitTimeout: sensorExitTimeout, MinDwell: sensorMinDwell, MaxFrameDelay: sensorExitTimeout}, nil)
		if err != nil {
			return 0, err
		}
		x.bridges[rk] = br
	}
	evs, err := br.Ingest(f, at)
	if err != nil {
		return 0, fmt.Errorf("replay frame %s seq %d: %w", f.DeviceID, f.Seq, err)
	}
	for i := range evs {
		ev := &evs[i]
		if len(ev.Identifiers) == 0 {
			continue
		}
		id := ev.Identifiers[0]
		ie := x.idents[id]
		if ie == nil {
			ie = &identExpect{edge: rk.edge, enters: map[runKey][]string{}}
			x.idents[id] = ie
		}
		switch {
		case ev.Name == bridge.EventEnter:
			ie.enters[rk] = append(ie.enters[rk], ev.ID)
		case ev.Name == bridge.EventZoneDwell && strings.HasSuffix(ev.ID, "-dwell") && !strings.HasSuffix(ev.ID, "-exit-dwell"):
			if secs, _ := ev.Properties["dwell_seconds"].(float64); secs >= (sensorMinDwell + dwellMargin).Seconds() {
				ie.dwells = append(ie.dwells, dwell{ev.ID, secs})
			}
		}
	}
	return len(evs), nil
}

// sensorReport is sensor_sigkill's part of the report.
type sensorReport struct {
	Visits        int64 `json:"visits"`
	FramesSent    int64 `json:"frames_sent"`
	FramesAcked   int   `json:"frames_acked"`
	FramesUnacked int64 `json:"frames_unacked"`
	Resends       int64 `json:"resends"`
	Reconnects    int64 `json:"reconnects"`
	Identifiers   int   `json:"identifiers"`
	// EntersExpected are the presence.enter events the runs' bridges
	// derived from PUBACKed frames; EntersExact those at the hub by id,
	// EntersOtherFrame those stood in for by an enter of the identifier
	// from another frame PUBACKed in the same run (frames racing to open
	// the session), EntersMissing the rest.
	EntersExpected   int `json:"enters_expected"`
	EntersExact      int `json:"enters_exact"`
	EntersOtherFrame int `json:"enters_other_frame"`
	EntersMissing    int `json:"enters_missing"`
	// DwellsChecked are zone-change dwells (stays dwellMargin over the
	// minimum) of identifiers whose enters at the hub are exactly the
	// derived ones, DwellsMissing those not at the hub.
	DwellsChecked int `json:"dwells_checked"`
	DwellsMissing int `json:"dwells_missing"`
	// Duplicates counts presence event ids the hub holds twice.
	Duplicates int `json:"duplicates"`
	// OverBound counts identifiers with more enters at the hub than
	// expected plus one per kill of their edge, or more exits than
	// enters; Unclosed those opened in the last run without an exit.
	OverBound int   `json:"over_bound"`
	Unclosed  int   `json:"unclosed"`
	HubEnters int   `json:"hub_enters"`
	HubDwells int   `json:"hub_dwells"`
	HubExits  int   `json:"hub_exits"`
	Kills     []int `json:"kills"`
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
	var out []protocol.Event
	for i := range evs {
		ev := &evs[i]
		if ev.Channel == protocol.ChannelIoT && strings.HasPrefix(ev.Name, "presence.") && ev.HasIdentifier(id.Type, id.Value) {
			out = append(out, *ev)
		}
	}
	return out, nil
}

// verifySensors checks the hub against the PUBACKed frames. A killed agent
// loses its presence sessions (they live in memory): a session open at the
// kill never gets its presence.exit, and the next run opens a new session
// for the identifier, with a presence.enter of its own. So, per identifier
// (a beacon id, or a hashed MAC address, fresh per visit):
//
//   - every presence.enter that a fresh bridge derives from the frames one
//     run of an agent PUBACKed, replayed in PUBACK order, is at the hub, by
//     id; or, where frames of two sensors raced to open the session after
//     a restart, an enter of the identifier from another frame PUBACKed in
//     that run is;
//   - every presence.zone_dwell of a zone change so derived (after a stay
//     of at least 1.5 times the minimum dwell) is at the hub by id, for
//     identifiers whose enters at the hub are exactly the derived ones (an
//     agent may split a session when one sensor's frames come so late that
//     another's show the identifier unseen for the exit timeout);
//   - the hub holds no presence event id twice;
//   - the hub holds at most the expected enters plus one per kill of the
//     identifier's edge, and no more exits than enters;
//   - an identifier with an enter in the last run of its agent has an exit
//     (its session closed after the traffic).
//
// A PUBACK sent before the frame's events are fsynced shows up as an enter
// or dwell of a PUBACKed frame missing at the hub.
func verifySensors(ctx context.Context, t *topology, x *expectation) (sensorReport, string, error) {
	r := sensorReport{FramesAcked: x.frames, Identifiers: len(x.idents), Kills: slices.Clone(x.kills)}
	ids := make([]protocol.Identifier, 0, len(x.idents))
	for id := range x.idents {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b protocol.Identifier) int { return strings.Compare(a.String(), b.String()) })
	cache := map[string][]protocol.Event{}
	var first string
	fail := func(id protocol.Identifier, format string, args ...any) {
		if first == "" {
			first = id.String() + ": " + fmt.Sprintf(format, args...)
		}
	}
	for _, id := range ids {
		ie := x.idents[id]
		evs, err := hubPresence(ctx, t, id, cache)
		if err != nil {
			return r, first, err
		}
		seen := map[string]bool{}
		var enters, exits int
		enterRuns := map[runKey][]string{}
		for _, ev := range evs {
			if seen[ev.ID] {
				r.Duplicates++
				fail(id, "event %s twice at the hub", ev.ID)
			}
			seen[ev.ID] = true
			switch ev.Name {
			case bridge.EventEnter:
				enters++
				if k, ok := keyOfEventID(ev.ID); ok {
					if rk, ok := x.frameRun[k]; ok {
						enterRuns[rk] = append(enterRuns[rk], ev.ID)
					}
				}
			case bridge.EventExit:
				exits++
			case bridge.EventZoneDwell:
				r.HubDwells++
			}
		}
		r.HubEnters += enters
		r.HubExits += exits
		expected, allExact := 0, true
		for rk, want := range ie.enters {
			expected += len(want)
			r.EntersExpected += len(want)
			var others int
			for _, got := range enterRuns[rk] {
				if !slices.Contains(want, got) {
					others++
				}
			}
			for _, w := range want {
				switch {
				case seen[w]:
					r.EntersExact++
				case others > 0:
					others--
					r.EntersOtherFrame++
					allExact = false
				default:
					r.EntersMissing++
					allExact = false
					fail(id, "presence.enter %s of a frame PUBACKed by run %d of edge %d is not at the hub (hub has %d enters)", w, rk.run, rk.edge, enters)
				}
			}
		}
		// A session the agent split (a sensor's frames came so late that
		// another's showed the identifier unseen for the exit timeout)
		// yields an enter where the replay has a zone change: the dwells
		// are checked where the hub has exactly the derived enters.
		if allExact && enters == expected {
			for _, w := range ie.dwells {
				r.DwellsChecked++
				if !seen[w.id] {
					r.DwellsMissing++
					fail(id, "presence.zone_dwell %s (%.3fs) of a PUBACKed frame is not at the hub", w.id, w.seconds)
				}
			}
		}
		if enters > expected+x.kills[ie.edge] || exits > enters {
			r.OverBound++
			fail(id, "%d enters and %d exits at the hub, %d enters expected, %d kills of its edge", enters, exits, expected, x.kills[ie.edge])
		}
		if len(ie.enters[runKey{ie.edge, x.lastRun[ie.edge]}]) > 0 && exits == 0 {
			r.Unclosed++
			fail(id, "opened in the last run of edge %d but no presence.exit at the hub", ie.edge)
		}
	}
	return r, first, nil
}

// sensorFailures counts the identifiers' failed checks of r.
func (r *sensorReport) failures() int {
	return r.EntersMissing + r.DwellsMissing + r.Duplicates + r.OverBound + r.Unclosed
}

// verifySensors runs verifySensors on the scenario's ledger and sums it
// up as a verdict.
func (sc *scenario) verifySensors(ctx context.Context) (verdict, *sensorReport, error) {
	x, err := sc.sensors.expect()
	if err != nil {
		return verdict{}, nil, err
	}
	r, first, err := verifySensors(ctx, sc.topo, x)
	if fs := sc.sensorSum.Frames; fs != nil {
		r.Visits, r.FramesSent, r.FramesUnacked = fs.Visits, fs.FramesSent, fs.FramesUnacked
		r.Resends, r.Reconnects = fs.Resends, fs.Reconnects
	}
	r.HTTPAccepted, r.HTTPRejected = sc.sensorSum.Accepted, sc.sensorSum.Rejected
	v := verdict{acknowledged: r.FramesAcked, atHub: int64(r.HubEnters + r.HubDwells + r.HubExits),
		customersChecked: r.Identifiers, mismatches: r.failures(), firstMismatch: first, perIdentifier: true}
	return v, &r, err
}
