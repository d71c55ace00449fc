package simulate

import (
	"bufio"
	"cmp"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/protocol"
)

// AckedLog writes every PUBACKed frame as one JSON line, for a checker in
// another process (FrameConfig.OnAcked = log.Add). It is safe for
// concurrent use.
type AckedLog struct {
	mu  sync.Mutex
	w   *bufio.Writer
	err error
}

// ackedLine is one line of an AckedLog: the frame as the sensor encoded it.
type ackedLine struct {
	Edge        int       `json:"edge"`
	AckedAt     time.Time `json:"acked_at"`
	ConnectedAt time.Time `json:"connected_at"`
	Sends       int       `json:"sends"`
	SentAt      time.Time `json:"sent_at,omitzero"`
	Frame       []byte    `json:"frame"`
}

// NewAckedLog returns an AckedLog writing to w; Flush it at the end.
func NewAckedLog(w io.Writer) *AckedLog { return &AckedLog{w: bufio.NewWriter(w)} }

// Add writes a. The first error is kept for Flush.
func (l *AckedLog) Add(a AckedFrame) {
	b, err := bridge.Encode(a.Frame)
	if err == nil {
		b, err = json.Marshal(ackedLine{Edge: a.Edge, AckedAt: a.AckedAt, ConnectedAt: a.ConnectedAt, Sends: a.Sends, SentAt: a.SentAt, Frame: b})
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		_, err = l.w.Write(append(b, '\n'))
	}
	if l.err == nil && err != nil {
		l.err = fmt.Errorf("acked frames log: %w", err)
	}
}

// Flush writes what is buffered and returns the first error.
func (l *AckedLog) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.w.Flush(); err != nil && l.err == nil {
		l.err = fmt.Errorf("acked frames log: %w", err)
	}
	return l.err
}

// ReadAckedLog reads what an AckedLog wrote, in the order written.
func ReadAckedLog(r io.Reader) ([]AckedFrame, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var out []AckedFrame
	for {
		var l ackedLine
		if err := dec.Decode(&l); err == io.EOF {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("acked frames log: line %d: %w", len(out)+1, err)
		}
		f, err := bridge.Decode(l.Frame)
		if err != nil {
			return nil, fmt.Errorf("acked frames log: line %d: %w", len(out)+1, err)
		}
		out = append(out, AckedFrame{Edge: l.Edge, Frame: f, AckedAt: l.AckedAt, ConnectedAt: l.ConnectedAt, Sends: l.Sends, SentAt: l.SentAt})
	}
}

// PresenceRun is one run of one edge agent, between two restarts: Edge is
// the index in FrameConfig.Brokers, Run counts the agent's restarts
// before it.
type PresenceRun struct{ Edge, Run int }

// frameRef names a frame: device, boot and sequence number, as in the
// bridge's event ids ("fw-<device>-<boot>-<seq>-<record>…").
type frameRef struct {
	dev  string
	boot uint32
	seq  uint32
}

// frameOfEventID parses the frame out of a bridge event id.
func frameOfEventID(id string) (frameRef, bool) {
	parts := strings.SplitN(id, "-", 5)
	if len(parts) < 5 || parts[0] != "fw" {
		return frameRef{}, false
	}
	boot, err1 := strconv.ParseUint(parts[2], 16, 32)
	seq, err2 := strconv.ParseUint(parts[3], 10, 32)
	if err1 != nil || err2 != nil {
		return frameRef{}, false
	}
	return frameRef{dev: parts[1], boot: uint32(boot), seq: uint32(seq)}, true
}

// PresenceExpectation is what the PUBACKed frames imply at the hub, per
// identifier: it replays the frames each run of an agent PUBACKed, in
// PUBACK order, through a fresh bridge configured like the agents.
//
// Only what does not depend on when the agent received a frame is
// checked. The bridge stamps sightings with its own receive time, the
// replay with the PUBACK's arrival; the agent received the frame between
// its first send and that PUBACK (AckedFrame.SentAt, AckedAt), and under
// load the PUBACK may come a second after, waiting on the fsync of its
// own append and of the frames run before it. So a stay's measured
// length, and with it whether it yields presence.zone_dwell, is exact
// only well away from the minimum dwell; which late sighting is taken for
// the last one (the id of presence.exit) may differ; so may the order in
// which frames of different sensors are run, and with it which frame
// opens a session, whether a sighting of one sensor counts as later than
// another's (a zone change) or as late (ignored), and whether a gap
// between two sensors' sightings near the exit timeout ends the session.
// What is exact: the presence.enter of every session (by id, the record
// that first showed the identifier, unless frames of another sensor that
// showed it came first: see CheckPresence); the presence.zone_dwell of
// every zone change after a stay well over the minimum, the margin plus
// the span of the sighting that ended it, by id or as a zone change
// leaving the same zone; one presence.exit per session, once the agents
// closed every session; no id twice.
type PresenceExpectation struct {
	cfg         bridge.Config
	dwellMargin time.Duration
	frames      int
	frameRun    map[frameRef]PresenceRun
	idents      map[protocol.Identifier]*identExpect
	bridges     map[PresenceRun]*bridge.Bridge
	// starts holds, per edge, when each run of its agent was started
	// (RunStarted); empty for an edge never restarted.
	starts map[int][]time.Time
}

