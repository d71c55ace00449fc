package simulate

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/protocol"
)

// Defaults of FrameConfig.
const (
	DefaultFrameInterval  = time.Second
	DefaultMaxVisits      = 2000
	DefaultAckTimeout     = 30 * time.Second
	DefaultFrameWindow    = 16
	DefaultConnectTimeout = 30 * time.Second
	// MaxFrameWindow keeps a sensor's unacknowledged frames well inside
	// the edge's 64-frame duplicate window, so that a resent frame is
	// never taken for a stale one.
	MaxFrameWindow = 32
	// zoneGap is how many intervals a beacon goes unheard between zones.
	// With at most one missed interval besides, no beacon of a visit is
	// unheard for more than zoneGap+2 intervals, well under the exit
	// timeout of at least 8 intervals.
	zoneGap = 3
	// maxFrameSightings bounds the sightings of one frame, leaving room
	// for a health record under bridge.MaxRecords.
	maxFrameSightings = 120
	// healthEvery is how often a sensor adds a health record; an idle
	// sensor sends a frame with only that record.
	healthEvery = 30 * time.Second
)

// Topic returns the MQTT topic a device publishes its frames to.
func Topic(id bridge.DeviceID) string { return "unico/v1/dev/" + id.String() + "/frame" }

// SensorID returns the device id of the presence sensor covering zone
// (1 to NumZones) of store (an index in Population.Stores).
func SensorID(store int, zone uint8) bridge.DeviceID {
	return bridge.DeviceID{0x02, 'u', 'c', byte(store >> 16), byte(store >> 8), byte(store), 0, zone}
}

// FrameConfig configures the simulated presence sensors of a run
// (RunConfig.Frames): one BLE/Wi-Fi scanner per zone of every store, each
// an MQTT client of its store's edge agent that publishes QoS 1 frames
// (firmware-bridge/FRAME.md) with the sightings of the visits in its zone.
// Zero fields take the documented defaults.
type FrameConfig struct {
	// Brokers are the edge agents' device listeners, mqtt://host:port or
	// tcp://host:port, one per edge in the order of RunConfig.Edges.
	// Required.
	Brokers []string
	// Credentials maps a device id (16 hex digits) to its password, as the
	// agent's --device-credentials file does. Empty: sensors connect
	// without credentials.
	Credentials map[string]string
	// Interval is how often a sensor reports what it saw (default
	// DefaultFrameInterval). It must be at most an eighth of ExitTimeout
	// and a sixth of MinDwell: a beacon goes unheard for three intervals
	// between zones, and stays must still be clearly longer or shorter
	// than MinDwell.
	Interval time.Duration
	// MinDwell, ExitTimeout and RSSIThreshold must be the edge agents'
	// --presence-min-dwell, --presence-exit-timeout and
	// --presence-rssi-threshold (defaults: the bridge's defaults). Visits
	// are planned around them, and the expected events are computed with
	// them.
	MinDwell      time.Duration
	ExitTimeout   time.Duration
	RSSIThreshold int
	// MaxVisits bounds the visits one edge tracks at a time, from their
	// start until their presence.exit is due (default DefaultMaxVisits);
	// further visits are skipped and counted. Keep it well under the
	// agent's limit of tracked identifiers (10,000).
	MaxVisits int
	// Window bounds each sensor's unacknowledged frames (default
	// DefaultFrameWindow, at most MaxFrameWindow). A sensor with a full
	// window drops the sightings of that interval, counted.
	Window int
	// AckTimeout is how long a sensor waits for a PUBACK before it drops
	// the connection, reconnects and resends (default DefaultAckTimeout).
	AckTimeout time.Duration
	// ConnectTimeout bounds the first connection of every sensor (default
	// DefaultConnectTimeout).
	ConnectTimeout time.Duration
	// OnAcked, when set, is called with every PUBACKed frame, in the
	// order the frames are fed to the expected-events bridge: sequence
	// order per sensor. It runs under the sensor's lock and must return
	// quickly.
	OnAcked func(AckedFrame)
}

