package e2e

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/unico-cdp/unico/simulate"
)

// BenchmarkPipeline drives a hub and two edge agents, all real processes,
// with the simulator's omnichannel identity mix for a fixed number of
// events, and reports: events/s from the first HTTP accept to the last
// profile committed at the hub, the p50/p99 time from an edge accepting an
// event to its profile update being committed (the hub's
// unico_hub_event_latency_seconds histogram), and peak RSS of each process.
//
//	go test -run '^$' -bench Pipeline -benchtime 1x ./internal/e2e
func BenchmarkPipeline(b *testing.B) {
	for _, rate := range []int{5000, 0} {
		name := fmt.Sprintf("rate=%d", rate)
		if rate == 0 {
			name = "rate=max"
		}
		b.Run(name, func(b *testing.B) {
			binaries(b)
			dir := b.TempDir()
			hub := startHub(b, dir+"/hub")
			edges := []*edgeProc{startEdge(b, dir+"/a", "store-a", hub.mqtt), startEdge(b, dir+"/b", "store-b", hub.mqtt)}
			urls := []string{fmt.Sprintf("http://127.0.0.1:%d", edges[0].http), fmt.Sprintf("http://127.0.0.1:%d", edges[1].http)}
			const events = 100_000
			var sum simulate.Summary
			var took time.Duration
			for i := 0; b.Loop(); i++ {
				pop, err := simulate.NewPopulation(int64(i+1), 20_000, simulate.PopulationOptions{})
				if err != nil {
					b.Fatal(err)
				}
				gen, err := simulate.NewGenerator(pop, simulate.GeneratorConfig{Seed: int64(i + 1), Now: time.Now, RunID: fmt.Sprintf("bench%d", i)})
				if err != nil {
					b.Fatal(err)
				}
				sender, err := simulate.NewSender(simulate.SenderConfig{WriteKey: "wk"}, nil)
				if err != nil {
					b.Fatal(err)
				}
				before := hub.events(b)
				t0 := time.Now()
				sum, err = simulate.Run(context.Background(), gen, simulate.RunConfig{
					Edges: urls, Sender: sender, Rate: float64(rate), Events: events, Batch: 100, Concurrency: 16,
				}, nil)
				if err != nil {
					b.Fatal(err)
				}
				waitFor(b, 10*time.Minute, "every accepted event at the hub", func() bool { return hub.events(b)-before >= sum.Accepted })
				took += time.Since(t0)
			}
			b.ReportMetric(float64(sum.Accepted*int64(b.N))/took.Seconds(), "events/s")
			b.ReportMetric(sum.P99, "http-p99-ms")
			p50, p99 := hub.latencyQuantiles(b)
			b.ReportMetric(p50*1000, "e2e-p50-ms")
			b.ReportMetric(p99*1000, "e2e-p99-ms")
			b.ReportMetric(peakRSS(hub.proc), "hub-rss-MB")
			b.ReportMetric(peakRSS(edges[0].proc), "edge-rss-MB")
		})
	}
}

// latencyQuantiles reads the hub's event latency histogram from /metrics
// and interpolates the 50th and 99th percentiles.
func (h *hubProc) latencyQuantiles(tb testing.TB) (p50, p99 float64) {
	tb.Helper()
	resp, err := http.Get(h.url("/metrics"))
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	type bucket struct{ le, n float64 }
	var bs []bucket
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "unico_hub_event_latency_seconds_bucket{") {
			continue
		}
		i, j := strings.Index(line, `le="`), strings.LastIndex(line, `"}`)
		leS := line[i+4 : j]
		le := math.Inf(1)
		if leS != "+Inf" {
			le, _ = strconv.ParseFloat(leS, 64)
		}
		n, _ := strconv.ParseFloat(strings.TrimSpace(line[j+2:]), 64)
		bs = append(bs, bucket{le, n})
	}
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return 0, 0
	}
	q := func(p float64) float64 {
		target := p * bs[len(bs)-1].n
		prevLe, prevN := 0.0, 0.0
		for _, b := range bs {
			if b.n >= target {
				if math.IsInf(b.le, 1) {
					return prevLe
				}
				return prevLe + (b.le-prevLe)*(target-prevN)/math.Max(b.n-prevN, 1)
			}
			prevLe, prevN = b.le, b.n
		}
		return prevLe
	}
	return q(0.50), q(0.99)
}

// peakRSS returns a process's peak resident set in MB (VmHWM).
func peakRSS(p *proc) float64 {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}
