package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/unico-cdp/unico/internal/edgebench"
	"github.com/unico-cdp/unico/internal/procs"
)

const (
	adminToken = "chaos-token"
	writeKey   = "chaos-key"
	// startTimeout bounds a process's start until it is healthy.
	startTimeout = 60 * time.Second
	// stopTimeout bounds a graceful stop before SIGKILL.
	stopTimeout = 30 * time.Second
	pollEvery   = 100 * time.Millisecond
)

// topoOptions shapes a scenario's topology.
type topoOptions struct {
	mosquitto  string // path of the mosquitto binary: the hub and edges use it instead of the embedded broker
	quotaBytes string // the edges' --quota-bytes, empty for the default
	ackTimeout string // the edges' --ack-timeout, empty for the default
	// viaProxy, when set, is given the broker's address and returns the
	// address the edges dial instead (a proxy in between).
	viaProxy func(brokerAddr string) (string, error)
	// devices, when set, gives every edge a device listener for sensors.
	devices *deviceOptions
}

// deviceOptions are the edges' device listener settings.
type deviceOptions struct {
	credentials string // the --device-credentials file
	zones       string // --presence-zones
	minDwell    time.Duration
	exitTimeout time.Duration
}

// topology is a hub, an optional external broker and two edge agents, each
// a separate process with its own data directory under dir.
type topology struct {
	dir        string
	hub        *procs.Proc
	broker     *procs.Proc // mosquitto, nil with the embedded broker
	brokerAddr string
	hubHTTP    int
	edges      []*procs.Proc
	edgeHTTP   []int
	// deviceMQTT are the edges' device listeners (mqtt://host:port), when
	// topoOptions.devices is set.
	deviceMQTT []string
	client     *http.Client
}