type identExpect struct {
	edge   int
	enters map[PresenceRun][]string // enter ids the run's bridge derived
	// optional are derived enters the agent may not have made: a
	// re-entry the replay derived from a gap between two sensors'
	// sightings that the agent's receive times may have put under the
	// exit timeout.
	optional map[string]bool
	// seen are the identifier's sightings per run, each with the span of
	// receive times the agent may have stamped it with.
	seen   map[PresenceRun][]sightingSpan
	dwells []derivedDwell // zone changes after a stay well over the minimum dwell
}

// derivedDwell is a presence.zone_dwell the replay derived: its id, the
// stay's length and the zone left; run and at, the span of the sighting
// that showed the next zone.
type derivedDwell struct {
	id      string
	seconds float64
	zone    int64
	run     PresenceRun
	at      sightingSpan
}

// sightingSpan is one sighting as the agent may have timed it: between lo
// (the frame's first send) and hi (its PUBACK), less the sighting's age;
// dev names the sensor and its boot.
type sightingSpan struct {
	dev    string
	boot   uint32
	zone   uint8
	lo, hi time.Time
}

// overlaps reports whether the agent may have timed s after o or o after s.
func (s sightingSpan) overlaps(o sightingSpan) bool {
	return s.lo.Before(o.hi) && o.lo.Before(s.hi)
}

// zoneID reads the zone_id property of a presence event, as the bridge
// sets it or as it comes back decoded from JSON.
func zoneID(ev *protocol.Event) (int64, bool) {
	switch v := ev.Properties["zone_id"].(type) {
	case int64:
		return v, true
	case float64:
		return int64(v), true
	case json.Number:
		n, err := v.Int64()
		return n, err == nil
	}
	return 0, false
}

// NewPresenceExpectation returns an empty expectation replaying frames
// through bridges configured with cfg (the agents' presence settings).
// Zone-change dwells are checked where the replayed stay is at least
// dwellMargin over cfg.MinDwell.
func NewPresenceExpectation(cfg bridge.Config, dwellMargin time.Duration) *PresenceExpectation {
	if cfg.MinDwell == 0 {
		cfg.MinDwell = bridge.DefaultMinDwell
	}
	if cfg.ExitTimeout == 0 {
		cfg.ExitTimeout = bridge.DefaultExitTimeout
	}
	return &PresenceExpectation{cfg: cfg, dwellMargin: dwellMargin, frameRun: map[frameRef]PresenceRun{},
		idents: map[protocol.Identifier]*identExpect{}, bridges: map[PresenceRun]*bridge.Bridge{}, starts: map[int][]time.Time{}}
}

// RunStarted records that run r of its edge's agent was started at at
// (before any connection reached it; the previous run had exited). Runs
// are recorded in order. CheckPresence credits an event at the hub to the
// run whose bridge made it by the event's received_at, the agent's clock
// when the frame arrived.
func (x *PresenceExpectation) RunStarted(r PresenceRun, at time.Time) {
	ss := x.starts[r.Edge]
	for len(ss) <= r.Run {
		ss = append(ss, at)
	}
	ss[r.Run] = at
	x.starts[r.Edge] = ss
}

// madeBy returns the run of edge e whose bridge stamped an event received
// at at, and false when RunStarted recorded no run of e.
func (x *PresenceExpectation) madeBy(e int, at time.Time) (PresenceRun, bool) {
	ss := x.starts[e]
	if len(ss) == 0 || at.IsZero() {
		return PresenceRun{}, false
	}
	r := PresenceRun{Edge: e}
	for i, s := range ss {
		if !s.After(at) {
			r.Run = i
		}
	}
	return r, true
}

// Frames returns the number of frames added.
func (x *PresenceExpectation) Frames() int { return x.frames }

