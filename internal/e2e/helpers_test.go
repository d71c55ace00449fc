package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/unico-cdp/unico/internal/testkit"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

const adminToken = "e2e-token"

var (
	binDir   string
	buildErr error
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "unico-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var buildOnce sync.Once

// binaries builds cmd/hub and cmd/edge-agent once per test run.
func binaries(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIP: end-to-end test (runs without -short)")
	}
	buildOnce.Do(func() {
		cmd := exec.Command("go", "build", "-o", binDir+"/", "../../cmd/hub", "../../cmd/edge-agent")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is a running binary.
type proc struct {
	t    testing.TB
	name string
	args []string
	cmd  *exec.Cmd
	log  *bytes.Buffer
	mu   *sync.Mutex
	done chan struct{}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func start(t testing.TB, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, args: args, log: &bytes.Buffer{}, mu: &sync.Mutex{}}
	p.start()
	t.Cleanup(func() {
		p.stop(syscall.SIGKILL)
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", name, p.logs())
		}
	})
	return p
}

func (p *proc) start() {
	p.t.Helper()
	p.cmd = exec.Command(filepath.Join(binDir, p.name), p.args...)
	p.cmd.Stdout = lockedWriter{p.mu, p.log}
	p.cmd.Stderr = lockedWriter{p.mu, p.log}
	if err := p.cmd.Start(); err != nil {
		p.t.Fatalf("start %s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(p.cmd, p.done)
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.log.String()
}

// stop sends sig and waits for the process to exit.
func (p *proc) stop(sig syscall.Signal) {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("%s did not exit within 30s of %v", p.name, sig)
	}
}

func (p *proc) restart() {
	p.t.Helper()
	p.start()
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	testkit.WaitFor(t, timeout, what, cond)
}

type hubProc struct {
	*proc
	http, mqtt int
}

func startHub(t testing.TB, dir string, extra ...string) *hubProc {
	t.Helper()
	h := &hubProc{http: freePort(t), mqtt: freePort(t)}
	args := append([]string{"--data-dir", dir, "--admin-token", adminToken,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", h.http), "--mqtt-addr", fmt.Sprintf("127.0.0.1:%d", h.mqtt), "--log-level", "warn"}, extra...)
	h.proc = start(t, "hub", args...)
	h.waitReady(t)
	return h
}

func (h *hubProc) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", h.http, path) }

func (h *hubProc) waitReady(t testing.TB) {
	t.Helper()
	waitFor(t, 30*time.Second, "hub /healthz", func() bool {
		resp, err := http.Get(h.url("/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// get fetches an API path into v and returns the status code.
func (h *hubProc) get(t testing.TB, path string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, h.url(path), nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, b)
		}
	}
	return resp.StatusCode
}

type storeStats struct {
	Store struct {
		Profiles int64 `json:"profiles"`
		Events   int64 `json:"events"`
	} `json:"store"`
}

func (h *hubProc) events(t testing.TB) int64 {
	var s storeStats
	if h.get(t, "/api/v1/stats", &s) != 200 {
		return -1
	}
	return s.Store.Events
}

type edgeProc struct {
	*proc
	http int
}

func startEdge(t testing.TB, dir, id string, hubMQTT int, extra ...string) *edgeProc {
	t.Helper()
	e := &edgeProc{http: freePort(t)}
	args := append([]string{"--data-dir", dir, "--edge-id", id, "--write-key", "wk",
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", e.http), "--hub-url", fmt.Sprintf("mqtt://127.0.0.1:%d", hubMQTT),
		"--default-channel", "pos", "--default-country-code", "44", "--log-level", "warn",
		"--ack-timeout", "3s"}, extra...)
	e.proc = start(t, "edge-agent", args...)
	e.waitReady(t)
	return e
}

func (e *edgeProc) waitReady(t testing.TB) {
	t.Helper()
	waitFor(t, 30*time.Second, "edge /healthz", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", e.http))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// post sends a Segment batch; it returns the HTTP status (0 on a transport
// error, as when the agent was killed mid-request).
func (e *edgeProc) post(ctx context.Context, msgs []map[string]any) int {
	body, _ := json.Marshal(map[string]any{"batch": msgs})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/v1/batch", e.http), bytes.NewReader(body))
	req.SetBasicAuth("wk", "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func (e *edgeProc) mustPost(t testing.TB, msgs ...map[string]any) {
	t.Helper()
	if code := e.post(context.Background(), msgs); code != 200 {
		t.Fatalf("POST /v1/batch: %d", code)
	}
}

type status struct {
	QueueDepth   int64 `json:"queue_depth"`
	HubConnected bool  `json:"hub_connected"`
}

func (e *edgeProc) status(t testing.TB) (status, bool) {
	var s status
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/status", e.http))
	if err != nil {
		return s, false
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		return s, false
	}
	return s, true
}

func writeFile(t testing.TB, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func getJSON(t testing.TB, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