// AckedFrame is a PUBACKed frame, as FrameConfig.OnAcked sees it.
type AckedFrame struct {
	// Edge is the index of the edge (in FrameConfig.Brokers) that
	// acknowledged the frame.
	Edge  int
	Frame *bridge.Frame
	// AckedAt is when the PUBACK arrived; ConnectedAt when the connection
	// that carried it was established, which tells which run of a
	// restarted agent acknowledged the frame.
	AckedAt, ConnectedAt time.Time
	// Sends counts the times the frame was published, SentAt when first:
	// the agent that acknowledged the frame received it between SentAt
	// and AckedAt.
	Sends  int
	SentAt time.Time
}

func (c *FrameConfig) setDefaults(edges int) error {
	if len(c.Brokers) != edges {
		return fmt.Errorf("frames: %d device brokers for %d edges, want one per edge: %w", len(c.Brokers), edges, ErrInvalidConfig)
	}
	for _, b := range c.Brokers {
		if _, err := brokerAddr(b); err != nil {
			return err
		}
	}
	if c.Interval == 0 {
		c.Interval = DefaultFrameInterval
	}
	if c.MinDwell == 0 {
		c.MinDwell = bridge.DefaultMinDwell
	}
	if c.ExitTimeout == 0 {
		c.ExitTimeout = bridge.DefaultExitTimeout
	}
	if c.RSSIThreshold == 0 {
		c.RSSIThreshold = bridge.DefaultRSSIThreshold
	}
	if c.MaxVisits == 0 {
		c.MaxVisits = DefaultMaxVisits
	}
	if c.Window == 0 {
		c.Window = DefaultFrameWindow
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	switch {
	case c.Interval < 10*time.Millisecond:
		return fmt.Errorf("frames: interval %v: want at least 10ms: %w", c.Interval, ErrInvalidConfig)
	case c.MinDwell < 0 || c.ExitTimeout < 0 || c.AckTimeout < 0 || c.ConnectTimeout < 0:
		return fmt.Errorf("frames: negative duration: %w", ErrInvalidConfig)
	case c.Interval*8 > c.ExitTimeout:
		return fmt.Errorf("frames: interval %v: want at most an eighth of the exit timeout %v: %w", c.Interval, c.ExitTimeout, ErrInvalidConfig)
	case c.Interval*zoneGap*2 > c.MinDwell:
		return fmt.Errorf("frames: interval %v: want at most a sixth of the minimum dwell %v: %w", c.Interval, c.MinDwell, ErrInvalidConfig)
	case c.RSSIThreshold < -110 || c.RSSIThreshold > -20:
		return fmt.Errorf("frames: rssi threshold %d: want -110 to -20 dBm: %w", c.RSSIThreshold, ErrInvalidConfig)
	case c.MaxVisits < 0 || c.Window < 0 || c.Window > MaxFrameWindow:
		return fmt.Errorf("frames: max visits %d, window %d: want >= 0 and a window of at most %d: %w", c.MaxVisits, c.Window, MaxFrameWindow, ErrInvalidConfig)
	}
	for id := range c.Credentials {
		var d bridge.DeviceID
		if err := d.UnmarshalText([]byte(id)); err != nil || d.String() != id {
			return fmt.Errorf("frames: credentials: device id %q: want 16 lower-case hex digits: %w", id, ErrInvalidConfig)
		}
	}
	return nil
}

// brokerAddr returns host:port of an mqtt:// or tcp:// URL.
func brokerAddr(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "mqtt" && u.Scheme != "tcp") || u.Host == "" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
		return "", fmt.Errorf("frames: device broker %q: want mqtt://host:port: %w", s, ErrInvalidConfig)
	}
	return u.Host, nil
}