// Identifiers returns the identifiers the frames' sightings yield events
// for, sorted.
func (x *PresenceExpectation) Identifiers() []protocol.Identifier {
	ids := slices.Collect(maps.Keys(x.idents))
	slices.SortFunc(ids, func(a, b protocol.Identifier) int {
		return cmp.Or(strings.Compare(a.Type, b.Type), strings.Compare(a.Value, b.Value))
	})
	return ids
}

// Add replays f, PUBACKed at at by run r, through r's bridge and returns
// the number of events it yields. Only the events a frame itself yields
// are kept, presence.enter and the presence.zone_dwell of a zone change;
// exits come from the agents' sweeps, not from frames.
func (x *PresenceExpectation) Add(r PresenceRun, f *bridge.Frame, at time.Time) (int, error) {
	return x.add(r, f, at, at)
}

// AddFrame is Add for a frame as FrameConfig.OnAcked reports it: its
// SentAt bounds how much earlier than the PUBACK the agent may have
// received it.
func (x *PresenceExpectation) AddFrame(r PresenceRun, a AckedFrame) (int, error) {
	sent := a.SentAt
	if sent.IsZero() || sent.After(a.AckedAt) {
		sent = a.AckedAt
	}
	return x.add(r, a.Frame, sent, a.AckedAt)
}

func (x *PresenceExpectation) add(r PresenceRun, f *bridge.Frame, sent, at time.Time) (int, error) {
	x.frames++
	x.frameRun[frameRef{dev: f.DeviceID.String(), boot: f.BootID, seq: f.Seq}] = r
	br := x.bridges[r]
	if br == nil {
		var err error
		if br, err = bridge.NewBridge(x.cfg, nil); err != nil {
			return 0, err
		}
		x.bridges[r] = br
	}
	evs, err := br.Ingest(f, at)
	if err != nil {
		return 0, fmt.Errorf("replay frame %s seq %d: %w", f.DeviceID, f.Seq, err)
	}
	threshold := x.cfg.RSSIThreshold
	if threshold == 0 {
		threshold = bridge.DefaultRSSIThreshold
	}
	spans := map[string]sightingSpan{} // by "<record>"
	for i := range f.Records {
		rec := &f.Records[i]
		if rec.Type != bridge.RecordSighting || int(rec.Sighting.RSSI) < threshold {
			continue
		}
		age := time.Duration(rec.Sighting.AgeMS) * time.Millisecond
		sp := sightingSpan{dev: f.DeviceID.String(), boot: f.BootID, zone: rec.Sighting.Zone, lo: sent.Add(-age), hi: at.Add(-age)}
		id := protocol.Identifier{Type: rec.Sighting.Kind.IdentifierType(), Value: hex.EncodeToString(rec.Sighting.ID)}
		ie := x.ident(id, r.Edge)
		ie.seen[r] = append(ie.seen[r], sp)
		spans[strconv.Itoa(i)] = sp
	}
	exitAt := map[protocol.Identifier]*protocol.Event{}
	for i := range evs {
		ev := &evs[i]
		if len(ev.Identifiers) == 0 {
			continue
		}
		id := ev.Identifiers[0]
		ie := x.ident(id, r.Edge)
		switch {
		case ev.Name == bridge.EventExit:
			exitAt[id] = ev
		case ev.Name == bridge.EventEnter:
			ie.enters[r] = append(ie.enters[r], ev.ID)
			// A re-entry: the frame's sighting found the identifier unseen
			// for the exit timeout. Between sightings of two sensors that
			// is measured on receive times, the replay's being the PUBACKs'
			// arrivals: the agent may have received this frame up to
			// at-sent earlier and seen one stay where the replay sees two.
			if ex := exitAt[id]; ex != nil {
				pk, ok1 := frameOfEventID(ex.ID)
				ek, ok2 := frameOfEventID(ev.ID)
				gap := ev.OccurredAt.Sub(ex.OccurredAt)
				if ok1 && ok2 && (pk.dev != ek.dev || pk.boot != ek.boot) && gap < x.cfg.ExitTimeout+at.Sub(sent) {
					ie.optional[ev.ID] = true
				}
			}
		case ev.Name == bridge.EventZoneDwell && strings.HasSuffix(ev.ID, "-dwell") && !strings.HasSuffix(ev.ID, "-exit-dwell"):
			// The agent may have timed the sighting that ended the stay up
			// to its span earlier, and the stay that much shorter.
			rec := strings.TrimSuffix(ev.ID[strings.LastIndexByte(strings.TrimSuffix(ev.ID, "-dwell"), '-')+1:], "-dwell")
			sp := spans[rec]
			if secs, _ := ev.Properties["dwell_seconds"].(float64); secs >= (x.cfg.MinDwell + x.dwellMargin + sp.hi.Sub(sp.lo)).Seconds() {
				zone, _ := zoneID(ev)
				ie.dwells = append(ie.dwells, derivedDwell{id: ev.ID, seconds: secs, zone: zone, run: r, at: sp})
			}
		}
	}
	return len(evs), nil
}

