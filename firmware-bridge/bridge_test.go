package bridge

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/unico-cdp/unico/protocol"
)

var t0 = time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// id8 returns an 8-byte identifier filled with b.
func id8(b byte) HexBytes { return HexBytes{b, b, b, b, b, b, b, b} }

func sight(id HexBytes, rssi int8, zone uint8, ageMS uint32) Record {
	return Record{Type: RecordSighting, Sighting: Sighting{Kind: KindMACHash, ID: id, RSSI: rssi, Zone: zone, AgeMS: ageMS}}
}

func frame(seq uint32, uptimeMS uint64, recs ...Record) *Frame {
	return &Frame{Version: 1, Type: FrameReport, DeviceID: dev1, BootID: 0xb007, Seq: seq, UptimeMS: uptimeMS, Records: recs}
}

// ev is the part of an event the tests compare.
type ev struct {
	ID    string
	Name  string
	Ident string
	At    time.Duration // OccurredAt − t0
	Props map[string]any
}

func summarize(evs []protocol.Event) []ev {
	var out []ev
	for _, e := range evs {
		s := ev{ID: e.ID, Name: e.Name, At: e.OccurredAt.Sub(t0), Props: e.Properties}
		if len(e.Identifiers) > 0 {
			s.Ident = e.Identifiers[0].String()
		}
		out = append(out, s)
	}
	return out
}

const (
	macA = "mac_hash:aaaaaaaaaaaaaaaa"
	macB = "mac_hash:bbbbbbbbbbbbbbbb"
	macC = "mac_hash:cccccccccccccccc"
)

