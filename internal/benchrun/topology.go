package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/unico-cdp/unico/internal/edgebench"
	"github.com/unico-cdp/unico/internal/procs"
	"github.com/unico-cdp/unico/simulate"
)

const (
	adminToken  = "bench-token"
	writeKey    = "bench-key"
	countryCode = "44"
	// startTimeout bounds a process's start until /healthz answers.
	startTimeout = 60 * time.Second
	// stopTimeout bounds a graceful stop before SIGKILL.
	stopTimeout = 30 * time.Second
	pollEvery   = 100 * time.Millisecond
)

// topology is a hub with its embedded broker and two edge agents, each a
// separate process with its own data directory under dir.
type topology struct {
	dir      string
	hub      *procs.Proc
	hubHTTP  int
	hubMQTT  int
	edges    []*procs.Proc
	edgeHTTP []int
	// deviceMQTT are the edges' device listeners, when they serve sensors.
	deviceMQTT []string
	presence   *presenceOptions
	client     *http.Client
	logger     *slog.Logger
}

// topoOptions are a scenario's extras: with presence set, every edge
// serves presence sensors on a device listener of its own.
type topoOptions struct {
	presence *presenceOptions
}

// presenceOptions configure the edges' device listeners.
type presenceOptions struct {
	// credentials is the sensors' credentials file.
	credentials string
	// minDwell and exitTimeout are the agents' (and loadgen's) presence
	// timing.
	minDwell, exitTimeout time.Duration
}

// args returns the agent flags of a device listener on port.
func (o *presenceOptions) args(port int) []string {
	return []string{"--device-mqtt-addr", fmt.Sprintf("127.0.0.1:%d", port), "--device-credentials", o.credentials,
		"--presence-zones", simulate.ZoneMap(), "--presence-min-dwell", o.minDwell.String(),
		"--presence-exit-timeout", o.exitTimeout.String(), "--identifier-rules", "traits.beacon_id=beacon_id"}
}