// ident returns id's expectation, new ones credited to edge e.
func (x *PresenceExpectation) ident(id protocol.Identifier, e int) *identExpect {
	ie := x.idents[id]
	if ie == nil {
		ie = &identExpect{edge: e, enters: map[PresenceRun][]string{}, optional: map[string]bool{}, seen: map[PresenceRun][]sightingSpan{}}
		x.idents[id] = ie
	}
	return ie
}

// uncertain reports whether the agent may have run the sighting that
// showed w's next zone after a sighting of another sensor in another zone
// (the two spans overlap), and taken it for a late one: then the agent
// saw the zone change later, from another frame, or not at all.
func (ie *identExpect) uncertain(w derivedDwell) bool {
	if w.at.hi.IsZero() {
		return false
	}
	return slices.ContainsFunc(ie.seen[w.run], func(o sightingSpan) bool {
		return (o.dev != w.at.dev || o.boot != w.at.boot) && o.zone != w.at.zone && o.overlaps(w.at)
	})
}

// Enters returns the presence.enter ids derived for id, per run.
func (x *PresenceExpectation) Enters(id protocol.Identifier) map[PresenceRun][]string {
	if ie := x.idents[id]; ie != nil {
		return maps.Clone(ie.enters)
	}
	return nil
}

func (x *PresenceExpectation) acked(k frameRef) bool {
	_, ok := x.frameRun[k]
	return ok
}

// PresenceReport is what CheckPresence found.
type PresenceReport struct {
	FramesAcked int `json:"frames_acked"`
	Identifiers int `json:"identifiers"`
	// EntersExpected are the presence.enter events the runs' bridges
	// derived from PUBACKed frames; EntersExact those at the hub by id,
	// EntersOtherFrame those stood in for by an enter of the identifier
	// from another frame that the same run PUBACKed or made (frames of two
	// sensors that reached the agent in another order than their PUBACKs
	// came back, or raced to open the session after a restart),
	// EntersMissing the rest.
	EntersExpected   int `json:"enters_expected"`
	EntersExact      int `json:"enters_exact"`
	EntersOtherFrame int `json:"enters_other_frame"`
	EntersMissing    int `json:"enters_missing"`
	// EntersOptionalAbsent are derived re-entries not at the hub that the
	// agent may legitimately not have made (see CheckPresence).
	EntersOptionalAbsent int `json:"enters_optional_absent"`
	// DwellsChecked are zone-change dwells (stays the dwell margin over
	// the minimum) of identifiers whose enters at the hub are exactly the
	// derived ones; DwellsOtherFrame those stood in for by a zone-change
	// dwell at the hub leaving the same zone from another frame,
	// DwellsUncertain those not at the hub whose zone change the agent
	// may have taken for a late sighting (see CheckPresence),
	// DwellsMissing the rest.
	DwellsChecked    int `json:"dwells_checked"`
	DwellsOtherFrame int `json:"dwells_other_frame"`
	DwellsUncertain  int `json:"dwells_uncertain"`
	DwellsMissing    int `json:"dwells_missing"`
	// Duplicates counts presence event ids the hub holds twice.
	Duplicates int `json:"duplicates"`
	// OverBound counts identifiers with more enters at the hub than
	// expected plus one per restart of their edge, or more exits than
	// enters; Unclosed those whose sessions did not all get their
	// presence.exit: with no restart of their edge, fewer exits than
	// enters; otherwise, opened in the last run without any exit.
	OverBound int `json:"over_bound"`
	Unclosed  int `json:"unclosed"`
	// Unknown counts presence events at the hub whose ids name no
	// PUBACKed frame.
	Unknown   int `json:"unknown"`
	HubEnters int `json:"hub_enters"`
	HubDwells int `json:"hub_dwells"`
	HubExits  int `json:"hub_exits"`
	// Mismatches lists the first failed checks (at most maxMismatches),
	// one line each with the identifier, what was derived and what the
	// hub holds.
	Mismatches []string `json:"mismatches,omitempty"`
}