// FrameSummary is what the sensors sent, in Summary.Frames.
type FrameSummary struct {
	Sensors       int   `json:"sensors"`
	Visits        int64 `json:"visits"`
	VisitsSkipped int64 `json:"visits_skipped"`
	// FramesSent counts frames published at least once; FramesAcked those
	// PUBACKed; FramesUnacked those still without PUBACK at the end.
	FramesSent    int64 `json:"frames_sent"`
	FramesAcked   int64 `json:"frames_acked"`
	FramesUnacked int64 `json:"frames_unacked"`
	Resends       int64 `json:"resends"`
	Reconnects    int64 `json:"reconnects"`
	// Sightings counts sightings in sent frames, SightingsAcked those in
	// PUBACKed frames and WeakAcked the acknowledged ones below the RSSI
	// threshold; SightingsDropped those a full window kept from being
	// sent.
	Sightings        int64   `json:"sightings"`
	SightingsAcked   int64   `json:"sightings_acked"`
	WeakAcked        int64   `json:"weak_sightings_acked"`
	SightingsDropped int64   `json:"sightings_dropped"`
	FramesPerSecond  float64 `json:"frames_acked_per_s"`
	SightingsPerSec  float64 `json:"sightings_acked_per_s"`
	PubackP50        float64 `json:"puback_p50_ms"`
	PubackP99        float64 `json:"puback_p99_ms"`
	// ExpectedEvents are the events the edges' bridges derive from the
	// PUBACKed frames, by name, and ExpectedTotal their sum: loadgen
	// feeds every PUBACKed frame, at its PUBACK time, to its own bridge
	// per edge configured like the agents'. Presence exits come
	// ExitTimeout after a visit's last sighting. The figures are an
	// estimate within a few events, not a count to check the hub by: an
	// agent stamps sightings with its receive times and runs frames in
	// the order they arrive, loadgen with the PUBACKs' times and order,
	// so a stay close to MinDwell (a visit cut short by the end of the
	// run) may yield presence.zone_dwell on one side only, and another
	// sensor's frame may open a session (PresenceExpectation says what
	// is exact). Exact is false when the figures may be further off (a
	// sensor reconnected, so an agent may have restarted; frames were
	// left unacknowledged; or sessions were evicted).
	ExpectedEvents map[string]int64 `json:"expected_events"`
	ExpectedTotal  int64            `json:"expected_events_total"`
	Exact          bool             `json:"expected_exact"`
}

type frameStats struct {
	visits, skipped, sent, acked, resends, reconnects atomic.Int64
	sightings, sightingsAcked, weakAcked, dropped     atomic.Int64
	lat                                               latencyHist
}

// fleet is the run's sensors, one set per edge.
type fleet struct {
	cfg   FrameConfig
	log   *slog.Logger
	truth *Truth
	edges []*edgeFleet
	st    frameStats

	beaconOwner map[string]int // beacon id hex → person

	busyMu sync.Mutex
	busy   []time.Time // per person: no new visit before

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // tick loops
	conns  sync.WaitGroup // connection loops and ack waiters
}

type edgeFleet struct {
	f       *fleet
	idx     int
	addr    string
	sensors map[int]*[NumZones]*sensor // by store index
	rng     *rand.Rand                 // tick loop only

	mu     sync.Mutex
	visits []*activeVisit

	mirrorMu  sync.Mutex
	mirror    *bridge.Bridge
	expected  map[string]int64
	macOwner  map[string]int // open mac_hash sessions → person
	evictions uint64
}

type activeVisit struct {
	v     *Visit
	start time.Time
	ends  []time.Time // end of each stay
	free  time.Time   // when the edge has closed the session
	// missed is set when the last interval's advertisement was missed.
	missed bool
}