func startTopology(ctx context.Context, binDir, dir string, logger *slog.Logger, opts topoOptions) (*topology, error) {
	t := &topology{dir: dir, client: &http.Client{Timeout: 30 * time.Second}, logger: logger, presence: opts.presence}
	var err error
	if t.hubHTTP, err = procs.FreePort(); err != nil {
		return nil, err
	}
	if t.hubMQTT, err = procs.FreePort(); err != nil {
		return nil, err
	}
	t.hub = &procs.Proc{Name: "hub", Bin: filepath.Join(binDir, "hub"), LogPath: procs.LogPath(dir, "hub"), Logger: logger, Args: []string{
		"--data-dir", filepath.Join(dir, "hub"), "--admin-token", adminToken,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", t.hubHTTP), "--mqtt-addr", fmt.Sprintf("127.0.0.1:%d", t.hubMQTT),
		"--log-level", "warn",
	}}
	if err := t.startHub(ctx); err != nil {
		t.close()
		return nil, err
	}
	for i, id := range []string{"store-a", "store-b"} {
		port, err := procs.FreePort()
		if err != nil {
			t.close()
			return nil, err
		}
		e := &procs.Proc{Name: "edge-" + id, Bin: filepath.Join(binDir, "edge-agent"), LogPath: procs.LogPath(dir, "edge-"+id), Logger: logger, Args: []string{
			"--data-dir", filepath.Join(dir, id), "--edge-id", id, "--write-key", writeKey,
			"--http-addr", fmt.Sprintf("127.0.0.1:%d", port), "--hub-url", fmt.Sprintf("mqtt://127.0.0.1:%d", t.hubMQTT),
			"--default-channel", "pos", "--default-country-code", countryCode, "--log-level", "warn",
		}}
		if opts.presence != nil {
			devPort, err := procs.FreePort()
			if err != nil {
				t.close()
				return nil, err
			}
			e.Args = append(e.Args, opts.presence.args(devPort)...)
			t.deviceMQTT = append(t.deviceMQTT, fmt.Sprintf("mqtt://127.0.0.1:%d", devPort))
		}
		t.edges = append(t.edges, e)
		t.edgeHTTP = append(t.edgeHTTP, port)
		if err := e.StartAndWait(ctx, startTimeout, pollEvery, e.Name+" /healthz", func(ctx context.Context) bool {
			return procs.Healthy(ctx, t.client, t.edgeURL(i, "/healthz"))
		}); err != nil {
			t.close()
			return nil, err
		}
	}
	err = procs.WaitUntil(ctx, startTimeout, pollEvery, "edges connected to the hub", func(ctx context.Context) bool {
		for i := range t.edges {
			if s, err := t.edgeStatus(ctx, i); err != nil || !s.HubConnected {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

func (t *topology) startHub(ctx context.Context) error {
	return t.hub.StartAndWait(ctx, startTimeout, pollEvery, "hub /healthz", func(ctx context.Context) bool {
		return procs.Healthy(ctx, t.client, t.hubURL("/healthz"))
	})
}

// close kills every process that still runs.
func (t *topology) close() {
	for _, p := range append([]*procs.Proc{t.hub}, t.edges...) {
		if p != nil {
			_ = p.Stop(syscall.SIGKILL, stopTimeout)
		}
	}
}

// procs returns the hub and the edges.
func (t *topology) procs() []*procs.Proc { return append([]*procs.Proc{t.hub}, t.edges...) }

// logTails returns the end of every process's log, for a failure report.
func (t *topology) logTails() string {
	var b strings.Builder
	for _, p := range t.procs() {
		fmt.Fprintf(&b, "--- %s (%s) ---\n%s\n", p.Name, p.LogPath, p.LogTail(15))
	}
	return b.String()
}

func (t *topology) hubURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", t.hubHTTP, path)
}

func (t *topology) edgeURL(i int, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", t.edgeHTTP[i], path)
}

func (t *topology) edgeURLs() []string {
	out := make([]string, len(t.edges))
	for i := range t.edges {
		out[i] = t.edgeURL(i, "")
	}
	return out
}

func (t *topology) getJSON(ctx context.Context, u string, auth bool, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}

func (t *topology) edgeStatus(ctx context.Context, i int) (edgebench.Status, error) {
	var s edgebench.Status
	err := t.getJSON(ctx, t.edgeURL(i, "/v1/status"), false, &s)
	return s, err
}

// queueDepth is the sum of the edges' queue depths.
func (t *topology) queueDepth(ctx context.Context) (int64, error) {
	var n int64
	for i := range t.edges {
		s, err := t.edgeStatus(ctx, i)
		if err != nil {
			return 0, err
		}
		n += s.QueueDepth
	}
	return n, nil
}

type hubStats struct {
	Store struct {
		Profiles       int64 `json:"profiles"`
		Events         int64 `json:"events"`
		Repartitions   int64 `json:"repartitions_since_start"`
		RefusedRepeats int64 `json:"refused_link_repeats_since_start"`
	} `json:"store"`
}

func (t *topology) hubStats(ctx context.Context) (hubStats, error) {
	var s hubStats
	err := t.getJSON(ctx, t.hubURL("/api/v1/stats"), true, &s)
	return s, err
}

// stallTimeout fails a wait for delivery when neither the hub's event count
// nor the edges' queue depth moved for this long.
const stallTimeout = time.Minute

// progressEvery is the interval of progress lines while waiting.
const progressEvery = 10 * time.Second

// waitDelivered waits until the edges' queues are empty and the hub holds
// want events, and fails if it holds a different number then. It gives up
// at timeout, when progress stalls for stallTimeout, or when a process
// exited.
func (t *topology) waitDelivered(ctx context.Context, want int64, timeout time.Duration) error {
	last, err := t.settle(ctx, "every accepted event at the hub", timeout, 0, func(ctx context.Context) ([]int64, bool, error) {
		s, err := t.hubStats(ctx)
		if err != nil {
			return nil, false, err
		}
		d, err := t.queueDepth(ctx)
		if err != nil {
			return nil, false, err
		}
		return []int64{s.Store.Events, d}, s.Store.Events >= want && d == 0, nil
	}, func(v []int64) {
		t.logger.Info("waiting for delivery", "hub_events", v[0], "want", want, "queued", v[1])
	})
	if err != nil {
		return fmt.Errorf("%w: hub holds %d of %d accepted events, %d still queued at the edges", err, last[0], want, last[1])
	}
	if last[0] != want {
		return fmt.Errorf("hub holds %d events, but the edges accepted %d", last[0], want)
	}
	return nil
}

// settle polls sample until it reports done with its values unchanged for
// stable. It fails when a process exits, when the values have not moved
// for stallTimeout, or at timeout, and returns the last values (-1 where
// none was read); logProgress reports them every progressEvery.
func (t *topology) settle(ctx context.Context, what string, timeout, stable time.Duration,
	sample func(context.Context) (vals []int64, done bool, err error), logProgress func([]int64)) ([]int64, error) {
	var last []int64
	lastMove, lastLog := time.Now(), time.Now()
	var failure error
	err := procs.WaitUntil(ctx, timeout, pollEvery, what, func(ctx context.Context) bool {
		for _, p := range t.procs() {
			if !p.Running() {
				failure = fmt.Errorf("%s exited", p.Name)
				return true
			}
		}
		vals, done, err := sample(ctx)
		if err != nil {
			return false
		}
		if time.Since(lastLog) >= progressEvery {
			logProgress(vals)
			lastLog = time.Now()
		}
		if !slices.Equal(vals, last) {
			last, lastMove = vals, time.Now()
			if stable > 0 {
				return false
			}
		} else if time.Since(lastMove) > stallTimeout {
			failure = fmt.Errorf("no progress for %v", stallTimeout)
			return true
		}
		return done && time.Since(lastMove) >= stable
	})
	if err == nil {
		err = failure
	}
	for len(last) < 3 {
		last = append(last, -1)
	}
	return last, err
}

// histogram is a cumulative Prometheus histogram: counts[i] observations
// at or below les[i]; the last bound is +Inf.
type histogram struct {
	les    []float64
	counts []float64
}

// parseHistogram reads the buckets of metric from Prometheus text format.
func parseHistogram(r io.Reader, metric string) (histogram, error) {
	var h histogram
	prefix := metric + "_bucket{"
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		i, j := strings.Index(line, `le="`), strings.LastIndexByte(line, '}')
		if i < 0 || j < i {
			return h, fmt.Errorf("histogram line %q", line)
		}
		leS := line[i+4:]
		leS = leS[:strings.IndexByte(leS, '"')]
		le := math.Inf(1)
		if leS != "+Inf" {
			v, err := strconv.ParseFloat(leS, 64)
			if err != nil {
				return h, fmt.Errorf("histogram bound %q: %w", leS, err)
			}
			le = v
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(line[j+1:]), 64)
		if err != nil {
			return h, fmt.Errorf("histogram count in %q: %w", line, err)
		}
		h.les = append(h.les, le)
		h.counts = append(h.counts, n)
	}
	if err := sc.Err(); err != nil {
		return h, fmt.Errorf("read metrics: %w", err)
	}
	return h, nil
}

// sub returns the observations of h that o does not hold (h taken later).
func (h histogram) sub(o histogram) histogram {
	out := histogram{les: h.les, counts: make([]float64, len(h.counts))}
	for i := range h.counts {
		out.counts[i] = h.counts[i]
		if i < len(o.counts) {
			out.counts[i] -= o.counts[i]
		}
	}
	return out
}

func (h histogram) total() float64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// quantile interpolates linearly inside the bucket holding quantile q; a
// quantile in the +Inf bucket answers the highest finite bound.
func (h histogram) quantile(q float64) float64 {
	n := h.total()
	if n <= 0 {
		return 0
	}
	target := q * n
	prevLe, prevN := 0.0, 0.0
	for i, le := range h.les {
		c := h.counts[i]
		if c >= target {
			if math.IsInf(le, 1) {
				return prevLe
			}
			return prevLe + (le-prevLe)*(target-prevN)/math.Max(c-prevN, 1e-9)
		}
		prevLe, prevN = le, c
	}
	return prevLe
}

const latencyMetric = "unico_hub_event_latency_seconds"

func (t *topology) latencyHistogram(ctx context.Context) (histogram, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.hubURL("/metrics"), nil)
	if err != nil {
		return histogram{}, err
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return histogram{}, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	return parseHistogram(resp.Body, latencyMetric)
}

// hubProfile is the part of a profile the identity scenario reads.
type hubProfile struct {
	ID          string `json:"id"`
	Identifiers []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"identifiers"`
}

// profiles pages every profile out of the hub API.
func (t *topology) profiles(ctx context.Context) ([]hubProfile, error) {
	var out []hubProfile
	cursor := ""
	for page := 0; ; page++ {
		if page > 100000 {
			return nil, fmt.Errorf("profiles: more than %d pages", page)
		}
		var resp struct {
			Profiles []hubProfile `json:"profiles"`
			Next     string       `json:"next"`
		}
		u := t.hubURL("/api/v1/profiles?limit=1000")
		if cursor != "" {
			u += "&cursor=" + url.QueryEscape(cursor)
		}
		if err := t.getJSON(ctx, u, true, &resp); err != nil {
			return nil, err
		}
		out = append(out, resp.Profiles...)
		if resp.Next == "" {
			return out, nil
		}
		cursor = resp.Next
	}
}

// loadResult is loadgen's JSON summary and what its process used.
type loadResult struct {
	Sent       int64   `json:"sent"`
	Accepted   int64   `json:"accepted"`
	Rejected   int64   `json:"rejected"`
	Retries    int64   `json:"retries"`
	Elapsed    float64 `json:"elapsed_s"`
	Rate       float64 `json:"events_per_s"`
	P50        float64 `json:"p50_ms"`
	P99        float64 `json:"p99_ms"`
	CPUSeconds float64 `json:"cpu_s"`
	PeakRSSMiB float64 `json:"-"`
	// Frames is set when presence went as sensor frames.
	Frames *simulate.FrameSummary `json:"frames"`
}

// runLoadgen runs the loadgen binary against the edges with extra flags
// and returns its summary; timeout bounds the whole run (SIGTERM, then
// SIGKILL 15 s later).
func (t *topology) runLoadgen(ctx context.Context, binDir string, timeout time.Duration, name string, extra ...string) (loadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := append([]string{"--edge", strings.Join(t.edgeURLs(), ","), "--write-key", writeKey,
		"--country-code", countryCode, "--quiet"}, extra...)
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, "loadgen"), args...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	logf, err := os.Create(procs.LogPath(t.dir, name))
	if err != nil {
		return loadResult{}, fmt.Errorf("loadgen log: %w", err)
	}
	defer logf.Close()
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, logf
	t.logger.Debug("loadgen started", "args", args)
	runErr := cmd.Run()
	var res loadResult
	if err := json.Unmarshal(bytes.TrimSpace(stdout.Bytes()), &res); err != nil {
		tail, _ := os.ReadFile(procs.LogPath(t.dir, name))
		return res, fmt.Errorf("loadgen summary %q: %w (run: %v)\n%s", stdout.String(), err, runErr, tail)
	}
	if ps := cmd.ProcessState; ps != nil {
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			res.PeakRSSMiB = float64(ru.Maxrss) / 1024
		}
	}
	if runErr != nil {
		return res, fmt.Errorf("loadgen: %w", runErr)
	}
	if res.Rejected > 0 {
		return res, fmt.Errorf("loadgen: %d events rejected by the edges", res.Rejected)
	}
	return res, nil
}
