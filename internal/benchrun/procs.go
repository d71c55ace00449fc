package main

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

// proc is one child process (hub or edge agent) that can be stopped and
// started again with the same arguments. It keeps the CPU time and peak
// resident memory of the runs that ended.
type proc struct {
	name    string
	bin     string
	args    []string
	logPath string
	logger  *slog.Logger

	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File

	cpuEnded float64 // CPU seconds of runs that ended
	rssEnded float64 // peak RSS (MiB) of runs that ended
}

func (p *proc) start() error {
	f, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	cmd := exec.Command(p.bin, p.args...)
	// No Pdeathsig: it fires when the creating OS thread ends, which the Go
	// runtime may do long before this program ends (go.dev/issue/27505).
	// Every scenario kills its processes on the way out instead.
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.name, err)
	}
	p.cmd, p.log, p.done = cmd, f, make(chan struct{})
	go func(done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(p.done)
	p.logger.Debug("process started", "name", p.name, "pid", cmd.Process.Pid)
	return nil
}

func (p *proc) running() bool {
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

// stop sends sig and waits up to timeout for the exit, then kills.
func (p *proc) stop(sig syscall.Signal, timeout time.Duration) error {
	if p.cmd == nil {
		return nil
	}
	var err error
	if p.running() {
		_ = p.cmd.Process.Signal(sig)
		select {
		case <-p.done:
		case <-time.After(timeout):
			_ = p.cmd.Process.Kill()
			<-p.done
			err = fmt.Errorf("%s did not exit within %v of %v", p.name, timeout, sig)
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

// cpuSeconds is the CPU time of every run so far, the live one included.
func (p *proc) cpuSeconds() float64 {
	c := p.cpuEnded
	if p.running() {
		c += liveCPUSeconds(p.cmd.Process.Pid)
	}
	return c
}

// peakRSSMiB is the highest peak RSS of every run so far.
func (p *proc) peakRSSMiB() float64 {
	r := p.rssEnded
	if p.running() {
		if live, err := edgebench.PeakRSSMiB(p.cmd.Process.Pid); err == nil {
			r = max(r, live)
		}
	}
	return r
}

// logTail returns the last n lines of the process's log.
func (p *proc) logTail(n int) string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
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

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// errTimeout is wrapped by waitUntil when the deadline passes first.
var errTimeout = errors.New("timed out")

// waitUntil polls cond every interval until it holds, ctx ends or timeout
// passes.
func waitUntil(ctx context.Context, timeout, interval time.Duration, what string, cond func(context.Context) bool) error {
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
				return fmt.Errorf("waiting for %s: %w after %v", what, errTimeout, timeout)
			}
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
}

// healthy reports whether GET url answers 200.
func healthy(ctx context.Context, client *http.Client, url string) bool {
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

func logPath(dir, name string) string { return filepath.Join(dir, name+".log") }
