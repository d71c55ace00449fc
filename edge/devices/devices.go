// Package devices connects in-store sensors to the edge agent: it runs a
// local MQTT listener for devices (an embedded broker with per-device
// credentials) or subscribes to an existing local broker, turns their binary
// frames into presence, counter and shelf events with the firmware bridge,
// and appends those events to the agent's durable queue with channel iot.
//
// With the embedded listener a device's QoS 1 publish is acknowledged only
// after its events are fsynced in the queue: a frame the agent could not
// store gets no PUBACK and the device sends it again. Through an external
// broker the broker acknowledges the device, so frames lost there show up
// only as sequence gaps in the device registry.
//
// The bridge's sequence window and sessions move on when a frame is
// turned into events, before those are stored. So that a frame counts as
// seen only once its events are durable, the events of a frame whose
// append failed are kept (bounded per device) and stored again, unchanged,
// when the device resends the same frame; event ids are deterministic and
// the hub deduplicates by id, so storing them twice is harmless. Several
// devices' frames run through the one bridge concurrently and the appends
// proceed in parallel, but a frame is acknowledged only once the frames
// the bridge ran before it are done too: a frame's sightings may extend a
// session another device's frame opened a moment before, and its PUBACK
// must not promise a visit whose presence.enter is still on its way to
// disk (a crash then would lose the enter while the frame that relied on
// it is acknowledged). When one of those earlier frames could not be
// stored, the later one is not acknowledged either and the device resends
// it. After a crash the bridge's state is gone: resent frames are taken
// as new.
//
// Presence sessions are closed by the clock of the device that saw the
// identifier last (bridge.Config.ExitTimeout), so frames arriving late,
// after a reconnect backlog, do not split a visit; the wall clock closes
// the sessions of a device silent for ExitTimeout + MaxFrameDelay (by
// default twice the exit timeout) after the last sighting. Presence exits
// that could not be stored are retried at the next sweep.
package devices

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/internal/brokerstop"
	"github.com/unico-cdp/unico/protocol"
)

// TopicPrefix and TopicSuffix frame the topic a device publishes to:
// unico/v1/dev/<device id>/frame, the device id as 16 hex digits.
const (
	TopicPrefix = "unico/v1/dev/"
	TopicSuffix = "/frame"
	// TopicFilter subscribes to every device's frames.
	TopicFilter = TopicPrefix + "+" + TopicSuffix
)

// Appender stores events durably; *queue.Queue implements it.
type Appender interface {
	Append(ctx context.Context, events []protocol.Event) error
}

// Config configures device intake. Exactly one of ListenAddr and BrokerURL
// is set.
type Config struct {
	// ListenAddr is the embedded device broker's address, such as
	// "127.0.0.1:1884".
	ListenAddr string
	// Credentials maps a device id (16 hex digits) to its password for
	// the embedded broker; a device may publish only to its own topic.
	// Empty allows anonymous devices (for a closed in-store network).
	Credentials map[string]string
	// BrokerURL subscribes to an existing local broker instead
	// (mqtt://user:pass@host:port).
	BrokerURL string
	// Bridge configures sessionisation (RSSI threshold, exit timeout, zone
	// names). Its Source is set by the agent. A zero MaxFrameDelay
	// becomes the exit timeout here.
	Bridge bridge.Config
	// TickInterval is how often timed-out presence sessions are closed;
	// default a twentieth of the exit timeout, between 50ms and 5s.
	TickInterval time.Duration
	// AppendTimeout bounds how long a frame waits for the queue; default
	// 10s. A frame that could not be stored is not acknowledged (embedded
	// listener) so the device resends it.
	AppendTimeout time.Duration
}

// maxPendingFrames bounds, per device, the frames whose events could not
// be stored and are kept for the device's resend: a device keeps fewer
// frames unacknowledged than the bridge's 64-frame window.
const maxPendingFrames = 64

// maxUnstoredExits bounds the presence exits (and their dwells) kept for
// another attempt after the queue refused them.
const maxUnstoredExits = 10_000

// Devices is the running device intake.
type Devices struct {
	cfg Config
	br  *bridge.Bridge
	app Appender
	log *slog.Logger

	// mu serialises the bridge (frames from several devices arrive
	// concurrently) and guards pending.
	mu sync.Mutex
	// pending holds, per device id, the frames whose events are not
	// stored yet, oldest first.
	pending map[string][]*pendingFrame
	// unstored are session exits the queue refused; Run's loop only.
	unstored []protocol.Event
	// last is the frame most recently run through the bridge; guarded
	// by mu.
	last *ticket

	failed, replayed, dropped prometheus.Counter
}

