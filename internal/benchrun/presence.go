package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	bridge "github.com/unico-cdp/unico/firmware-bridge"
	"github.com/unico-cdp/unico/protocol"
	"github.com/unico-cdp/unico/simulate"
)

// sessionsSettle is how long the hub's event count, the edges' queues and
// their open presence sessions must stay unchanged, with no session open
// and nothing queued, before the hub is checked.
const sessionsSettle = 3 * time.Second

// presenceExpectation replays the PUBACKed frames loadgen logged to path
// through bridges configured like the agents.
func (t *topology) presenceExpectation(path string, opts *presenceOptions) (*simulate.PresenceExpectation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	acked, err := simulate.ReadAckedLog(bufio.NewReader(f))
	if err != nil {
		return nil, err
	}
	zones := map[uint8]string{}
	for z := range strings.SplitSeq(simulate.ZoneMap(), ",") {
		n, name, _ := strings.Cut(z, "=")
		v, _ := strconv.Atoi(n)
		zones[uint8(v)] = name
	}
	x := simulate.NewPresenceExpectation(bridge.Config{ExitTimeout: opts.exitTimeout, MinDwell: opts.minDwell,
		MaxFrameDelay: opts.exitTimeout, ZoneMap: zones}, opts.minDwell/2)
	for _, a := range acked {
		if _, err := x.Add(simulate.PresenceRun{Edge: a.Edge}, a.Frame, a.AckedAt); err != nil {
			return nil, err
		}
	}
	return x, nil
}

// openSessions is the sum of the edges' open presence sessions, from
// their /metrics.
func (t *topology) openSessions(ctx context.Context) (int64, error) {
	var n int64
	for i := range t.edges {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.edgeURL(i, "/metrics"), nil)
		if err != nil {
			return 0, err
		}
		resp, err := t.client.Do(req)
		if err != nil {
			return 0, fmt.Errorf("GET /metrics: %w", err)
		}
		found := false
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "unico_edge_bridge_tracked_identifiers "); ok {
				f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
				if err != nil {
					resp.Body.Close()
					return 0, fmt.Errorf("edge %d: tracked identifiers %q: %w", i, v, err)
				}
				n += int64(f)
				found = true
			}
		}
		err = sc.Err()
		resp.Body.Close()
		if err != nil {
			return 0, err
		}
		if !found {
			return 0, fmt.Errorf("edge %d: no unico_edge_bridge_tracked_identifiers in /metrics", i)
		}
	}
	return n, nil
}

// waitSessionsClosed waits until the agents have closed every presence
// session, their queues are empty and the hub's event count has settled.
// It gives up at a timeout sized for about want events, when nothing
// moved for stallTimeout, or when a process exited.
func (t *topology) waitSessionsClosed(ctx context.Context, want int64) error {
	last, err := t.settle(ctx, "presence sessions closed and the hub settled", deliverTimeout(want), sessionsSettle, func(ctx context.Context) ([]int64, bool, error) {
		s, err := t.hubStats(ctx)
		if err != nil {
			return nil, false, err
		}
		d, err := t.queueDepth(ctx)
		if err != nil {
			return nil, false, err
		}
		o, err := t.openSessions(ctx)
		if err != nil {
			return nil, false, err
		}
		return []int64{s.Store.Events, d, o}, o == 0 && d == 0, nil
	}, func(v []int64) {
		t.logger.Info("waiting for the last presence sessions", "hub_events", v[0], "queued", v[1], "open_sessions", v[2])
	})
	if err != nil {
		return fmt.Errorf("%w: hub holds %d events, %d still queued at the edges, %d presence sessions open", err, last[0], last[1], last[2])
	}
	return nil
}

// presenceCheck is sensor_frames' check of the hub, in the report.
type presenceCheck struct {
	simulate.PresenceReport
	HubEvents     int64 `json:"hub_events"`
	HTTPAccepted  int64 `json:"http_accepted"`
	PresenceAtHub int   `json:"presence_at_hub"`
	// ByName counts the presence events at the hub by name, next to
	// loadgen's count (results.presence_events).
	ByName map[string]int `json:"by_name"`
}

// checkPresence checks the hub's presence events against x per
// identifier, and its event count against the accepted HTTP events plus
// those presence events.
func (t *topology) checkPresence(ctx context.Context, x *simulate.PresenceExpectation, accepted int64) (*presenceCheck, error) {
	cache := map[string][]protocol.Event{}
	r, all, err := x.CheckPresence(func(id protocol.Identifier) ([]protocol.Event, error) {
		return t.hubPresence(ctx, id, cache)
	}, nil)
	pc := &presenceCheck{PresenceReport: r, HTTPAccepted: accepted, PresenceAtHub: len(all), ByName: map[string]int{}}
	for _, ev := range all {
		pc.ByName[ev.Name]++
	}
	if err != nil {
		return pc, err
	}
	s, err := t.hubStats(ctx)
	if err != nil {
		return pc, err
	}
	pc.HubEvents = s.Store.Events
	var problems []string
	if n := r.Failures(); n > 0 {
		problems = append(problems, fmt.Sprintf("%d presence checks failed (enters missing %d, dwells missing %d, duplicates %d, over bound %d, unclosed %d):\n  %s",
			n, r.EntersMissing, r.DwellsMissing, r.Duplicates, r.OverBound, r.Unclosed, strings.Join(r.Mismatches, "\n  ")))
	}
	if pc.HubEvents != accepted+int64(len(all)) {
		problems = append(problems, fmt.Sprintf("hub holds %d events, want the %d accepted over HTTP plus the %d presence events of the %d identifiers",
			pc.HubEvents, accepted, len(all), r.Identifiers))
	}
	if r.EntersExpected == 0 || r.HubExits == 0 {
		problems = append(problems, "no presence session was derived or closed")
	}
	if len(problems) > 0 {
		return pc, fmt.Errorf("hub does not match the PUBACKed frames: %s", strings.Join(problems, "; "))
	}
	return pc, nil
}

// hubPresence returns the presence events at the hub that carry id;
// cache holds the events of the profiles read so far.
func (t *topology) hubPresence(ctx context.Context, id protocol.Identifier, cache map[string][]protocol.Event) ([]protocol.Event, error) {
	var p struct {
		ID string `json:"id"`
	}
	if err := t.getJSON(ctx, t.hubURL("/api/v1/profiles?identifier="+url.QueryEscape(id.String())), true, &p); err != nil {
		if strings.Contains(err.Error(), "404 Not Found") {
			return nil, nil
		}
		return nil, err
	}
	evs, ok := cache[p.ID]
	if !ok {
		cursor := ""
		for page := 0; ; page++ {
			if page > 1000 {
				return nil, fmt.Errorf("profile %s: more than %d pages of events", p.ID, page)
			}
			var resp struct {
				Events []protocol.Event `json:"events"`
				Next   string           `json:"next"`
			}
			u := t.hubURL("/api/v1/profiles/" + url.PathEscape(p.ID) + "/events?limit=1000")
			if cursor != "" {
				u += "&cursor=" + url.QueryEscape(cursor)
			}
			if err := t.getJSON(ctx, u, true, &resp); err != nil {
				return nil, err
			}
			evs = append(evs, resp.Events...)
			if resp.Next == "" {
				break
			}
			cursor = resp.Next
		}
		cache[p.ID] = evs
	}
	return simulate.PresenceEventsOf(evs, id), nil
}
