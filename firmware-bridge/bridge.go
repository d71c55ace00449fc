package bridge

import (
	"cmp"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// Defaults for Config fields left zero.
const (
	DefaultRSSIThreshold = -80
	DefaultExitTimeout   = 2 * time.Minute
	DefaultMinDwell      = 30 * time.Second
	DefaultMaxTracked    = 10_000
	DefaultMaxDevices    = 1_000
)

// Event names the bridge emits.
const (
	EventEnter         = "presence.enter"
	EventZoneDwell     = "presence.zone_dwell"
	EventExit          = "presence.exit"
	EventPeopleCounter = "people_counter"
	EventShelfPick     = "shelf.pick"
	EventShelfPut      = "shelf.put"
)

var eventNames = [...]string{EventEnter, EventZoneDwell, EventExit, EventPeopleCounter, EventShelfPick, EventShelfPut}

// Errors of NewBridge and Ingest.
var (
	// ErrConfig is wrapped by NewBridge's errors about an invalid Config.
	ErrConfig = errors.New("invalid bridge config")
	// ErrTooManyDevices is returned by Ingest for a frame from a new device
	// when MaxDevices devices are already known. The frame is dropped.
	ErrTooManyDevices = errors.New("too many devices")
	// ErrDeviceMismatch is returned by HandleDeviceMessage when the frame's
	// device id is not the one the transport vouches for.
	ErrDeviceMismatch = errors.New("device id mismatch")
)

// Config configures a Bridge. Zero fields take the documented defaults.
type Config struct {
	// RSSIThreshold in dBm: weaker sightings are ignored (counted). Default
	// DefaultRSSIThreshold (-80); -128 accepts every sighting.
	RSSIThreshold int
	// ExitTimeout is how long an identifier may go unseen before
	// presence.exit. Default DefaultExitTimeout (2 min).
	//
	// Unseen is judged by the clock of the device that saw the identifier
	// last, where it can be: its later frames' uptime (same boot) tells
	// that it kept scanning for ExitTimeout without seeing the identifier
	// again, however late those frames arrive. For a device that has gone
	// silent (or rebooted) Tick falls back to the wall clock; see
	// MaxFrameDelay.
	ExitTimeout time.Duration
	// MaxFrameDelay is how much later than ExitTimeout a silent device's
	// frames may still arrive, after a reconnect backlog, without its
	// presence sessions being split: Tick closes a session whose device
	// has not reported past the exit timeout once the wall clock is
	// ExitTimeout + MaxFrameDelay past the last sighting. Zero (the
	// default) closes at ExitTimeout by the wall clock.
	MaxFrameDelay time.Duration
	// MinDwell is the shortest stay in a zone reported by
	// presence.zone_dwell. Default DefaultMinDwell (30 s).
	MinDwell time.Duration
	// ZoneMap names zones: 3 → "shoes". An unnamed zone is called by its
	// number. Zone 0 means "no zone": it gets no dwell events unless named.
	ZoneMap map[uint8]string
	// MaxTracked bounds the identifiers with an open presence session.
	// Beyond it the least recently seen is closed with presence.exit and
	// counted as an eviction. Default DefaultMaxTracked (10,000).
	MaxTracked int
	// MaxDevices bounds the devices the bridge keeps state and metrics for.
	// Frames from further devices are dropped with ErrTooManyDevices.
	// Default DefaultMaxDevices (1,000).
	MaxDevices int
	// Source is copied into every event; Source.Device is set to the
	// device id.
	Source protocol.Source
}

// eventRef names the record an event derives from; it makes event ids
// deterministic.
type eventRef struct {
	dev  *device
	boot uint32
	seq  uint32
	rec  uint8
}

// session is one identifier's presence. Sessions form a list ordered by
// last, oldest first.
type session struct {
	key        string // kind byte followed by the raw id
	prev, next *session
	first      int64 // unix nanoseconds of the first sighting
	last       int64 // unix nanoseconds of the latest sighting
	zoneSince  int64 // unix nanoseconds of the first sighting in zone
	zone       uint8
	ref        eventRef // the latest sighting
	// up is the latest sighting's time on its device's clock: uptime in
	// milliseconds of boot ref.boot of device ref.dev.
	up uint64
}

// Stats are the bridge's own counters.
type Stats struct {
	Tracked   int
	Evictions uint64
	// WeakSightings counts sightings below RSSIThreshold.
	WeakSightings uint64
	// Rejected counts frames dropped by reason: the Reason of a decode
	// error, "device_mismatch" or "too_many_devices".
	Rejected map[string]uint64
	// Events counts emitted events by name.
	Events map[string]uint64
}

var rejectReasons = [...]string{"truncated", "too_large", "magic", "version", "checksum", "field", "trailing", "other", "device_mismatch", "too_many_devices"}

func (b *Bridge) reject(reason string) {
	if i := slices.Index(rejectReasons[:], reason); i >= 0 {
		b.rejected[i]++
	}
}

// Bridge turns frames into events. It is safe for concurrent use.
type Bridge struct {
	cfg Config
	log *slog.Logger

	mu         sync.Mutex
	devices    map[DeviceID]*device
	tracked    map[string]*session
	head, tail *session
	keyBuf     [1 + MaxIDLen]byte
	evictions  uint64
	weak       uint64
	rejected   [len(rejectReasons)]uint64
	events     [len(eventNames)]uint64
	metrics    *metricDescs
}

// NewBridge returns a Bridge for cfg. A nil logger discards.
func NewBridge(cfg Config, logger *slog.Logger) (*Bridge, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RSSIThreshold == 0 {
		cfg.RSSIThreshold = DefaultRSSIThreshold
	}
	if cfg.RSSIThreshold < -128 || cfg.RSSIThreshold > 127 {
		return nil, fmt.Errorf("rssi-threshold %d: want -128 to 127: %w", cfg.RSSIThreshold, ErrConfig)
	}
	for _, d := range []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{{"exit-timeout", &cfg.ExitTimeout, DefaultExitTimeout}, {"min-dwell", &cfg.MinDwell, DefaultMinDwell}, {"max-frame-delay", &cfg.MaxFrameDelay, 0}} {
		if *d.v < 0 {
			return nil, fmt.Errorf("%s %v: negative: %w", d.name, *d.v, ErrConfig)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for _, d := range []struct {
		name string
		v    *int
		def  int
	}{{"max-tracked", &cfg.MaxTracked, DefaultMaxTracked}, {"max-devices", &cfg.MaxDevices, DefaultMaxDevices}} {
		if *d.v < 0 {
			return nil, fmt.Errorf("%s %d: negative: %w", d.name, *d.v, ErrConfig)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	for z, name := range cfg.ZoneMap {
		if name == "" {
			return nil, fmt.Errorf("zone-map[%d]: empty name: %w", z, ErrConfig)
		}
	}
	return &Bridge{
		cfg:     cfg,
		log:     logger.With("component", "firmware-bridge"),
		devices: make(map[DeviceID]*device),
		tracked: make(map[string]*session),
		metrics: newMetricDescs(),
	}, nil
}

// HandleMessage decodes payload, one frame as received from a device, and
// ingests it. Decode errors are counted by Reason and returned.
func (b *Bridge) HandleMessage(payload []byte, receivedAt time.Time) ([]protocol.Event, error) {
	return b.HandleDeviceMessage("", payload, receivedAt)
}

// HandleDeviceMessage is HandleMessage for a transport that knows which
// device sent payload, such as an MQTT topic "…/<device id>/…" guarded by
// broker ACLs: a frame whose device id (16 hex digits) is not deviceID is
// rejected with ErrDeviceMismatch, so one device cannot speak for another.
// An empty deviceID checks nothing.
func (b *Bridge) HandleDeviceMessage(deviceID string, payload []byte, receivedAt time.Time) ([]protocol.Event, error) {
	f, err := Decode(payload)
	if err != nil {
		b.mu.Lock()
		b.reject(Reason(err))
		b.mu.Unlock()
		b.log.Debug("frame rejected", "err", err)
		return nil, fmt.Errorf("decode frame: %w", err)
	}
	if deviceID != "" && deviceID != f.DeviceID.String() {
		b.mu.Lock()
		b.reject("device_mismatch")
		b.mu.Unlock()
		b.log.Warn("frame rejected", "err", "device id mismatch", "device", deviceID, "frame_device", f.DeviceID.String())
		return nil, fmt.Errorf("frame from %s on the channel of %q: %w", f.DeviceID, deviceID, ErrDeviceMismatch)
	}
	return b.Ingest(f, receivedAt)
}

// Ingest turns a frame received at receivedAt into events; f must come
// from Decode or pass Encode's checks. A
// duplicate or stale frame yields no events and no error (it is counted);
// a frame from a device beyond MaxDevices returns ErrTooManyDevices. Event
// times are receivedAt − age_ms (FRAME.md, "Time").
func (b *Bridge) Ingest(f *Frame, receivedAt time.Time) ([]protocol.Event, error) {
	if f == nil {
		return nil, fmt.Errorf("nil frame: %w", ErrField)
	}
	if len(f.Records) > MaxRecords {
		return nil, fmt.Errorf("%d records exceed %d: %w", len(f.Records), MaxRecords, ErrTooLarge)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	d := b.devices[f.DeviceID]
	if d == nil {
		if len(b.devices) >= b.cfg.MaxDevices {
			b.reject("too_many_devices")
			return nil, fmt.Errorf("device %s: %d devices known: %w", f.DeviceID, len(b.devices), ErrTooManyDevices)
		}
		d = &device{id: f.DeviceID, idStr: f.DeviceID.String()}
		d.start(f, receivedAt.UnixNano())
		b.devices[f.DeviceID] = d
		b.log.Info("new device", "device", d.idStr, "boot_id", f.BootID)
	} else {
		reboots := d.reboots
		switch d.check(f, receivedAt.UnixNano()) {
		case vDuplicate:
			b.log.Debug("duplicate frame", "device", d.idStr, "seq", f.Seq)
			return nil, nil
		case vStale:
			b.log.Debug("stale frame", "device", d.idStr, "boot_id", f.BootID, "seq", f.Seq)
			return nil, nil
		}
		if d.reboots != reboots {
			b.log.Info("device rebooted", "device", d.idStr, "boot_id", f.BootID)
		}
	}
	d.frames++
	if receivedAt.After(d.lastSeen) {
		d.lastSeen = receivedAt
	}
	var out []protocol.Event
	for i := range f.Records {
		r := &f.Records[i]
		ref := eventRef{dev: d, boot: f.BootID, seq: f.Seq, rec: uint8(i)}
		switch r.Type {
		case RecordSighting:
			out = b.sighting(out, &r.Sighting, ref, f.UptimeMS-min(uint64(r.Sighting.AgeMS), f.UptimeMS), receivedAt)
		case RecordCounter:
			c := &r.Counter
			if c.In == 0 && c.Out == 0 {
				continue
			}
			out = append(out, b.event(EventPeopleCounter, ref, "", nil,
				receivedAt.Add(-ms(c.AgeMS)), receivedAt,
				map[string]any{"door": int64(c.Door), "in": int64(c.In), "out": int64(c.Out)}))
		case RecordShelf:
			s := &r.Shelf
			name := EventShelfPick
			if s.Action == ShelfPut {
				name = EventShelfPut
			}
			out = append(out, b.event(name, ref, "", nil,
				receivedAt.Add(-ms(s.AgeMS)), receivedAt,
				map[string]any{"shelf": int64(s.Shelf), "product": s.SKU, "count": int64(s.Count)}))
		case RecordHealth:
			d.setHealth(r.Health)
		}
	}
	return out, nil
}

func ms(v uint32) time.Duration { return time.Duration(v) * time.Millisecond }

// sighting updates the presence session of s's identifier; up is the
// sighting's uptime on its device.
func (b *Bridge) sighting(out []protocol.Event, s *Sighting, ref eventRef, up uint64, receivedAt time.Time) []protocol.Event {
	if int(s.RSSI) < b.cfg.RSSIThreshold {
		b.weak++
		return out
	}
	t := receivedAt.Add(-ms(s.AgeMS)).UnixNano()
	b.keyBuf[0] = byte(s.Kind)
	n := copy(b.keyBuf[1:], s.ID)
	key := b.keyBuf[:1+n]
	ss := b.tracked[string(key)]
	if ss != nil && b.unseenSince(ss, ref, up, t) {
		// Unseen for longer than ExitTimeout but no Tick closed the session
		// yet: close it now, so the result does not depend on how often
		// Tick runs.
		out = b.close(out, ss, receivedAt)
		ss = nil
	}
	if ss == nil {
		for len(b.tracked) >= b.cfg.MaxTracked && b.head != nil {
			b.evictions++
			out = b.close(out, b.head, receivedAt)
		}
		ss = &session{key: string(key), first: t, last: t, zoneSince: t, zone: s.Zone, ref: ref, up: up}
		b.tracked[ss.key] = ss
		b.insert(ss)
		props := map[string]any{"zone": b.zoneName(s.Zone), "zone_id": int64(s.Zone), "rssi": int64(s.RSSI)}
		return append(out, b.event(EventEnter, ref, "", ss, time.Unix(0, t), receivedAt, props))
	}
	if t < ss.last || (sameBoot(ss.ref, ref) && up < ss.up) {
		// An older sighting arriving late: the session has moved on.
		return out
	}
	if s.Zone != ss.zone {
		out = b.dwell(out, ss, t, ref, "-dwell", receivedAt)
		ss.zone = s.Zone
		ss.zoneSince = t
	}
	ss.last = t
	ss.ref = ref
	ss.up = up
	b.unlink(ss)
	b.insert(ss)
	return out
}

// dwell emits presence.zone_dwell for ss's current zone, left at until,
// when the stay was long enough. ref and suffix make the event id: the
// record that ended the stay, and whether the stay ended by moving zone
// ("-dwell") or by the session closing ("-exit-dwell").
func (b *Bridge) dwell(out []protocol.Event, ss *session, until int64, ref eventRef, suffix string, receivedAt time.Time) []protocol.Event {
	stay := time.Duration(until - ss.zoneSince)
	if stay < b.cfg.MinDwell {
		return out
	}
	if _, named := b.cfg.ZoneMap[ss.zone]; ss.zone == 0 && !named {
		return out
	}
	props := map[string]any{"zone": b.zoneName(ss.zone), "zone_id": int64(ss.zone), "dwell_seconds": stay.Seconds()}
	return append(out, b.event(EventZoneDwell, ref, suffix, ss, time.Unix(0, until), receivedAt, props))
}

// close ends ss: its last zone's dwell, then presence.exit at its last
// sighting, both with ids derived from that sighting.
func (b *Bridge) close(out []protocol.Event, ss *session, receivedAt time.Time) []protocol.Event {
	out = b.dwell(out, ss, ss.last, ss.ref, "-exit-dwell", receivedAt)
	props := map[string]any{
		"zone": b.zoneName(ss.zone), "zone_id": int64(ss.zone),
		"duration_seconds": time.Duration(ss.last - ss.first).Seconds(),
	}
	out = append(out, b.event(EventExit, ss.ref, "-exit", ss, time.Unix(0, ss.last), receivedAt, props))
	b.unlink(ss)
	delete(b.tracked, ss.key)
	return out
}

// sameBoot reports whether x and y are records of the same boot of the
// same device, whose uptimes can be compared.
func sameBoot(x, y eventRef) bool { return x.dev == y.dev && x.boot == y.boot }

// unseenSince reports whether ss's identifier went unseen for ExitTimeout
// before a sighting at up on ref's device (t on the receive clock): by
// the device's uptime when the same device saw it last, else by the
// receive times.
func (b *Bridge) unseenSince(ss *session, ref eventRef, up uint64, t int64) bool {
	if sameBoot(ss.ref, ref) {
		return up >= ss.up && time.Duration(up-ss.up)*time.Millisecond >= b.cfg.ExitTimeout
	}
	return t-ss.last >= int64(b.cfg.ExitTimeout)
}

// expired reports whether Tick at now closes ss: its device has reported
// (same boot) an uptime ExitTimeout past the last sighting, or by the
// wall clock: ExitTimeout after the last sighting when the device has
// rebooted since, ExitTimeout + MaxFrameDelay otherwise.
func (b *Bridge) expired(ss *session, now int64) bool {
	d := ss.ref.dev
	if d.boot == ss.ref.boot {
		if d.uptime >= ss.up && time.Duration(d.uptime-ss.up)*time.Millisecond >= b.cfg.ExitTimeout {
			return true
		}
		return now-ss.last >= int64(b.cfg.ExitTimeout+b.cfg.MaxFrameDelay)
	}
	return now-ss.last >= int64(b.cfg.ExitTimeout)
}

// Tick closes the sessions that expired at now (see Config.ExitTimeout and
// Config.MaxFrameDelay) and returns their events. Call it periodically,
// a small fraction of ExitTimeout apart.
func (b *Bridge) Tick(now time.Time) []protocol.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []protocol.Event
	n := now.UnixNano()
	for ss := b.head; ss != nil; {
		next := ss.next
		if b.expired(ss, n) {
			out = b.close(out, ss, now)
		}
		ss = next
	}
	return out
}

// Flush closes every open session as if its exit timeout had passed and
// returns the events, for a clean shutdown: presence.exit is stamped at
// each identifier's last sighting.
func (b *Bridge) Flush(now time.Time) []protocol.Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []protocol.Event
	for b.head != nil {
		out = b.close(out, b.head, now)
	}
	return out
}

// insert links ss into the list at its place by last, searching from the
// newest end: sightings mostly arrive in time order, so this is O(1) in the
// common case and O(MaxTracked) at worst.
func (b *Bridge) insert(ss *session) {
	p := b.tail
	for p != nil && p.last > ss.last {
		p = p.prev
	}
	ss.prev = p
	if p == nil {
		ss.next = b.head
		b.head = ss
	} else {
		ss.next = p.next
		p.next = ss
	}
	if ss.next == nil {
		b.tail = ss
	} else {
		ss.next.prev = ss
	}
}

func (b *Bridge) unlink(ss *session) {
	if ss.prev == nil {
		b.head = ss.next
	} else {
		ss.prev.next = ss.next
	}
	if ss.next == nil {
		b.tail = ss.prev
	} else {
		ss.next.prev = ss.prev
	}
	ss.prev, ss.next = nil, nil
}

func (b *Bridge) zoneName(z uint8) string {
	if name, ok := b.cfg.ZoneMap[z]; ok {
		return name
	}
	return strconv.Itoa(int(z))
}

// event builds one event. Its id is
// "fw-<device>-<boot id>-<seq>-<record><suffix>", from the record ref, so
// that the same frame always yields the same ids.
func (b *Bridge) event(name string, ref eventRef, suffix string, ss *session, at, receivedAt time.Time, props map[string]any) protocol.Event {
	for i, n := range eventNames {
		if n == name {
			b.events[i]++
		}
	}
	id := make([]byte, 0, 64)
	id = append(id, "fw-"...)
	id = append(id, ref.dev.idStr...)
	id = append(id, '-')
	id = appendHex32(id, ref.boot)
	id = append(id, '-')
	id = strconv.AppendUint(id, uint64(ref.seq), 10)
	id = append(id, '-')
	id = strconv.AppendUint(id, uint64(ref.rec), 10)
	id = append(id, suffix...)
	src := b.cfg.Source
	src.Device = ref.dev.idStr
	ev := protocol.Event{
		ID:         string(id),
		Type:       protocol.TypeTrack,
		Name:       name,
		Channel:    protocol.ChannelIoT,
		Source:     src,
		Properties: props,
		OccurredAt: at.UTC(),
		ReceivedAt: receivedAt.UTC(),
	}
	if ss != nil {
		ev.Identifiers = []protocol.Identifier{{
			Type:  IDKind(ss.key[0]).IdentifierType(),
			Value: hex.EncodeToString([]byte(ss.key[1:])),
		}}
	}
	return ev
}

func appendHex32(b []byte, v uint32) []byte {
	const digits = "0123456789abcdef"
	for s := 28; s >= 0; s -= 4 {
		b = append(b, digits[(v>>uint(s))&0xf])
	}
	return b
}

// Devices returns what the bridge knows about each device, ordered by
// device id.
func (b *Bridge) Devices() []DeviceInfo {
	b.mu.Lock()
	out := make([]DeviceInfo, 0, len(b.devices))
	for _, d := range b.devices {
		out = append(out, d.info())
	}
	b.mu.Unlock()
	slices.SortFunc(out, func(x, y DeviceInfo) int { return cmp.Compare(x.DeviceID, y.DeviceID) })
	return out
}

// Stats returns the bridge's own counters.
func (b *Bridge) Stats() Stats {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := Stats{
		Tracked:       len(b.tracked),
		Evictions:     b.evictions,
		WeakSightings: b.weak,
		Rejected:      make(map[string]uint64),
		Events:        make(map[string]uint64),
	}
	for i, n := range b.rejected {
		if n > 0 {
			s.Rejected[rejectReasons[i]] = n
		}
	}
	for i, n := range b.events {
		if n > 0 {
			s.Events[eventNames[i]] = n
		}
	}
	return s
}