func startTopology(ctx context.Context, binDir, dir string, o topoOptions) (*topology, error) {
	t := &topology{dir: dir, client: &http.Client{Timeout: 10 * time.Second}}
	var err error
	if t.hubHTTP, err = procs.FreePort(); err != nil {
		return nil, err
	}
	brokerPort, err := procs.FreePort()
	if err != nil {
		return nil, err
	}
	t.brokerAddr = fmt.Sprintf("127.0.0.1:%d", brokerPort)
	hubArgs := []string{"--data-dir", filepath.Join(dir, "hub"), "--admin-token", adminToken,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", t.hubHTTP), "--log-level", "warn"}
	if o.mosquitto != "" {
		conf := filepath.Join(dir, "mosquitto.conf")
		text := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n", brokerPort)
		if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
			return nil, fmt.Errorf("mosquitto config: %w", err)
		}
		t.broker = &procs.Proc{Name: "mosquitto", Bin: o.mosquitto, Args: []string{"-c", conf}, LogPath: filepath.Join(dir, "mosquitto.log")}
		if err := t.startBroker(ctx); err != nil {
			t.close()
			return nil, err
		}
		hubArgs = append(hubArgs, "--broker-url", "mqtt://"+t.brokerAddr)
	} else {
		hubArgs = append(hubArgs, "--mqtt-addr", t.brokerAddr)
	}
	t.hub = &procs.Proc{Name: "hub", Bin: filepath.Join(binDir, "hub"), Args: hubArgs, LogPath: filepath.Join(dir, "hub.log")}
	if err := t.startHub(ctx); err != nil {
		t.close()
		return nil, err
	}
	edgeDial := t.brokerAddr
	if o.viaProxy != nil {
		if edgeDial, err = o.viaProxy(t.brokerAddr); err != nil {
			t.close()
			return nil, err
		}
	}
	for i, id := range []string{"store-a", "store-b"} {
		port, err := procs.FreePort()
		if err != nil {
			t.close()
			return nil, err
		}
		args := []string{"--data-dir", filepath.Join(dir, id), "--edge-id", id, "--write-key", writeKey,
			"--http-addr", fmt.Sprintf("127.0.0.1:%d", port), "--hub-url", "mqtt://" + edgeDial,
			"--default-channel", "pos", "--log-level", "warn"}
		if o.ackTimeout != "" {
			args = append(args, "--ack-timeout", o.ackTimeout)
		}
		if o.quotaBytes != "" {
			args = append(args, "--quota-bytes", o.quotaBytes, "--retry-after", "1s")
		}
		if d := o.devices; d != nil {
			devPort, err := procs.FreePort()
			if err != nil {
				t.close()
				return nil, err
			}
			args = append(args, "--device-mqtt-addr", fmt.Sprintf("127.0.0.1:%d", devPort), "--device-credentials", d.credentials,
				"--presence-zones", d.zones, "--presence-min-dwell", d.minDwell.String(), "--presence-exit-timeout", d.exitTimeout.String(),
				"--identifier-rules", "traits.beacon_id=beacon_id")
			t.deviceMQTT = append(t.deviceMQTT, fmt.Sprintf("mqtt://127.0.0.1:%d", devPort))
		}
		t.edges = append(t.edges, &procs.Proc{Name: "edge-" + id, Bin: filepath.Join(binDir, "edge-agent"), Args: args,
			LogPath: filepath.Join(dir, "edge-"+id+".log")})
		t.edgeHTTP = append(t.edgeHTTP, port)
		if err := t.startEdge(ctx, i); err != nil {
			t.close()
			return nil, err
		}
	}
	err = procs.WaitUntil(ctx, startTimeout, pollEvery, "edges connected to the hub's broker", func(ctx context.Context) bool {
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

func (t *topology) startEdge(ctx context.Context, i int) error {
	e := t.edges[i]
	return e.StartAndWait(ctx, startTimeout, pollEvery, e.Name+" /healthz", func(ctx context.Context) bool {
		return procs.Healthy(ctx, t.client, t.edgeURL(i, "/healthz"))
	})
}

func (t *topology) startBroker(ctx context.Context) error {
	return t.broker.StartAndWait(ctx, startTimeout, pollEvery, "mosquitto listening", func(context.Context) bool {
		return t.broker.Running() && procs.Listening(t.brokerAddr)
	})
}

// procs returns every process of the topology.
func (t *topology) procs() []*procs.Proc {
	var ps []*procs.Proc
	if t.broker != nil {
		ps = append(ps, t.broker)
	}
	if t.hub != nil {
		ps = append(ps, t.hub)
	}
	return append(ps, t.edges...)
}

// close kills every process that still runs.
func (t *topology) close() {
	for _, p := range t.procs() {
		_ = p.Stop(syscall.SIGKILL, stopTimeout)
	}
}

// logTails returns the end of every process's log, for a failure report.
func (t *topology) logTails() string {
	var b strings.Builder
	for _, p := range t.procs() {
		fmt.Fprintf(&b, "--- %s (%s) ---\n%s\n", p.Name, p.LogPath, p.LogTail(10))
	}
	return b.String()
}

func (t *topology) hubURL(path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", t.hubHTTP, path)
}

func (t *topology) edgeURL(i int, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", t.edgeHTTP[i], path)
}

// getJSON decodes the 200 answer of GET u into v; other statuses return
// the status code with an error.
func (t *topology) getJSON(ctx context.Context, u string, auth bool, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+adminToken)
	}
	resp, err := t.client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("GET %s: %w", u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("GET %s: %s: %s", u, resp.Status, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, v); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: %w", u, err)
	}
	return resp.StatusCode, nil
}

func (t *topology) edgeStatus(ctx context.Context, i int) (edgebench.Status, error) {
	var s edgebench.Status
	_, err := t.getJSON(ctx, t.edgeURL(i, "/v1/status"), false, &s)
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

// hubEvents is store.events of the hub's GET /api/v1/stats.
func (t *topology) hubEvents(ctx context.Context) (int64, error) {
	var s struct {
		Store struct {
			Events int64 `json:"events"`
		} `json:"store"`
	}
	_, err := t.getJSON(ctx, t.hubURL("/api/v1/stats"), true, &s)
	return s.Store.Events, err
}

// profileTotals is the part of a hub profile the verification reads.
type profileTotals struct {
	Computed struct {
		Orders  int64   `json:"orders"`
		Revenue float64 `json:"revenue"`
	} `json:"computed"`
}

// profile looks a customer's profile up by user id; found is false on 404.
func (t *topology) profile(ctx context.Context, userID string) (p profileTotals, found bool, err error) {
	code, err := t.getJSON(ctx, t.hubURL("/api/v1/profiles?identifier=user_id:"+userID), true, &p)
	if code == http.StatusNotFound {
		return p, false, nil
	}
	return p, err == nil, err
}
