// Package procs starts, watches and stops the real Unico binaries (and
// Mosquitto) as child processes for the end-to-end benchmark
// (internal/benchrun) and the fault-injection suite (internal/chaos): a
// process that can be killed and started again with the same arguments,
// with its log, CPU time and peak memory, plus free ports and polling with
// deadlines.
package procs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/unico-cdp/unico/internal/edgebench"
)

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in
// /proc/<pid>/stat on every Linux architecture Unico runs on.
const clockTicks = 100

// Proc is one child process (hub or edge agent) that can be stopped and
// started again with the same arguments. It keeps the CPU time and peak
// resident memory of the runs that ended.
type Proc struct {
	Name    string
	Bin     string
	Args    []string
	LogPath string
	// Logger receives debug lines; nil discards them.
	Logger *slog.Logger

	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File

	cpuEnded float64 // CPU seconds of runs that ended
	rssEnded float64 // peak RSS (MiB) of runs that ended
}

func (p *Proc) Start() error {
	f, err := os.OpenFile(p.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	cmd := exec.Command(p.Bin, p.Args...)
	// No Pdeathsig: it fires when the creating OS thread ends, which the Go
	// runtime may do long before this program ends (go.dev/issue/27505).
	// Every scenario kills its processes on the way out instead.
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	p.cmd, p.log, p.done = cmd, f, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(p.done)
	if p.Logger != nil {
		p.Logger.Debug("process started", "name", p.Name, "pid", cmd.Process.Pid)
	}
	return nil
}

func (p *Proc) Running() bool {
	if p.cmd == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends sig and waits up to timeout for the exit, then kills.
func (p *Proc) Stop(sig syscall.Signal, timeout time.Duration) error {
	if p.cmd == nil {
		return nil
	}
	var err error
	if p.Running() {
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(timeout):
			_ = p.cmd.Process.Kill()
			<-p.done
			err = fmt.Errorf("%s did not exit within %v of %v", p.Name, timeout, sig)
		}
	}
	if ps := p.cmd.ProcessState; ps != nil {
		p.cpuEnded += (ps.UserTime() + ps.SystemTime()).Seconds()
		if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
			p.rssEnded = max(p.rssEnded, float64(ru.Maxrss)/1024)
		}
	}
	p.log.Close()
	p.cmd = nil
	return err
}

// CPUSeconds is the CPU time of every run so far, the live one included.
func (p *Proc) CPUSeconds() float64 {
	c := p.cpuEnded
	if p.Running() {
		c += liveCPUSeconds(p.cmd.Process.Pid)
	}
	return c
}

// PeakRSSMiB is the highest peak RSS of every run so far.
func (p *Proc) PeakRSSMiB() float64 {
	r := p.rssEnded
	if p.Running() {
		if live, err := edgebench.PeakRSSMiB(p.cmd.Process.Pid); err == nil {
			r = max(r, live)
		}
	}
	return r
}

// LogTail returns the last n lines of the process's log.
func (p *Proc) LogTail(n int) string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// SelfCPUSeconds is this process's user plus system CPU time.
func SelfCPUSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// liveCPUSeconds reads utime + stime of a running process.
func liveCPUSeconds(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// ErrTimeout is wrapped by WaitUntil when the deadline passes first.
var ErrTimeout = errors.New("timed out")

// WaitUntil polls cond every interval until it holds, ctx ends or timeout
// passes.
func WaitUntil(ctx context.Context, timeout, interval time.Duration, what string, cond func(context.Context) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if cond(ctx) {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("waiting for %s: %w after %v", what, ErrTimeout, timeout)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// Healthy reports whether GET url answers 200.
func Healthy(ctx context.Context, client *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func LogPath(dir, name string) string { return filepath.Join(dir, name+".log") }

// Pid is the running process's id, or 0.
func (p *Proc) Pid() int {
	if !p.Running() {
		return 0
	}
	return p.cmd.Process.Pid
}

// Listening reports whether something accepts TCP connections on addr.
func Listening(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// StartAndWait starts p and polls ready every interval until it holds;
// when it does not within timeout, the error carries the tail of p's log.
func (p *Proc) StartAndWait(ctx context.Context, timeout, interval time.Duration, what string, ready func(context.Context) bool) error {
	if err := p.Start(); err != nil {
		return err
	}
	if err := WaitUntil(ctx, timeout, interval, what, ready); err != nil {
		return fmt.Errorf("%w\n%s", err, p.LogTail(20))
	}
	return nil
}

// WorkDir makes a fresh directory under parent (the system's temporary
// directory when empty) for one run's data and logs. cleanup removes it,
// unless keep is set, in which case its path is logged instead.
func WorkDir(parent, prefix string, keep bool, logger *slog.Logger) (dir string, cleanup func(), err error) {
	dir, err = os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", nil, fmt.Errorf("work dir: %w", err)
	}
	if keep {
		if logger != nil {
			logger.Info("data kept", "dir", dir)
		}
		return dir, func() {}, nil
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}