func TestBridgeSessions(t *testing.T) {
	zones := map[uint8]string{3: "shoes", 1: "entrance"}
	type step struct {
		at    time.Duration
		frame *Frame // nil: Tick
		want  []ev
	}
	const idPrefix = "fw-0102030405060708-0000b007-"
	tests := []struct {
		name  string
		cfg   Config
		steps []step
		stats Stats
	}{
		{
			name: "enter, zone dwell, exit",
			steps: []step{
				{0, frame(0, 1000, sight(id8(0xaa), -60, 3, 0)), []ev{
					{idPrefix + "0-0", EventEnter, macA, 0, map[string]any{"zone": "shoes", "zone_id": int64(3), "rssi": int64(-60)}},
				}},
				{40 * time.Second, frame(1, 41000, sight(id8(0xaa), -65, 1, 0)), []ev{
					{idPrefix + "1-0-dwell", EventZoneDwell, macA, 40 * time.Second, map[string]any{"zone": "shoes", "zone_id": int64(3), "dwell_seconds": 40.0}},
				}},
				{50 * time.Second, frame(2, 51000, sight(id8(0xaa), -65, 1, 0)), nil},
				{169 * time.Second, nil, nil}, // 1 s before the exit timeout
				{170 * time.Second, nil, []ev{
					{idPrefix + "2-0-exit", EventExit, macA, 50 * time.Second, map[string]any{"zone": "entrance", "zone_id": int64(1), "duration_seconds": 50.0}},
				}},
				{500 * time.Second, nil, nil},
			},
			stats: Stats{Events: map[string]uint64{EventEnter: 1, EventZoneDwell: 1, EventExit: 1}},
		},
		{
			name: "dwell of the last zone on exit",
			steps: []step{
				{0, frame(0, 1000, sight(id8(0xaa), -60, 3, 0)), []ev{
					{idPrefix + "0-0", EventEnter, macA, 0, map[string]any{"zone": "shoes", "zone_id": int64(3), "rssi": int64(-60)}},
				}},
				{45 * time.Second, frame(1, 46000, sight(id8(0xaa), -60, 3, 0)), nil},
				{10 * time.Minute, nil, []ev{
					{idPrefix + "1-0-exit-dwell", EventZoneDwell, macA, 45 * time.Second, map[string]any{"zone": "shoes", "zone_id": int64(3), "dwell_seconds": 45.0}},
					{idPrefix + "1-0-exit", EventExit, macA, 45 * time.Second, map[string]any{"zone": "shoes", "zone_id": int64(3), "duration_seconds": 45.0}},
				}},
			},
			stats: Stats{Events: map[string]uint64{EventEnter: 1, EventZoneDwell: 1, EventExit: 1}},
		},
		{
			name: "weak sightings and short dwells are ignored",
			steps: []step{
				{0, frame(0, 1000, sight(id8(0xaa), -81, 3, 0), sight(id8(0xbb), -80, 3, 0)), []ev{
					{idPrefix + "0-1", EventEnter, macB, 0, map[string]any{"zone": "shoes", "zone_id": int64(3), "rssi": int64(-80)}},
				}},
				{10 * time.Second, frame(1, 11000, sight(id8(0xbb), -70, 1, 0)), nil},
				{3 * time.Minute, nil, []ev{
					{idPrefix + "1-0-exit", EventExit, macB, 10 * time.Second, map[string]any{"zone": "entrance", "zone_id": int64(1), "duration_seconds": 10.0}},
				}},
			},
			stats: Stats{WeakSightings: 1, Events: map[string]uint64{EventEnter: 1, EventExit: 1}},
		},
		{
			name: "record age sets the event time",
			steps: []step{
				// Received at 10 s, seen 4 s before the frame was built.
				{10 * time.Second, frame(0, 90000, sight(id8(0xaa), -60, 7, 4000)), []ev{
					{idPrefix + "0-0", EventEnter, macA, 6 * time.Second, map[string]any{"zone": "7", "zone_id": int64(7), "rssi": int64(-60)}},
				}},
			},
			stats: Stats{Tracked: 1, Events: map[string]uint64{EventEnter: 1}},
		},
		{
			name: "duplicate frame yields nothing",
			steps: []step{
				{0, frame(0, 1000, sight(id8(0xaa), -60, 3, 0)), []ev{
					{idPrefix + "0-0", EventEnter, macA, 0, map[string]any{"zone": "shoes", "zone_id": int64(3), "rssi": int64(-60)}},
				}},
				{time.Second, frame(0, 1000, sight(id8(0xaa), -60, 3, 0)), nil},
			},
			stats: Stats{Tracked: 1, Events: map[string]uint64{EventEnter: 1}},
		},
		{
			name: "sighting after the exit timeout without a tick starts a new session",
			steps: []step{
				{0, frame(0, 1000, sight(id8(0xaa), -60, 3, 0)), []ev{
					{idPrefix + "0-0", EventEnter, macA, 0, map[string]any{"zone": "shoes", "zone_id": int64(3), "rssi": int64(-60)}},
				}},
				{3 * time.Minute, frame(1, 181000, sight(id8(0xaa), -60, 3, 0)), []ev{
					{idPrefix + "0-0-exit", EventExit, macA, 0, map[string]any{"zone": "shoes", "zone_id": int64(3), "duration_seconds": 0.0}},
					{idPrefix + "1-0", EventEnter, macA, 3 * time.Minute, map[string]any{"zone": "shoes", "zone_id": int64(3), "rssi": int64(-60)}},
				}},
			},
			stats: Stats{Tracked: 1, Events: map[string]uint64{EventEnter: 2, EventExit: 1}},
		},
		{
			name: "late older sighting does not move the session",
			steps: []step{
				{0, frame(0, 100000, sight(id8(0xaa), -60, 3, 0)), []ev{
					{idPrefix + "0-0", EventEnter, macA, 0, map[string]any{"zone": "shoes", "zone_id": int64(3), "rssi": int64(-60)}},
				}},
				// Seen 50 s before this frame, in another zone: older than
				// the latest sighting, ignored.
				{10 * time.Second, frame(1, 110000, sight(id8(0xaa), -60, 1, 50000)), nil},
			},
			stats: Stats{Tracked: 1, Events: map[string]uint64{EventEnter: 1}},
		},
		{
			name: "eviction beyond MaxTracked closes the oldest",
			cfg:  Config{MaxTracked: 2, ZoneMap: zones},
			steps: []step{
				{0, frame(0, 1000, sight(id8(0xaa), -60, 3, 0)), []ev{
					{idPrefix + "0-0", EventEnter, macA, 0, map[string]any{"zone": "shoes", "zone_id": int64(3), "rssi": int64(-60)}},
				}},
				{time.Second, frame(1, 2000, sight(id8(0xbb), -60, 3, 0)), []ev{
					{idPrefix + "1-0", EventEnter, macB, time.Second, map[string]any{"zone": "shoes", "zone_id": int64(3), "rssi": int64(-60)}},
				}},
				{2 * time.Second, frame(2, 3000, sight(id8(0xcc), -60, 3, 0)), []ev{
					{idPrefix + "0-0-exit", EventExit, macA, 0, map[string]any{"zone": "shoes", "zone_id": int64(3), "duration_seconds": 0.0}},
					{idPrefix + "2-0", EventEnter, macC, 2 * time.Second, map[string]any{"zone": "shoes", "zone_id": int64(3), "rssi": int64(-60)}},
				}},
			},
			stats: Stats{Tracked: 2, Evictions: 1, Events: map[string]uint64{EventEnter: 3, EventExit: 1}},
		},
		{
			name: "counters and shelves",
			steps: []step{
				{time.Minute, frame(0, 100000,
					Record{Type: RecordCounter, Counter: Counter{Door: 1, In: 4, Out: 2, AgeMS: 30000}},
					Record{Type: RecordCounter, Counter: Counter{Door: 2}}, // nothing counted: no event
					Record{Type: RecordShelf, Shelf: Shelf{Shelf: 9, Action: ShelfPick, Count: 2, SKU: "SKU-1"}},
					Record{Type: RecordShelf, Shelf: Shelf{Shelf: 9, Action: ShelfPut, Count: 1, SKU: "SKU-1", AgeMS: 1000}},
				), []ev{
					{idPrefix + "0-0", EventPeopleCounter, "", 30 * time.Second, map[string]any{"door": int64(1), "in": int64(4), "out": int64(2)}},
					{idPrefix + "0-2", EventShelfPick, "", time.Minute, map[string]any{"shelf": int64(9), "product": "SKU-1", "count": int64(2)}},
					{idPrefix + "0-3", EventShelfPut, "", 59 * time.Second, map[string]any{"shelf": int64(9), "product": "SKU-1", "count": int64(1)}},
				}},
			},
			stats: Stats{Events: map[string]uint64{EventPeopleCounter: 1, EventShelfPick: 1, EventShelfPut: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			if cfg.ZoneMap == nil {
				cfg.ZoneMap = zones
			}
			b, err := NewBridge(cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				var got []protocol.Event
				if s.frame == nil {
					got = b.Tick(at(s.at))
				} else {
					got, err = b.Ingest(s.frame, at(s.at))
					if err != nil {
						t.Fatalf("step %d: Ingest: %v", i, err)
					}
				}
				if diff := cmp.Diff(s.want, summarize(got)); diff != "" {
					t.Errorf("step %d at %v (-want +got):\n%s", i, s.at, diff)
				}
				for _, e := range got {
					if e.Type != protocol.TypeTrack || e.Channel != protocol.ChannelIoT || e.Source.Device != "0102030405060708" {
						t.Errorf("step %d: envelope %+v", i, e)
					}
					if !e.ReceivedAt.Equal(at(s.at)) {
						t.Errorf("step %d: ReceivedAt %v, want %v", i, e.ReceivedAt, at(s.at))
					}
				}
			}
			st := b.Stats()
			st.Rejected = nil
			if tt.stats.Events == nil {
				tt.stats.Events = map[string]uint64{}
			}
			if diff := cmp.Diff(tt.stats, st); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSequence(t *testing.T) {
	// Frames of a device that booted at t0 (boot 1) and, where a test
	// says so, again at t0+1h (boot 2). Each frame arrives delay after it
	// was built.
	type fr struct {
		boot   uint32
		seq    uint32
		uptime time.Duration
		delay  time.Duration
		want   verdict
	}
	tests := []struct {
		name   string
		frames []fr
		want   DeviceInfo // counters only
	}{
		{"in order", []fr{{1, 0, 1 * time.Second, 0, vAccept}, {1, 1, 2 * time.Second, 0, vAccept}, {1, 2, 3 * time.Second, 0, vAccept}},
			DeviceInfo{Frames: 3}},
		{"gap", []fr{{1, 0, time.Second, 0, vAccept}, {1, 5, 6 * time.Second, 0, vAccept}},
			DeviceInfo{Frames: 2, Gaps: 4}},
		{"duplicate", []fr{{1, 0, time.Second, 0, vAccept}, {1, 1, 2 * time.Second, 0, vAccept}, {1, 1, 2 * time.Second, time.Second, vDuplicate}, {1, 0, time.Second, 3 * time.Second, vDuplicate}},
			DeviceInfo{Frames: 2, Duplicates: 2}},
		{"reordered within window", []fr{{1, 0, 10 * time.Second, 0, vAccept}, {1, 3, 40 * time.Second, 0, vAccept}, {1, 2, 30 * time.Second, 11 * time.Second, vAccept}, {1, 1, 20 * time.Second, 19 * time.Second, vAccept}, {1, 2, 30 * time.Second, 13 * time.Second, vDuplicate}},
			DeviceInfo{Frames: 4, Gaps: 2, Reordered: 2, Duplicates: 1}},
		{"window edge", []fr{{1, 100, 1000 * time.Second, 0, vAccept}, {1, 37, 370 * time.Second, 400 * time.Second, vAccept}, {1, 36, 360 * time.Second, 420 * time.Second, vStale}},
			DeviceInfo{Frames: 2, Reordered: 1, Stale: 1}},
		{"jump beyond window clears it", []fr{{1, 0, 10 * time.Second, 0, vAccept}, {1, 200, 2000 * time.Second, 0, vAccept}, {1, 0, 10 * time.Second, 5 * time.Second, vStale}, {1, 199, 1990 * time.Second, 11 * time.Second, vAccept}},
			DeviceInfo{Frames: 3, Gaps: 199, Reordered: 1, Stale: 1}},
		{"reboot with a new boot id", []fr{{1, 10, 100 * time.Second, 0, vAccept}, {2, 0, 5 * time.Second, 0, vAccept}, {2, 1, 6 * time.Second, 0, vAccept}},
			DeviceInfo{Frames: 3, Reboots: 1}},
		{"reboot first frame lost", []fr{{1, 10, 100 * time.Second, 0, vAccept}, {2, 1, 6 * time.Second, 0, vAccept}, {2, 0, 5 * time.Second, 2 * time.Second, vAccept}},
			DeviceInfo{Frames: 3, Reboots: 1, Gaps: 1, Reordered: 1}},
		{"late frame of the previous boot", []fr{{1, 10, 100 * time.Second, 0, vAccept}, {2, 0, 5 * time.Second, 0, vAccept}, {1, 11, 110 * time.Second, time.Hour, vStale}, {2, 1, 6 * time.Second, 0, vAccept}},
			DeviceInfo{Frames: 3, Reboots: 1, Stale: 1}},
		{"reused boot id, uptime backwards", []fr{{1, 10, 100 * time.Second, 0, vAccept}, {1, 11, 50 * time.Millisecond, 0, vAccept}},
			DeviceInfo{Frames: 2, Reboots: 1, Gaps: 11}},
		{"reused boot id, seq restarts", []fr{{1, 500, 1000 * time.Second, 0, vAccept}, {1, 0, 5 * time.Second, 0, vAccept}, {1, 1, 6 * time.Second, 0, vAccept}},
			DeviceInfo{Frames: 3, Reboots: 1}},
		{"reused boot id, quick reboot within window", []fr{{1, 5, 100 * time.Second, 0, vAccept}, {1, 0, 5 * time.Second, 0, vAccept}, {1, 1, 6 * time.Second, 0, vAccept}},
			DeviceInfo{Frames: 3, Reboots: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBridge(Config{}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, f := range tt.frames {
				booted := t0
				if f.boot == 2 || (strings.HasPrefix(tt.name, "reused") && i > 0) {
					booted = t0.Add(time.Hour)
				}
				fr := &Frame{DeviceID: dev1, BootID: f.boot, Seq: f.seq, UptimeMS: uint64(f.uptime.Milliseconds()),
					Records: []Record{{Type: RecordCounter, Counter: Counter{In: 1}}}}
				evs, err := b.Ingest(fr, booted.Add(f.uptime+f.delay))
				if err != nil {
					t.Fatal(err)
				}
				if got := len(evs) == 0; got != (f.want != vAccept) {
					t.Errorf("frame %d (boot %d seq %d): %d events, want verdict %d", i, f.boot, f.seq, len(evs), f.want)
				}
			}
			got := b.Devices()[0]
			got.DeviceID, got.LastSeen, got.BootID = "", time.Time{}, 0
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DeviceInfo (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDeterministicIDs(t *testing.T) {
	f := frame(3, 10000, sight(id8(0xaa), -60, 3, 0), Record{Type: RecordCounter, Counter: Counter{In: 1}})
	var ids [2][]string
	for i := range ids {
		b, _ := NewBridge(Config{}, nil)
		evs, err := b.Ingest(f, at(0))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			ids[i] = append(ids[i], e.ID)
		}
	}
	want := []string{"fw-0102030405060708-0000b007-3-0", "fw-0102030405060708-0000b007-3-1"}
	if diff := cmp.Diff(want, ids[0]); diff != "" {
		t.Errorf("ids (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(ids[0], ids[1]); diff != "" {
		t.Errorf("second bridge (-first +second):\n%s", diff)
	}
}

func TestMaxDevices(t *testing.T) {
	b, _ := NewBridge(Config{MaxDevices: 1}, nil)
	f := frame(0, 1000)
	if _, err := b.Ingest(f, at(0)); err != nil {
		t.Fatal(err)
	}
	g := frame(0, 1000)
	g.DeviceID = dev2
	if _, err := b.Ingest(g, at(0)); !errors.Is(err, ErrTooManyDevices) {
		t.Fatalf("second device: %v, want ErrTooManyDevices", err)
	}
	if n := len(b.Devices()); n != 1 {
		t.Errorf("%d devices, want 1", n)
	}
	if got := b.Stats().Rejected["too_many_devices"]; got != 1 {
		t.Errorf("rejected too_many_devices = %d, want 1", got)
	}
}

func TestNewBridgeConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"rssi", Config{RSSIThreshold: -200}, "rssi-threshold -200"},
		{"exit timeout", Config{ExitTimeout: -time.Second}, "exit-timeout -1s"},
		{"min dwell", Config{MinDwell: -time.Second}, "min-dwell -1s"},
		{"max tracked", Config{MaxTracked: -1}, "max-tracked -1"},
		{"max devices", Config{MaxDevices: -1}, "max-devices -1"},
		{"zone name", Config{ZoneMap: map[uint8]string{4: ""}}, "zone-map[4]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewBridge(tt.cfg, nil)
			if !errors.Is(err, ErrConfig) || !strings.HasPrefix(err.Error(), tt.msg) {
				t.Errorf("error %v, want %q… wrapping ErrConfig", err, tt.msg)
			}
		})
	}
	b, err := NewBridge(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{RSSIThreshold: -80, ExitTimeout: 2 * time.Minute, MinDwell: 30 * time.Second, MaxTracked: 10000, MaxDevices: 1000}
	if diff := cmp.Diff(want, b.cfg); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestHandleMessageAndMetrics(t *testing.T) {
	b, _ := NewBridge(Config{}, nil)
	raw := sealed(header(2), sightingRec, healthRec)
	if _, err := b.HandleMessage(raw, at(0)); err != nil {
		t.Fatal(err)
	}
	if _, err := b.HandleMessage(raw, at(time.Second)); err != nil { // duplicate
		t.Fatal(err)
	}
	if _, err := b.HandleMessage(raw[:len(raw)-1], at(2*time.Second)); !errors.Is(err, ErrChecksum) {
		t.Fatalf("cut frame: %v, want ErrChecksum", err)
	}
	got := gather(t, b)
	want := map[string]float64{
		`unico_edge_device_duplicates_total{device="0102030405060708"}`:      1,
		`unico_edge_device_frames_total{device="0102030405060708"}`:          1,
		`unico_edge_device_free_heap_bytes{device="0102030405060708"}`:       65536,
		`unico_edge_device_wifi_rssi_dbm{device="0102030405060708"}`:         -55,
		`unico_edge_bridge_frames_rejected_total{reason="checksum"}`:         1,
		`unico_edge_bridge_frames_rejected_total{reason="too_many_devices"}`: 0,
		`unico_edge_bridge_tracked_identifiers`:                              1,
		`unico_edge_bridge_events_total{name="presence.enter"}`:              1,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", k, g, ok, v)
		}
	}
	for k := range got {
		if strings.HasPrefix(k, "unico_edge_device_battery_percent") {
			t.Errorf("battery series for a mains device: %s", k)
		}
	}
	devs := b.Devices()
	if len(devs) != 1 || devs[0].Firmware != "2.0" || !devs[0].LastSeen.Equal(at(0)) {
		t.Errorf("Devices() = %+v", devs)
	}
}

// gather collects c into "name{label="value",…}" → value.
func gather(t *testing.T, c prometheus.Collector) map[string]float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// TestConcurrentUse runs ingestion, ticks, status and metrics at once; run
// it with -race.
func TestConcurrentUse(t *testing.T) {
	b, _ := NewBridge(Config{MaxTracked: 50}, nil)
	done := make(chan struct{})
	var frames [2][][]byte
	for w := range frames {
		for seq := range 200 {
			f := frame(uint32(seq), uint64(seq+1)*1000, sight(id8(byte(seq%80)), -60, uint8(seq%4), 0))
			f.DeviceID[0] = byte(w)
			raw, err := Encode(f)
			if err != nil {
				t.Fatal(err)
			}
			frames[w] = append(frames[w], raw)
		}
	}
	for w := range frames {
		go func() {
			defer func() { done <- struct{}{} }()
			for i, raw := range frames[w] {
				if _, err := b.HandleMessage(raw, at(time.Duration(i)*time.Second)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	go func() {
		defer func() { done <- struct{}{} }()
		for i := range 200 {
			b.Tick(at(time.Duration(i) * time.Second))
			_ = b.Devices()
			_ = gather(t, b)
		}
	}()
	for range 3 {
		<-done
	}
	for _, d := range b.Devices() {
		if d.Frames != 200 {
			t.Errorf("device %s: %d frames, want 200", d.DeviceID, d.Frames)
		}
	}
	if n := b.Stats().Tracked; n > 50 {
		t.Errorf("tracked %d > MaxTracked 50", n)
	}
}

func TestHandleDeviceMessage(t *testing.T) {
	b, _ := NewBridge(Config{}, nil)
	raw := sealed(header(1), counterRec)
	if _, err := b.HandleDeviceMessage("a1b2c3d4e5f60708", raw, at(0)); !errors.Is(err, ErrDeviceMismatch) {
		t.Fatalf("other device: %v, want ErrDeviceMismatch", err)
	}
	evs, err := b.HandleDeviceMessage("0102030405060708", raw, at(0))
	if err != nil || len(evs) != 1 {
		t.Fatalf("own device: %d events, %v", len(evs), err)
	}
	if got := b.Stats().Rejected; !cmp.Equal(got, map[string]uint64{"device_mismatch": 1}) {
		t.Errorf("Rejected = %v", got)
	}
}

func TestFlush(t *testing.T) {
	b, _ := NewBridge(Config{}, nil)
	if _, err := b.Ingest(frame(0, 1000, sight(id8(0xaa), -60, 1, 0), sight(id8(0xbb), -60, 1, 0)), at(0)); err != nil {
		t.Fatal(err)
	}
	got := summarize(b.Flush(at(time.Second)))
	var names []string
	for _, e := range got {
		names = append(names, e.Name+" "+e.Ident)
	}
	want := []string{EventExit + " " + macA, EventExit + " " + macB}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if n := b.Stats().Tracked; n != 0 {
		t.Errorf("tracked %d after Flush", n)
	}
}

// TestSessionsFollowDeviceClock checks that a session is closed by the
// clock of the device that saw its identifier last: frames that arrive
// late, as after a reconnect backlog, do not split a visit, and a device
// that keeps reporting without the identifier closes the session before
// the wall clock would; the wall clock closes it only for a silent device.
func TestSessionsFollowDeviceClock(t *testing.T) {
	const idPrefix = "fw-0102030405060708-0000b007-"
	counter := Record{Type: RecordCounter, Counter: Counter{Door: 1}} // no event: in and out are 0
	type step struct {
		at    time.Duration
		frame *Frame // nil: Tick
		ids   []string
	}
	for _, tt := range []struct {
		name  string
		delay time.Duration
		steps []step
	}{
		{"backlog after a reconnect keeps the session", 2 * time.Minute, []step{
			{0, frame(0, 1000, sight(id8(0xaa), -60, 1, 0)), []string{idPrefix + "0-0"}},
			{170 * time.Second, nil, nil}, // silent for the exit timeout: kept, it may deliver late
			// The device was seeing it all along; its frames arrive at once.
			{200 * time.Second, frame(1, 61000, sight(id8(0xaa), -60, 1, 0)), nil},
			{200 * time.Second, frame(2, 121000, sight(id8(0xaa), -60, 1, 0)), nil},
			{200 * time.Second, frame(3, 181000, sight(id8(0xaa), -60, 1, 0)), nil},
			{200 * time.Second, nil, nil},
			// Reported 2 min past the last sighting without it: closed,
			// although the wall clock says the sighting was just now.
			{201 * time.Second, frame(4, 301000, counter), nil},
			{201 * time.Second, nil, []string{idPrefix + "3-0-exit-dwell", idPrefix + "3-0-exit"}},
		}},
		{"silent device closes by the wall clock plus the delay", 2 * time.Minute, []step{
			{0, frame(0, 1000, sight(id8(0xaa), -60, 1, 0)), []string{idPrefix + "0-0"}},
			{239 * time.Second, nil, nil},
			{240 * time.Second, nil, []string{idPrefix + "0-0-exit"}},
		}},
		{"without a delay the wall clock closes at the exit timeout", 0, []step{
			{0, frame(0, 1000, sight(id8(0xaa), -60, 1, 0)), []string{idPrefix + "0-0"}},
			{120 * time.Second, nil, []string{idPrefix + "0-0-exit"}},
			{200 * time.Second, frame(1, 61000, sight(id8(0xaa), -60, 1, 0)), []string{idPrefix + "1-0"}},
		}},
		{"late frames on the same device clock within the exit timeout", 0, []step{
			{0, frame(0, 1000, sight(id8(0xaa), -60, 1, 0)), []string{idPrefix + "0-0"}},
			// Arrives 150 s later but was built 60 s after the first: no
			// Tick ran, and by the device's clock it was never unseen.
			{150 * time.Second, frame(1, 61000, sight(id8(0xaa), -60, 1, 0)), nil},
		}},
		{"rebooted device falls back to the wall clock", 2 * time.Minute, []step{
			{0, frame(0, 1000, sight(id8(0xaa), -60, 1, 0)), []string{idPrefix + "0-0"}},
			{10 * time.Second, &Frame{DeviceID: dev1, BootID: 0xb008, Seq: 0, UptimeMS: 500, Records: []Record{counter}}, nil},
			{119 * time.Second, nil, nil},
			{120 * time.Second, nil, []string{idPrefix + "0-0-exit"}},
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			b, err := NewBridge(Config{MaxFrameDelay: tt.delay}, nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, s := range tt.steps {
				var got []protocol.Event
				if s.frame == nil {
					got = b.Tick(at(s.at))
				} else if got, err = b.Ingest(s.frame, at(s.at)); err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, e := range got {
					ids = append(ids, e.ID)
				}
				if diff := cmp.Diff(s.ids, ids); diff != "" {
					t.Errorf("step %d at %v (-want +got):\n%s", i, s.at, diff)
				}
			}
		})
	}
}
