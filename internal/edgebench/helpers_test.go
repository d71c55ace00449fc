package edgebench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
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

const (
	adminToken = "edgebench-token"
	writeKey   = "wk"
)

var (
	binDir   string
	buildErr error
	// buildOnce builds cmd/hub and cmd/edge-agent once per test binary.
	buildOnce sync.Once
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "unico-edgebench-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// binaries builds the real binaries; tests and benchmarks that need them
// are skipped under -short.
func binaries(tb testing.TB) {
	tb.Helper()
	if testing.Short() {
		tb.Skip("SKIP: runs the built edge-agent and hub binaries (runs without -short)")
	}
	buildOnce.Do(func() {
		// EDGEBENCH_BIN names a directory of prebuilt hub and edge-agent
		// binaries, to compare builds (of another commit, say).
		if dir := os.Getenv("EDGEBENCH_BIN"); dir != "" {
			for _, name := range []string{"hub", "edge-agent"} {
				if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
					buildErr = fmt.Errorf("EDGEBENCH_BIN: %w", err)
					return
				}
			}
			binDir = dir
			return
		}
		cmd := exec.Command("go", "build", "-o", binDir+"/", "../../cmd/hub", "../../cmd/edge-agent")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// proc is a running binary.
type proc struct {
	tb   testing.TB
	name string
	args []string
	env  []string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *lockedBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Keep the tail only: benchmarks may run long.
	if w.b.Len() > 1<<20 {
		w.b.Reset()
	}
	return w.b.Write(p)
}

func (w *lockedBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func start(tb testing.TB, name string, env []string, args ...string) *proc {
	tb.Helper()
	p := &proc{tb: tb, name: name, args: args, env: env, log: &lockedBuffer{}}
	p.start()
	tb.Cleanup(func() {
		p.stop(syscall.SIGKILL)
		if tb.Failed() {
			tb.Logf("--- %s log ---\n%s", name, p.log.String())
		}
	})
	return p
}

func (p *proc) start() {
	p.tb.Helper()
	p.cmd = exec.Command(filepath.Join(binDir, p.name), p.args...)
	p.cmd.Env = append(os.Environ(), p.env...)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		p.tb.Fatalf("start %s: %v", p.name, err)
	}
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(p.cmd, p.done)
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
		p.tb.Errorf("%s did not exit within 30s of %v", p.name, sig)
	}
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(tb testing.TB, timeout time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type hubProc struct {
	*proc
	http, mqtt int
}

func startHub(tb testing.TB, dir string) *hubProc {
	tb.Helper()
	h := &hubProc{http: freePort(tb), mqtt: freePort(tb)}
	h.proc = start(tb, "hub", nil, "--data-dir", dir, "--admin-token", adminToken,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", h.http), "--mqtt-addr", fmt.Sprintf("127.0.0.1:%d", h.mqtt), "--log-level", "warn")
	h.waitReady(tb)
	return h
}

// restart starts the hub again on the same ports and data directory.
func (h *hubProc) restart(tb testing.TB) {
	tb.Helper()
	h.proc.start()
	h.waitReady(tb)
}

func (h *hubProc) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", h.http, path) }

func (h *hubProc) waitReady(tb testing.TB) {
	tb.Helper()
	waitFor(tb, 60*time.Second, "hub /healthz", func() bool {
		resp, err := http.Get(h.url("/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// get fetches an API path into v (when 200) and returns the status code, 0
// on a transport error.
func (h *hubProc) get(path string, v any) int {
	req, _ := http.NewRequest(http.MethodGet, h.url(path), nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return 0
		}
	}
	return resp.StatusCode
}

// events returns the hub's store.events, -1 when unavailable.
func (h *hubProc) events() int64 {
	var s struct {
		Store struct {
			Events int64 `json:"events"`
		} `json:"store"`
	}
	if h.get("/api/v1/stats", &s) != 200 {
		return -1
	}
	return s.Store.Events
}

type edgeProc struct {
	*proc
	http int
}

func startEdge(tb testing.TB, dir string, hubMQTT int, env []string, extra ...string) *edgeProc {
	tb.Helper()
	e := &edgeProc{http: freePort(tb)}
	args := append([]string{"--data-dir", dir, "--edge-id", "bench-edge", "--write-key", writeKey,
		"--http-addr", fmt.Sprintf("127.0.0.1:%d", e.http), "--hub-url", fmt.Sprintf("mqtt://127.0.0.1:%d", hubMQTT),
		"--default-channel", "pos", "--log-level", "warn", "--ack-timeout", "3s"}, extra...)
	e.proc = start(tb, "edge-agent", env, args...)
	waitFor(tb, 60*time.Second, "edge /healthz", func() bool {
		select {
		case <-e.done:
			tb.Fatalf("edge-agent exited while starting:\n%s", e.log.String())
		default:
		}
		resp, err := http.Get(e.url("/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return e
}

func (e *edgeProc) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", e.http, path) }

// postResult is the outcome of one POST.
type postResult struct {
	code       int // 0 on a transport error
	retryAfter string
	body       string
}

func (e *edgeProc) post(ctx context.Context, c *http.Client, body []byte) postResult {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.url("/v1/batch"), bytes.NewReader(body))
	req.SetBasicAuth(writeKey, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return postResult{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return postResult{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), body: string(b)}
}

func (e *edgeProc) status(tb testing.TB) Status {
	tb.Helper()
	resp, err := http.Get(e.url("/v1/status"))
	if err != nil {
		tb.Fatalf("GET /v1/status: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	s, err := ParseStatus(b)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}