func newFleet(ctx context.Context, pop *Population, cfg FrameConfig, truth *Truth, logger *slog.Logger) (*fleet, error) {
	f := &fleet{cfg: cfg, log: logger.With("component", "sensors"), truth: truth,
		beaconOwner: make(map[string]int), busy: make([]time.Time, len(pop.Persons))}
	for i := range pop.Persons {
		if b := pop.Persons[i].BeaconID; b != "" {
			f.beaconOwner[b] = i
		}
	}
	zoneNames := make(map[uint8]string, NumZones)
	for i, n := range zones {
		zoneNames[uint8(i+1)] = n
	}
	for e, b := range cfg.Brokers {
		addr, _ := brokerAddr(b)
		mirror, err := bridge.NewBridge(bridge.Config{RSSIThreshold: cfg.RSSIThreshold, ExitTimeout: cfg.ExitTimeout,
			MinDwell: cfg.MinDwell, ZoneMap: zoneNames}, nil)
		if err != nil {
			return nil, fmt.Errorf("frames: %w", err)
		}
		f.edges = append(f.edges, &edgeFleet{f: f, idx: e, addr: addr, sensors: map[int]*[NumZones]*sensor{},
			rng: rand.New(rand.NewPCG(rand.Uint64(), uint64(e))), mirror: mirror,
			expected: map[string]int64{}, macOwner: map[string]int{}})
	}
	f.ctx, f.cancel = context.WithCancel(ctx)
	for s := range pop.Stores {
		ef := f.edges[s%len(f.edges)]
		var set [NumZones]*sensor
		for z := range NumZones {
			id := SensorID(s, uint8(z+1))
			pw, ok := cfg.Credentials[id.String()]
			if !ok && len(cfg.Credentials) > 0 {
				f.cancel()
				return nil, fmt.Errorf("frames: credentials: no password for device %s (store %s, zone %d): %w", id, pop.Stores[s].ID, z+1, ErrInvalidConfig)
			}
			set[z] = newSensor(ef, id, uint8(z+1), pw)
		}
		ef.sensors[s] = &set
	}
	return f, nil
}

// connect connects every sensor, failing when one cannot connect within
// ConnectTimeout or is refused.
func (f *fleet) connect() error {
	ctx, cancel := context.WithTimeout(f.ctx, f.cfg.ConnectTimeout)
	defer cancel()
	var (
		mu    sync.Mutex
		first error
		wg    sync.WaitGroup
		sem   = make(chan struct{}, 32)
	)
	for _, s := range f.sensors() {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := s.connectFirst(ctx); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
				cancel()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return first
	}
	for _, s := range f.sensors() {
		f.conns.Go(s.connLoop)
	}
	return nil
}

func (f *fleet) sensors() []*sensor {
	var out []*sensor
	for _, e := range f.edges {
		for _, k := range slices.Sorted(mapKeys(e.sensors)) {
			out = append(out, e.sensors[k][:]...)
		}
	}
	return out
}