// frameKey identifies one frame of a device: its boot id and sequence
// number, and its checksum and length, so that only the very bytes sent
// before match.
type frameKey struct {
	boot, seq, crc uint32
	size           int
}

// pendingFrame is a frame the bridge turned into events that are not
// stored yet.
type pendingFrame struct {
	key    frameKey
	events []protocol.Event
}

// ticket is one frame's passage through the bridge: done is closed once
// its events are stored or refused and every frame before it is done
// too; failed tells which (set before done is closed).
type ticket struct {
	prev   *ticket
	done   chan struct{}
	failed bool
}

// errEarlierFrame is handle's error for a frame stored after a frame the
// bridge ran before it could not be.
var errEarlierFrame = errors.New("an earlier frame's events were not stored")

// keyOf reads the key of payload, a frame, without decoding it; ok is
// false for a payload too short to be one.
func keyOf(payload []byte) (k frameKey, ok bool) {
	if len(payload) < bridge.MinFrameBytes {
		return k, false
	}
	n := len(payload)
	return frameKey{
		boot: binary.LittleEndian.Uint32(payload[12:]),
		seq:  binary.LittleEndian.Uint32(payload[16:]),
		crc:  binary.LittleEndian.Uint32(payload[n-bridge.ChecksumBytes:]),
		size: n,
	}, true
}

// ErrConfig is wrapped by configuration errors.
var ErrConfig = errors.New("invalid device config")

// New validates cfg and returns a Devices; Run starts it.
func New(cfg Config, app Appender, logger *slog.Logger) (*Devices, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if (cfg.ListenAddr == "") == (cfg.BrokerURL == "") {
		return nil, fmt.Errorf("%w: set exactly one of device-mqtt-addr and device-broker-url", ErrConfig)
	}
	for id := range cfg.Credentials {
		if len(id) != 16 || strings.Trim(id, "0123456789abcdef") != "" {
			return nil, fmt.Errorf("%w: device credentials: id %q is not 16 lower-case hex digits", ErrConfig, id)
		}
	}
	exit := cfg.Bridge.ExitTimeout
	if exit <= 0 {
		exit = bridge.DefaultExitTimeout
	}
	if cfg.Bridge.MaxFrameDelay == 0 {
		cfg.Bridge.MaxFrameDelay = exit
	}
	if cfg.TickInterval <= 0 {
		cfg.TickInterval = min(max(exit/20, 50*time.Millisecond), 5*time.Second)
	}
	if cfg.AppendTimeout <= 0 {
		cfg.AppendTimeout = 10 * time.Second
	}
	br, err := bridge.NewBridge(cfg.Bridge, logger)
	if err != nil {
		return nil, err
	}
	return &Devices{
		cfg: cfg, br: br, app: app, log: logger.With("component", "devices"),
		pending: make(map[string][]*pendingFrame),
		failed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unico_edge_device_frames_unstored_total",
			Help: "Device frames whose events could not be stored in the queue (not acknowledged to the device when it uses the embedded listener).",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unico_edge_device_frames_replayed_total",
			Help: "Resent device frames whose events, not stored the first time, were stored again as first derived.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "unico_edge_device_events_dropped_total",
			Help: "Device events given up after the queue refused them: frames beyond the per-device bound of frames awaiting a resend, or presence exits beyond the retry bound.",
		}),
	}, nil
}

// Collectors returns the bridge's and intake's metrics.
func (d *Devices) Collectors() []prometheus.Collector {
	return []prometheus.Collector{d.br, d.failed, d.replayed, d.dropped}
}

// Registry returns what the bridge knows of each device, for /v1/status.
func (d *Devices) Registry() []bridge.DeviceInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.br.Devices()
}

