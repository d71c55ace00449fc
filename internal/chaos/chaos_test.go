package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestGeneratorDeterministicAndUnique(t *testing.T) {
	g := generator{prefix: "s", customers: 7}
	seen := map[string]bool{}
	for k := range 3 {
		for n := range 200 {
			o := g.order(k, n)
			if o != g.order(k, n) {
				t.Fatalf("order(%d, %d) differs between calls", k, n)
			}
			if seen[o.id] {
				t.Fatalf("duplicate message id %s", o.id)
			}
			seen[o.id] = true
			if o.customer < 0 || o.customer >= 7 || o.revenue < 1 || o.revenue > 50 {
				t.Fatalf("order out of range: %+v", o)
			}
		}
	}
}

func TestLedgerCountsDistinctIDs(t *testing.T) {
	l := newLedger()
	a := []order{{id: "a", customer: 0, revenue: 3}, {id: "b", customer: 1, revenue: 4}}
	l.ack(a)
	l.ack(a[:1]) // the same batch acknowledged twice counts once
	l.ack([]order{{id: "c", customer: 0, revenue: 5}})
	if got := l.ackedCount(); got != 3 {
		t.Fatalf("acked %d, want 3", got)
	}
	orders, revenue := l.totals(2)
	if orders[0] != 2 || revenue[0] != 8 || orders[1] != 1 || revenue[1] != 4 {
		t.Fatalf("totals %v %v", orders, revenue)
	}
}

func TestParseConfig(t *testing.T) {
	bin := t.TempDir()
	for _, b := range []string{"hub", "edge-agent"} {
		if err := os.WriteFile(filepath.Join(bin, b), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	env := func(scale string) func(string) string {
		return func(k string) string {
			if k == "CHAOS_SCALE" {
				return scale
			}
			return ""
		}
	}
	tests := []struct {
		name, scale string
		args        []string
		wantErr     string
		wantScale   float64
		wantN       int
	}{
		{name: "defaults", args: []string{"-bin", bin}, wantScale: 1, wantN: len(allScenarios)},
		{name: "env scale", scale: "0.1", args: []string{"-bin", bin}, wantScale: 0.1, wantN: len(allScenarios)},
		{name: "one scenario", args: []string{"-bin", bin, "-scenarios", "quota"}, wantScale: 1, wantN: 1},
		{name: "bad scale", scale: "zero", args: []string{"-bin", bin}, wantErr: "CHAOS_SCALE"},
		{name: "unknown scenario", args: []string{"-bin", bin, "-scenarios", "nope"}, wantErr: "unknown scenario"},
		{name: "no binaries", args: []string{"-bin", t.TempDir()}, wantErr: "make build"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(tt.args, env(tt.scale), io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.scale != tt.wantScale || len(c.scenarios) != tt.wantN {
				t.Fatalf("scale %v, %d scenarios; want %v, %d", c.scale, len(c.scenarios), tt.wantScale, tt.wantN)
			}
		})
	}
}

// TestLoadRetriesWithSameIDs checks that a client resends a refused batch
// until it gets 200 and records it once.
func TestLoadRetriesWithSameIDs(t *testing.T) {
	var calls atomic.Int64
	bodies := make(chan string, 16)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies <- string(b)
		switch calls.Add(1) {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
		case 2:
			w.WriteHeader(http.StatusTooManyRequests)
		default:
			w.Write([]byte(`{"success":true}`))
		}
	}))
	defer srv.Close()
	l := newLedger()
	ld := startLoad(t.Context(), generator{prefix: "t", customers: 3}, []string{srv.URL},
		loadConfig{clients: 1, perBatch: 5, rate: 1}, l)
	deadline := time.Now().Add(10 * time.Second)
	for l.ackedCount() < 5 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := ld.stop(false); err != nil {
		t.Fatal(err)
	}
	if got := l.ackedCount(); got != 5 {
		t.Fatalf("acked %d, want 5", got)
	}
	if l.status429.Load() != 1 || l.status503.Load() != 1 || l.retries.Load() != 2 {
		t.Fatalf("429s %d, 5xx %d, retries %d", l.status429.Load(), l.status503.Load(), l.retries.Load())
	}
	first, second, third := <-bodies, <-bodies, <-bodies
	if first != second || second != third {
		t.Fatal("a retry changed the batch")
	}
}

func TestLoadFailsOnBadRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":"bad"}`, http.StatusBadRequest)
	}))
	defer srv.Close()
	l := newLedger()
	ld := startLoad(t.Context(), generator{prefix: "t", customers: 3}, []string{srv.URL},
		loadConfig{clients: 1, perBatch: 2, rate: 100}, l)
	deadline := time.Now().Add(10 * time.Second)
	for l.rejected.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := ld.stop(false); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("err %v, want the 400", err)
	}
	if l.ackedCount() != 0 || len(l.unacked) != 2 {
		t.Fatalf("acked %d, given up %d", l.ackedCount(), len(l.unacked))
	}
}

func TestSlowProxyDelaysAndCuts(t *testing.T) {
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	go func() {
		for {
			c, err := echo.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	p, err := newSlowProxy(echo.Addr().String(), 30*time.Millisecond, 40*time.Millisecond, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	roundTrip := func(c net.Conn) (time.Duration, error) {
		t0 := time.Now()
		if _, err := c.Write([]byte("ping\n")); err != nil {
			return 0, err
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err == nil && line != "ping\n" {
			t.Fatalf("echo %q", line)
		}
		return time.Since(t0), err
	}
	c, err := net.Dial("tcp", p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := roundTrip(c)
	if err != nil {
		t.Fatal(err)
	}
	if d < 60*time.Millisecond {
		t.Fatalf("round trip %v, want at least twice the minimum delay", d)
	}
	p.cut()
	if _, err := roundTrip(c); err == nil {
		t.Fatal("the connection survived a cut")
	}
	c2, err := net.DialTimeout("tcp", p.addr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if _, err := roundTrip(c2); err != nil {
		t.Fatalf("a new connection after the cut: %v", err)
	}
}