func mapKeys[V any](m map[int]V) func(func(int) bool) {
	return func(yield func(int) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// run starts every edge's tick loop.
func (f *fleet) run() {
	for _, e := range f.edges {
		f.wg.Go(e.loop)
	}
}

// startVisit begins v now, unless its person is still in a store (or
// leaving one: the edge must have closed the person's last session first)
// or the edge tracks MaxVisits visits.
func (f *fleet) startVisit(v *Visit, now time.Time) bool {
	e := f.edges[v.Store%len(f.edges)]
	f.busyMu.Lock()
	defer f.busyMu.Unlock()
	if now.Before(f.busy[v.Person]) {
		f.st.skipped.Add(1)
		return false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.visits) >= f.cfg.MaxVisits {
		f.st.skipped.Add(1)
		return false
	}
	av := &activeVisit{v: v, start: now}
	at := now
	for _, s := range v.Stays {
		at = at.Add(time.Duration(s.Dwell * float64(f.cfg.MinDwell)))
		av.ends = append(av.ends, at)
	}
	av.free = at.Add(f.cfg.ExitTimeout + max(f.cfg.ExitTimeout/2, 4*f.cfg.Interval))
	f.busy[v.Person] = av.free
	e.visits = append(e.visits, av)
	if v.Kind == bridge.KindMACHash {
		e.mirrorMu.Lock()
		e.macOwner[hex.EncodeToString(v.ID)] = v.Person
		e.mirrorMu.Unlock()
	}
	f.st.visits.Add(1)
	return true
}

// loop reports the edge's visits every Interval until the fleet stops.
func (e *edgeFleet) loop() {
	t := time.NewTicker(e.f.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-e.f.ctx.Done():
			return
		case now := <-t.C:
			e.tick(now)
		}
	}
}

type pendingSighting struct {
	s  bridge.Sighting
	at time.Time
}

// tick hands every sensor of the edge what it saw in the last interval,
// lets the sensors publish, and closes timed-out sessions in the mirror.
func (e *edgeFleet) tick(now time.Time) {
	cfg := &e.f.cfg
	seen := map[*sensor][]pendingSighting{}
	e.mu.Lock()
	keep := e.visits[:0]
	for _, av := range e.visits {
		if !now.Before(av.free) {
			continue
		}
		keep = append(keep, av)
		i, _ := slices.BinarySearchFunc(av.ends, now, func(t, target time.Time) int { return t.Compare(target) })
		if i >= len(av.ends) {
			continue // the visit is over
		}
		if av.ends[i].Sub(now) < zoneGap*cfg.Interval {
			// Walking to the next zone: no scanner hears it well. The gap
			// keeps the order of the last sighting in one zone and the
			// first in the next the same at the edge, whatever the
			// scanners' frames' delays; a stay still lasts from its first
			// sighting to the next stay's first.
			continue
		}
		if !av.missed && e.rng.IntN(10) == 0 {
			av.missed = true // this advertisement was missed; never two in a row
			continue
		}
		av.missed = false
		set := e.sensors[av.v.Store]
		zone := av.v.Stays[i].Zone
		// Heard a little before the report; consecutive sightings stay
		// at least 3/4 of an interval apart, so that delays between
		// frames do not reorder them at the edge.
		at := now.Add(-time.Duration(e.rng.Int64N(int64(cfg.Interval / 4))))
		strong := min(cfg.RSSIThreshold+5+e.rng.IntN(25), max(-20, cfg.RSSIThreshold))
		s := set[zone-1]
		seen[s] = append(seen[s], pendingSighting{bridge.Sighting{Kind: av.v.Kind, ID: av.v.ID, RSSI: int8(strong), Zone: zone}, at})
		if e.rng.IntN(10) < 3 {
			// A neighbouring zone's scanner hears it faintly.
			nz := zone + 1
			if zone == uint8(NumZones) || (zone > 1 && e.rng.IntN(2) == 0) {
				nz = zone - 1
			}
			weak := max(cfg.RSSIThreshold-3-e.rng.IntN(15), -128)
			n := set[nz-1]
			seen[n] = append(seen[n], pendingSighting{bridge.Sighting{Kind: av.v.Kind, ID: av.v.ID, RSSI: int8(weak), Zone: nz}, at})
		}
	}
	clear(e.visits[len(keep):])
	e.visits = keep
	e.mu.Unlock()
	for _, k := range slices.Sorted(mapKeys(e.sensors)) {
		for _, s := range e.sensors[k] {
			s.report(now, seen[s])
			s.watchdog(now)
		}
	}
	// The agent closes a session once the sensor that saw it last has
	// reported ExitTimeout past the sighting (or, for a silent sensor, by
	// the wall clock), on a tick of its own; a session of the mirror
	// closed by the wall clock that early could be split by a frame the
	// agent received late but still in time. So the mirror's wall clock
	// runs one ExitTimeout behind: the exit's id comes from the last
	// sighting either way.
	e.mirrorMu.Lock()
	e.account(e.mirror.Tick(now.Add(-cfg.ExitTimeout)))
	e.mirrorMu.Unlock()
}

// acked feeds a PUBACKed frame to the mirror bridge.
func (e *edgeFleet) acked(f *bridge.Frame, at time.Time) {
	e.mirrorMu.Lock()
	defer e.mirrorMu.Unlock()
	evs, err := e.mirror.Ingest(f, at)
	if err != nil {
		e.f.log.Warn("frame not replayed", "device", f.DeviceID.String(), "seq", f.Seq, "err", err)
	}
	e.account(evs)
}

// account counts the mirror's events and credits them to their persons.
// Callers hold mirrorMu.
func (e *edgeFleet) account(evs []protocol.Event) {
	for i := range evs {
		ev := &evs[i]
		e.expected[ev.Name]++
		if len(ev.Identifiers) == 0 {
			continue
		}
		id := ev.Identifiers[0]
		person, ok := -1, false
		switch id.Type {
		case bridge.KindBeaconID.IdentifierType():
			person, ok = e.f.beaconOwner[id.Value]
		case bridge.KindMACHash.IdentifierType():
			person, ok = e.macOwner[id.Value]
			if ok && ev.Name == bridge.EventExit {
				delete(e.macOwner, id.Value)
			}
		}
		if ok && e.f.truth != nil {
			e.f.truth.RecordPresence(person, id)
		}
	}
}

// stop ends the visits, waits up to drain for every frame's PUBACK, closes
// the mirror's sessions and disconnects the sensors.
func (f *fleet) stop(drain time.Duration) {
	f.cancel()
	f.wg.Wait()
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) && f.unacked(false) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	now := time.Now()
	for _, e := range f.edges {
		e.mirrorMu.Lock()
		e.account(e.mirror.Flush(now))
		e.evictions = e.mirror.Stats().Evictions
		e.mirrorMu.Unlock()
	}
	for _, s := range f.sensors() {
		s.close()
	}
	f.conns.Wait()
}