// handle turns one frame into events and stores them. It returns an error
// when the events could not be stored.
func (d *Devices) handle(ctx context.Context, topic string, payload []byte) error {
	id, ok := deviceFromTopic(topic)
	if !ok {
		return fmt.Errorf("topic %q is not %s<device>%s", topic, TopicPrefix, TopicSuffix)
	}
	key, keyed := keyOf(payload)
	d.mu.Lock()
	p := d.findPending(id, key, keyed)
	var evs []protocol.Event
	if p != nil {
		// A resend of a frame whose events were not stored: the bridge
		// has moved on, so store what it derived then.
		evs = p.events
		d.replayed.Inc()
	} else {
		var err error
		evs, err = d.br.HandleDeviceMessage(id, payload, time.Now())
		if err != nil {
			d.mu.Unlock()
			// Counted and logged by the bridge; a malformed frame is not
			// worth a resend (and changed no session).
			return nil
		}
		if len(evs) > 0 && keyed {
			p = &pendingFrame{key: key, events: evs}
			d.addPending(id, p)
		}
	}
	t := d.nextTicket()
	d.mu.Unlock()
	err := d.store(ctx, evs)
	if err == nil && p != nil {
		d.mu.Lock()
		d.removePending(id, p)
		d.mu.Unlock()
	}
	return d.finish(ctx, t, err)
}

// nextTicket returns the ticket of a frame the bridge just ran; it follows
// the previous frame's when that one is still in flight. Callers hold mu.
func (d *Devices) nextTicket() *ticket {
	t := &ticket{prev: d.last, done: make(chan struct{})}
	if t.prev != nil {
		select {
		case <-t.prev.done:
			t.prev = nil // done before this frame ran: nothing to wait for
		default:
		}
	}
	d.last = t
	return t
}

// finish waits until the frames before t are done, then marks t done with
// err, or errEarlierFrame when one of those failed.
func (d *Devices) finish(ctx context.Context, t *ticket, err error) error {
	if p := t.prev; p != nil {
		select {
		case <-p.done:
			if p.failed && err == nil {
				err = errEarlierFrame
			}
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
		}
		t.prev = nil
	}
	t.failed = err != nil
	close(t.done)
	return err
}

// findPending returns the pending frame of device id with key. Callers
// hold mu.
func (d *Devices) findPending(id string, key frameKey, keyed bool) *pendingFrame {
	if !keyed {
		return nil
	}
	for _, p := range d.pending[id] {
		if p.key == key {
			return p
		}
	}
	return nil
}

// addPending keeps p until its events are stored, forgetting the device's
// oldest pending frame beyond maxPendingFrames. Callers hold mu.
func (d *Devices) addPending(id string, p *pendingFrame) {
	ps := d.pending[id]
	if len(ps) >= maxPendingFrames {
		old := ps[0]
		d.dropped.Add(float64(len(old.events)))
		d.log.Warn("device events given up: too many frames awaiting a resend", "device", id, "seq", old.key.seq, "events", len(old.events))
		ps = slices.Delete(ps, 0, 1)
	}
	d.pending[id] = append(ps, p)
}

// removePending forgets p, whose events are stored. Callers hold mu.
func (d *Devices) removePending(id string, p *pendingFrame) {
	ps := d.pending[id]
	if i := slices.Index(ps, p); i >= 0 {
		ps = slices.Delete(ps, i, i+1)
	}
	if len(ps) == 0 {
		delete(d.pending, id)
	} else {
		d.pending[id] = ps
	}
}

func (d *Devices) store(ctx context.Context, evs []protocol.Event) error {
	if len(evs) == 0 {
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, d.cfg.AppendTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := d.app.Append(actx, evs)
		if err == nil {
			return nil
		}
		select {
		case <-actx.Done():
			d.failed.Inc()
			d.log.Warn("device events not stored", "events", len(evs), "err", err)
			return err
		case <-time.After(min(time.Duration(attempt+1)*100*time.Millisecond, time.Second)):
		}
	}
}

func deviceFromTopic(t string) (string, bool) {
	if !strings.HasPrefix(t, TopicPrefix) || !strings.HasSuffix(t, TopicSuffix) {
		return "", false
	}
	id := t[len(TopicPrefix) : len(t)-len(TopicSuffix)]
	if id == "" || strings.Contains(id, "/") {
		return "", false
	}
	return id, true
}

// Run serves devices until ctx is cancelled, then closes open presence
// sessions (their exits are stored).
func (d *Devices) Run(ctx context.Context) error {
	errc := make(chan error, 1)
	if d.cfg.ListenAddr != "" {
		ln, err := net.Listen("tcp", d.cfg.ListenAddr)
		if err != nil {
			return fmt.Errorf("device-mqtt-addr: %w", err)
		}
		go func() { errc <- d.serveEmbedded(ctx, ln) }()
	} else {
		go func() { errc <- d.subscribe(ctx) }()
	}
	t := time.NewTicker(d.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			err := <-errc
			d.mu.Lock()
			evs := append(d.unstored, d.br.Flush(time.Now())...)
			d.mu.Unlock()
			d.unstored = nil
			if serr := d.store(context.Background(), evs); serr != nil {
				d.log.Error("presence exits at shutdown not stored", "events", len(evs), "err", serr)
			}
			return err
		case err := <-errc:
			return err
		case <-t.C:
			d.sweep(ctx)
		}
	}
}