// maxMismatches bounds PresenceReport.Mismatches.
const maxMismatches = 20

// Failures counts the failed checks of r.
func (r *PresenceReport) Failures() int {
	return r.EntersMissing + r.DwellsMissing + r.Duplicates + r.OverBound + r.Unclosed + r.Unknown
}

// HubEvents returns the presence events at the hub, all of them, whose
// identifiers include id.
type HubEvents func(id protocol.Identifier) ([]protocol.Event, error)

// CheckPresence checks the hub's presence events, per identifier, against
// the PUBACKed frames, once the agents closed every session they could.
// restarts[e] counts the restarts of edge e's agent (nil: none): its
// later runs' bridges started empty, so a session open at a restart may
// never get its presence.exit and its identifier gets a presence.enter of
// the next run. Per identifier:
//
//   - every presence.enter derived from the frames one run PUBACKed is at
//     the hub by id, or an enter of the identifier made by that run
//     stands in for it: one from a frame that run PUBACKed, or one whose
//     received_at falls in that run (RunStarted) from a frame a later run
//     PUBACKed. The agent runs frames in the order they arrive, the
//     replay in the order of their PUBACKs: when one sensor's PUBACK lags
//     (its append waited on a slow write) another sensor's frame may be
//     the first to show the identifier on one side only; and a run killed
//     after storing a frame's events but before its PUBACK went out opened
//     the session with a frame that only the next run PUBACKed (the agent
//     acknowledges no frame before the frames it ran earlier are stored,
//     so the frames that extended that session were not PUBACKed before
//     its enter was stored). A re-entry the replay derives from two
//     sensors' sightings less than the exit timeout plus the later
//     frame's span apart is optional: the agent may have seen one stay;
//   - every zone-change presence.zone_dwell derived after a stay well over
//     the minimum is at the hub by id, or a zone-change dwell leaving the
//     same zone that no derived dwell names stands in for it (the agent
//     saw the change first in another sensor's frame), where the hub holds
//     exactly the derived enters; one absent is uncertain, not missing,
//     when the agent may have timed a sighting of another sensor in
//     another zone after the one that showed the change (their spans
//     overlap) and taken that one for a late sighting;
//   - no presence event id twice;
//   - exactly the derived enters (but the optional ones) where the edge
//     was never restarted, at most one more per restart otherwise, and no
//     more exits than enters;
//   - every presence event at the hub comes from a PUBACKed frame (its id
//     names the frame);
//   - as many exits as enters where the edge was never restarted, else an
//     exit where the last run opened a session.
//
// A PUBACK sent before the frame's events are stored shows up as an enter
// or dwell of a PUBACKed frame missing at the hub; a lost exit as fewer
// exits than enters. It returns every presence event at the hub it read,
// by id, so that the caller can count them against the hub's total.
func (x *PresenceExpectation) CheckPresence(hub HubEvents, restarts []int) (PresenceReport, map[string]protocol.Event, error) {
	r := PresenceReport{FramesAcked: x.frames, Identifiers: len(x.idents)}
	restartsOf := func(e int) int {
		if e < len(restarts) {
			return restarts[e]
		}
		return 0
	}
	fail := func(id protocol.Identifier, format string, args ...any) {
		if len(r.Mismatches) < maxMismatches {
			r.Mismatches = append(r.Mismatches, id.String()+": "+fmt.Sprintf(format, args...))
		}
	}
	all := map[string]protocol.Event{}
	for _, id := range x.Identifiers() {
		ie := x.idents[id]
		evs, err := hub(id)
		if err != nil {
			return r, all, err
		}
		seen := map[string]bool{}
		var enters, exits int
		enterRuns := map[PresenceRun][]string{}
		var zoneDwells []protocol.Event // the hub's zone-change dwells
		for _, ev := range evs {
			all[ev.ID] = ev
			if k, ok := frameOfEventID(ev.ID); !ok || !x.acked(k) {
				r.Unknown++
				fail(id, "event %s at the hub does not come from a PUBACKed frame", ev.ID)
			}
			if seen[ev.ID] {
				r.Duplicates++
				fail(id, "event %s twice at the hub", ev.ID)
			}
			seen[ev.ID] = true
			switch ev.Name {
			case bridge.EventEnter:
				enters++
				if k, ok := frameOfEventID(ev.ID); ok {
					if rk, ok := x.frameRun[k]; ok {
						enterRuns[rk] = append(enterRuns[rk], ev.ID)
						// Also the run that made it, when another: the
						// frame reached a run that stored its events but
						// was killed before its PUBACK went out, and a
						// later run PUBACKed the resend.
						if mk, ok := x.madeBy(rk.Edge, ev.ReceivedAt); ok && mk != rk {
							enterRuns[mk] = append(enterRuns[mk], ev.ID)
						}
					}
				}
			case bridge.EventExit:
				exits++
			case bridge.EventZoneDwell:
				r.HubDwells++
				if strings.HasSuffix(ev.ID, "-dwell") && !strings.HasSuffix(ev.ID, "-exit-dwell") {
					zoneDwells = append(zoneDwells, ev)
				}
			}
		}
		r.HubEnters += enters
		r.HubExits += exits
		restarted := restartsOf(ie.edge)
		expected, optionalAbsent, allExact := 0, 0, true
		for _, rk := range slices.SortedFunc(maps.Keys(ie.enters), func(a, b PresenceRun) int {
			return cmp.Or(cmp.Compare(a.Edge, b.Edge), cmp.Compare(a.Run, b.Run))
		}) {
			want := ie.enters[rk]
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
				case ie.optional[w]:
					r.EntersOptionalAbsent++
					optionalAbsent++
					allExact = false
				default:
					r.EntersMissing++
					allExact = false
					fail(id, "presence.enter %s of a frame PUBACKed by run %d of edge %d is not at the hub; hub: %s", w, rk.Run, rk.Edge, summarize(evs))
				}
			}
		}
		// A session the agent split (a sensor's frames came so late that
		// another's showed the identifier unseen for the exit timeout)
		// yields an enter where the replay has a zone change: the dwells
		// are checked where the hub has exactly the derived enters.
		if allExact && enters == expected {
			// A derived dwell missing by id may be stood in for by a
			// zone-change dwell at the hub leaving the same zone that no
			// derived dwell names, each at most once.
			spare := map[int64]int{}
			for i := range zoneDwells {
				ev := &zoneDwells[i]
				if zone, ok := zoneID(ev); ok && !slices.ContainsFunc(ie.dwells, func(w derivedDwell) bool { return w.id == ev.ID }) {
					spare[zone]++
				}
			}
			for _, w := range ie.dwells {
				r.DwellsChecked++
				switch {
				case seen[w.id]:
				case spare[w.zone] > 0:
					spare[w.zone]--
					r.DwellsOtherFrame++
				case ie.uncertain(w):
					r.DwellsUncertain++
				default:
					r.DwellsMissing++
					fail(id, "presence.zone_dwell %s (%.3fs, leaving zone %d) of a PUBACKed frame is not at the hub; hub: %s", w.id, w.seconds, w.zone, summarize(evs))
				}
			}
		}
		if enters > expected+restarted || exits > enters || (restarted == 0 && (enters > expected || enters < expected-optionalAbsent)) {
			r.OverBound++
			fail(id, "%d enters and %d exits at the hub, %d enters derived, %d restarts of its edge; hub: %s", enters, exits, expected, restarted, summarize(evs))
		}
		switch {
		case restarted == 0 && exits < enters:
			r.Unclosed++
			fail(id, "%d enters but %d exits at the hub; hub: %s", enters, exits, summarize(evs))
		case restarted > 0 && len(ie.enters[PresenceRun{ie.edge, restarted}]) > 0 && exits == 0:
			r.Unclosed++
			fail(id, "opened in the last run of edge %d but no presence.exit at the hub", ie.edge)
		}
	}
	return r, all, nil
}

// summarize lists events as "name id" in a short form for a mismatch.
func summarize(evs []protocol.Event) string {
	if len(evs) == 0 {
		return "none"
	}
	parts := make([]string, 0, len(evs))
	for i := range evs {
		parts = append(parts, strings.TrimPrefix(evs[i].Name, "presence.")+" "+evs[i].ID)
	}
	return strings.Join(parts, ", ")
}

// PresenceEventsOf returns the presence events among evs (a profile's
// timeline at the hub) that carry identifier id: what a HubEvents function
// answers for it.
func PresenceEventsOf(evs []protocol.Event, id protocol.Identifier) []protocol.Event {
	var out []protocol.Event
	for i := range evs {
		ev := &evs[i]
		if ev.Channel == protocol.ChannelIoT && strings.HasPrefix(ev.Name, "presence.") && ev.HasIdentifier(id.Type, id.Value) {
			out = append(out, *ev)
		}
	}
	return out
}