// unacked counts the frames not yet PUBACKed (pending true) or not yet
// handed to the mirror (pending false: PUBACKed frames behind an
// unacknowledged one count too).
func (f *fleet) unacked(pending bool) int64 {
	var n int64
	for _, s := range f.sensors() {
		s.mu.Lock()
		for _, of := range s.unacked {
			if !pending || !of.acked {
				n++
			}
		}
		s.mu.Unlock()
	}
	return n
}

func (f *fleet) summary(elapsed time.Duration) *FrameSummary {
	lat := f.st.lat.snapshot()
	s := &FrameSummary{
		Visits: f.st.visits.Load(), VisitsSkipped: f.st.skipped.Load(),
		FramesSent: f.st.sent.Load(), FramesAcked: f.st.acked.Load(), FramesUnacked: f.unacked(true),
		Resends: f.st.resends.Load(), Reconnects: f.st.reconnects.Load(),
		Sightings: f.st.sightings.Load(), SightingsAcked: f.st.sightingsAcked.Load(),
		WeakAcked: f.st.weakAcked.Load(), SightingsDropped: f.st.dropped.Load(),
		PubackP50: round3(float64(lat.quantile(0.5)) / 1e6), PubackP99: round3(float64(lat.quantile(0.99)) / 1e6),
		ExpectedEvents: map[string]int64{},
	}
	var evictions uint64
	for _, e := range f.edges {
		s.Sensors += len(e.sensors) * NumZones
		e.mirrorMu.Lock()
		for k, v := range e.expected {
			s.ExpectedEvents[k] += v
			s.ExpectedTotal += v
		}
		evictions += e.evictions
		e.mirrorMu.Unlock()
	}
	if sec := elapsed.Seconds(); sec > 0 {
		s.FramesPerSecond = round3(float64(s.FramesAcked) / sec)
		s.SightingsPerSec = round3(float64(s.SightingsAcked) / sec)
	}
	s.Exact = s.Reconnects == 0 && f.unacked(false) == 0 && evictions == 0
	return s
}

// outFrame is a frame a sensor keeps until it is PUBACKed, resending the
// same bytes after a reconnect as firmware does.
type outFrame struct {
	f         bridge.Frame
	b         []byte
	sightings int
	weak      int
	sends     int
	sentAt    time.Time
	firstSent time.Time // the first publish
	ackedAt   time.Time
	connAt    time.Time // when the connection that acknowledged it was made
	acked     bool
}

// sensor is one simulated scanner: a device id, a boot (boot id, uptime
// at start, frame sequence) and an MQTT connection of its own.
type sensor struct {
	e        *edgeFleet
	id       bridge.DeviceID
	topic    string
	zone     uint8
	client   paho.Client
	wake     chan struct{}
	bootID   uint32
	bootedAt time.Time // when uptime was 0

	mu         sync.Mutex
	seq        uint32
	gen        int       // connection generation
	connAt     time.Time // when connection gen was established
	connected  bool
	closed     bool
	unacked    []*outFrame
	lastHealth time.Time
}