// sweep closes expired presence sessions and stores their events with
// those a previous sweep could not store; what the queue refuses again is
// kept for the next sweep, up to maxUnstoredExits.
func (d *Devices) sweep(ctx context.Context) {
	d.mu.Lock()
	evs := append(d.unstored, d.br.Tick(time.Now())...)
	d.mu.Unlock()
	d.unstored = nil
	if d.store(ctx, evs) == nil {
		return
	}
	// Kept for the next sweep, or at shutdown for the final flush.
	if over := len(evs) - maxUnstoredExits; over > 0 {
		d.dropped.Add(float64(over))
		d.log.Warn("presence exits given up: too many awaiting the queue", "events", over)
		evs = evs[over:]
	}
	d.unstored = evs
}

// Serve runs the embedded listener on ln (for tests); Run uses it.
func (d *Devices) serveEmbedded(ctx context.Context, ln net.Listener) error {
	srv := mqtt.New(&mqtt.Options{Logger: d.log, InlineClient: false})
	if len(d.cfg.Credentials) == 0 {
		d.log.Warn("no device credentials: any client on the device network may publish frames")
		if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
			return err
		}
	} else {
		// A device may write only its own topic: its user rule allows
		// that topic; the global rule denies everything else.
		ledger := &auth.Ledger{Users: auth.Users{}, ACL: auth.ACLRules{{Filters: auth.Filters{"#": auth.Deny}}}}
		for id, pw := range d.cfg.Credentials {
			ledger.Users[id] = auth.UserRule{
				Username: auth.RString(id), Password: auth.RString(pw),
				ACL: auth.Filters{auth.RString(TopicPrefix + id + TopicSuffix): auth.WriteOnly},
			}
		}
		if err := srv.AddHook(new(auth.Hook), &auth.Options{Ledger: ledger}); err != nil {
			return err
		}
	}
	if err := srv.AddHook(&frameHook{d: d, ctx: ctx}, nil); err != nil {
		return err
	}
	if err := srv.AddListener(listeners.NewNet("devices", ln)); err != nil {
		return err
	}
	if err := srv.Serve(); err != nil {
		return err
	}
	d.log.Info("device listener ready", "addr", ln.Addr().String())
	<-ctx.Done()
	return brokerstop.Close(srv, "devices")
}

// frameHook stores frames before the broker acknowledges them.
type frameHook struct {
	mqtt.HookBase
	d   *Devices
	ctx context.Context
}

func (h *frameHook) ID() string { return "unico-frames" }

func (h *frameHook) Provides(b byte) bool { return b == mqtt.OnPublish }

// OnPublish runs before the PUBACK: a frame whose events could not be
// stored is rejected, so the device keeps it and sends it again.
func (h *frameHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if _, ok := deviceFromTopic(pk.TopicName); !ok {
		return pk, nil
	}
	if err := h.d.handle(h.ctx, pk.TopicName, pk.Payload); err != nil {
		return pk, packets.ErrRejectPacket
	}
	return pk, nil
}

func (d *Devices) subscribe(ctx context.Context) error {
	u, err := url.Parse(d.cfg.BrokerURL)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%w: device-broker-url %q", ErrConfig, d.cfg.BrokerURL)
	}
	opts := paho.NewClientOptions().AddBroker("tcp://" + u.Host).SetClientID("unico-edge-devices").
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).SetKeepAlive(15 * time.Second).SetWriteTimeout(10 * time.Second).SetOrderMatters(true)
	if u.User != nil {
		opts.SetUsername(u.User.Username())
		if p, ok := u.User.Password(); ok {
			opts.SetPassword(p)
		}
	}
	opts.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe(TopicFilter, 1, func(_ paho.Client, m paho.Message) {
			_ = d.handle(ctx, m.Topic(), m.Payload())
		})
		d.log.Info("subscribed to device frames", "broker", u.Host, "filter", TopicFilter)
	})
	c := paho.NewClient(opts)
	c.Connect()
	<-ctx.Done()
	c.Disconnect(250)
	return nil
}