func newSensor(e *edgeFleet, id bridge.DeviceID, zone uint8, password string) *sensor {
	s := &sensor{e: e, id: id, topic: Topic(id), zone: zone, wake: make(chan struct{}, 1),
		bootID: rand.Uint32() | 1, bootedAt: time.Now().Add(-time.Minute - time.Duration(rand.Int64N(int64(30*24*time.Hour))))}
	opts := paho.NewClientOptions().AddBroker("tcp://" + e.addr).SetClientID("sensor-" + id.String()).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetKeepAlive(15 * time.Second).SetPingTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).SetOrderMatters(false).
		SetConnectionLostHandler(func(_ paho.Client, err error) { s.lost(err) })
	if password != "" {
		opts.SetUsername(id.String()).SetPassword(password)
	}
	s.client = paho.NewClient(opts)
	return s
}

// errRefused marks a connection the broker refused (bad credentials).
var errRefused = errors.New("connection refused")

func (s *sensor) dial() error {
	tok := s.client.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		s.client.Disconnect(0)
		return fmt.Errorf("sensor %s: connect to %s: timed out", s.id, s.e.addr)
	}
	if err := tok.Error(); err != nil {
		if errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
			return fmt.Errorf("sensor %s: connect to %s: %w: %w", s.id, s.e.addr, errRefused, err)
		}
		return fmt.Errorf("sensor %s: connect to %s: %w", s.id, s.e.addr, err)
	}
	return nil
}

// connectFirst connects, retrying until ctx ends; a refusal is final.
func (s *sensor) connectFirst(ctx context.Context) error {
	for {
		err := s.dial()
		if err == nil {
			s.mu.Lock()
			s.connected = true
			s.gen++
			s.connAt = time.Now()
			s.mu.Unlock()
			return nil
		}
		if errors.Is(err, errRefused) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// connLoop reconnects after a lost connection and resends the frames not
// yet PUBACKed, in sequence order.
func (s *sensor) connLoop() {
	backoff := 100 * time.Millisecond
	for {
		// Woken by a lost connection, or by close. Stopping the fleet
		// does not end this loop: frames are resent while stop drains.
		<-s.wake
		for {
			s.mu.Lock()
			done := s.closed || s.connected
			s.mu.Unlock()
			if done {
				break
			}
			if err := s.dial(); err != nil {
				s.e.f.log.Debug("sensor reconnect failed", "device", s.id.String(), "err", err)
				time.Sleep(backoff)
				backoff = min(backoff*2, 2*time.Second)
				continue
			}
			backoff = 100 * time.Millisecond
			s.e.f.st.reconnects.Add(1)
			s.mu.Lock()
			if s.closed {
				s.mu.Unlock()
				s.client.Disconnect(0)
				break
			}
			s.connected = true
			s.gen++
			s.connAt = time.Now()
			for _, of := range s.unacked {
				s.e.f.st.resends.Add(1)
				s.publish(of)
			}
			s.mu.Unlock()
		}
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed {
			return
		}
	}
}

// lost marks the connection down and wakes the connection loop.
func (s *sensor) lost(err error) {
	s.mu.Lock()
	s.lostLocked(err)
	s.mu.Unlock()
}

func (s *sensor) lostLocked(err error) {
	if !s.connected || s.closed {
		return
	}
	s.connected = false
	s.e.f.log.Info("sensor connection lost", "device", s.id.String(), "err", err)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// watchdog drops a connection whose oldest frame waited AckTimeout for
// its PUBACK; the frames are then resent on a new connection.
func (s *sensor) watchdog(now time.Time) {
	s.mu.Lock()
	stuck := s.connected && len(s.unacked) > 0 && now.Sub(s.unacked[0].sentAt) > s.e.f.cfg.AckTimeout
	s.mu.Unlock()
	if stuck {
		s.client.Disconnect(0)
		s.lost(errors.New("no PUBACK within the ack timeout"))
	}
}

func (s *sensor) uptime(t time.Time) uint64 { return uint64(t.Sub(s.bootedAt).Milliseconds()) }

// report builds frames from the interval's sightings (and a health record
// when due) and publishes them.
func (s *sensor) report(now time.Time, seen []pendingSighting) {
	s.mu.Lock()
	defer s.mu.Unlock()
	health := now.Sub(s.lastHealth) >= healthEvery
	if len(seen) == 0 && !health {
		return
	}
	st := &s.e.f.st
	for first := true; first || len(seen) > 0; first = false {
		if len(s.unacked) >= s.e.f.cfg.Window {
			st.dropped.Add(int64(len(seen)))
			return
		}
		n := min(len(seen), maxFrameSightings)
		uptime := s.uptime(now)
		of := &outFrame{f: bridge.Frame{Version: bridge.Version, Type: bridge.FrameReport, DeviceID: s.id,
			BootID: s.bootID, Seq: s.seq, UptimeMS: uptime}}
		if health {
			of.f.Records = append(of.f.Records, bridge.Record{Type: bridge.RecordHealth, Health: bridge.Health{
				Battery: bridge.BatteryUnknown, WiFiRSSI: int8(-50 - s.e.rng.IntN(20)),
				FreeHeap: 90_000 + uint32(s.e.rng.IntN(30_000)), Firmware: "unico-scan/1.4.2"}})
			s.lastHealth, health = now, false
		}
		for _, p := range seen[:n] {
			sg := p.s
			sg.AgeMS = uint32(min(uptime-min(s.uptime(p.at), uptime), 1<<32-1))
			of.f.Records = append(of.f.Records, bridge.Record{Type: bridge.RecordSighting, Sighting: sg})
			if int(sg.RSSI) < s.e.f.cfg.RSSIThreshold {
				of.weak++
			}
		}
		of.sightings = n
		seen = seen[n:]
		b, err := bridge.Encode(&of.f)
		if err != nil {
			// Only a bug in this package gets here: every field is in range.
			s.e.f.log.Error("frame not encoded", "device", s.id.String(), "err", err)
			return
		}
		of.b = b
		s.seq++
		s.unacked = append(s.unacked, of)
		st.sent.Add(1)
		st.sightings.Add(int64(n))
		if s.connected {
			s.publish(of)
		}
	}
}

// publish sends of on the current connection and waits for its PUBACK in
// the background. Callers hold mu.
func (s *sensor) publish(of *outFrame) {
	of.sentAt = time.Now()
	if of.sends == 0 {
		of.firstSent = of.sentAt
	}
	of.sends++
	gen, connAt := s.gen, s.connAt
	tok := s.client.Publish(s.topic, 1, false, of.b)
	s.e.f.conns.Go(func() {
		<-tok.Done()
		s.done(of, gen, connAt, tok.Error(), time.Now())
	})
}

// done handles the outcome of one publish of of on connection generation
// gen. PUBACKed frames go to the mirror bridge in sequence order, as the
// agent processed them.
func (s *sensor) done(of *outFrame, gen int, connAt time.Time, err error, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if gen == s.gen {
			s.lostLocked(err)
		}
		return
	}
	if of.acked {
		return
	}
	of.acked, of.ackedAt, of.connAt = true, at, connAt
	st := &s.e.f.st
	st.acked.Add(1)
	st.sightingsAcked.Add(int64(of.sightings))
	st.weakAcked.Add(int64(of.weak))
	st.lat.observe(at.Sub(of.sentAt))
	for len(s.unacked) > 0 && s.unacked[0].acked {
		head := s.unacked[0]
		s.unacked = slices.Delete(s.unacked, 0, 1)
		s.e.acked(&head.f, head.ackedAt)
		if cb := s.e.f.cfg.OnAcked; cb != nil {
			cb(AckedFrame{Edge: s.e.idx, Frame: &head.f, AckedAt: head.ackedAt, ConnectedAt: head.connAt, Sends: head.sends, SentAt: head.firstSent})
		}
	}
}

func (s *sensor) close() {
	s.mu.Lock()
	s.closed = true
	s.connected = false
	s.mu.Unlock()
	s.client.Disconnect(100)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}
