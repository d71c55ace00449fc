package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/unico-cdp/unico/simulate"
)

// BenchmarkSnapshotLatency measures, with real processes, the time from an
// event accepted at store B to the updated snapshot readable at store A's
// lookup API, while store B takes a steady background load of simulated
// traffic; then the lookup latency at store A.
//
//	go test -run '^$' -bench SnapshotLatency -benchtime 1x ./internal/e2e
func BenchmarkSnapshotLatency(b *testing.B) {
	for _, rate := range []int{1000, 5000} {
		b.Run(fmt.Sprintf("rate=%d", rate), func(b *testing.B) { benchSnapshotLatency(b, rate) })
	}
}

func benchSnapshotLatency(b *testing.B, rate int) {
	binaries(b)
	dir := b.TempDir()
	hub := startHub(b, dir+"/hub", "--snapshot-scope", "all")
	storeA := startEdge(b, dir+"/a", "store-a", hub.mqtt)
	storeB := startEdge(b, dir+"/b", "store-b", hub.mqtt)
	const probes = 40
	const probeDeadline = 30 * time.Second
	var lat []time.Duration
	timeouts := 0
	var bg simulate.Summary
	for i := 0; b.Loop(); i++ {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			pop, _ := simulate.NewPopulation(int64(i+1), 20_000, simulate.PopulationOptions{})
			gen, _ := simulate.NewGenerator(pop, simulate.GeneratorConfig{Seed: int64(i + 1), Now: time.Now, RunID: fmt.Sprintf("bg%d", i)})
			sender, _ := simulate.NewSender(simulate.SenderConfig{WriteKey: "wk"}, nil)
			bg, _ = simulate.Run(ctx, gen, simulate.RunConfig{Edges: []string{fmt.Sprintf("http://127.0.0.1:%d", storeB.http)},
				Sender: sender, Rate: float64(rate), Batch: 50, Concurrency: 8}, nil)
		}()
		time.Sleep(2 * time.Second) // let the background load reach its rate
		for p := range probes {
			card := fmt.Sprintf("PROBE-%d-%d", i, p)
			t0 := time.Now()
			storeB.mustPost(b, map[string]any{"type": "identify", "messageId": card, "userId": "probe-" + card,
				"traits": map[string]any{"loyalty_id": card}})
			// A probe not readable within probeDeadline counts as a timeout
			// and as probeDeadline in the percentiles: the delivery is
			// behind the load.
			deadline := t0.Add(probeDeadline)
			for {
				if code, _ := storeA.lookup(b, "loyalty_id", card); code == 200 {
					lat = append(lat, time.Since(t0))
					break
				}
				if time.Now().After(deadline) {
					lat = append(lat, probeDeadline)
					timeouts++
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		wg.Wait()
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "e2e-p50-ms")
	b.ReportMetric(q(0.99), "e2e-p99-ms")
	b.ReportMetric(bg.Rate, "background-events/s")
	b.ReportMetric(float64(timeouts), "probes-over-30s")

	// Lookup latency at store A over HTTP on loopback.
	var lk []time.Duration
	client := &http.Client{}
	for range 2000 {
		t0 := time.Now()
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/profiles/lookup?type=loyalty_id&value=PROBE-0-1", storeA.http))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		lk = append(lk, time.Since(t0))
	}
	slices.Sort(lk)
	b.ReportMetric(float64(lk[len(lk)/2].Microseconds()), "lookup-p50-µs")
	b.ReportMetric(float64(lk[len(lk)*99/100].Microseconds()), "lookup-p99-µs")
}

// BenchmarkFullSync measures how fast a new edge receives the profiles it
// should hold (scope all) from a hub holding 100,000 profiles.
//
//	go test -run '^$' -bench FullSync -benchtime 1x ./internal/e2e
func BenchmarkFullSync(b *testing.B) {
	binaries(b)
	dir := b.TempDir()
	hub := startHub(b, dir+"/hub", "--snapshot-scope", "all")
	const profiles, perRequest = 100_000, 10_000
	for start := 0; start < profiles; start += perRequest {
		var evs []map[string]any
		for i := start; i < start+perRequest; i++ {
			evs = append(evs, map[string]any{"id": fmt.Sprintf("imp-%d", i), "type": "identify", "channel": "import",
				"identifiers": []map[string]string{{"type": "loyalty_id", "value": fmt.Sprintf("C%06d", i)}, {"type": "email", "value": fmt.Sprintf("c%d@example.com", i)}},
				"traits":      map[string]any{"first_name": fmt.Sprint("N", i)}, "occurred_at": time.Now().UTC().Format(time.RFC3339Nano)})
		}
		body, _ := json.Marshal(evs)
		req, _ := http.NewRequest(http.MethodPost, hub.url("/api/v1/events"), bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("import: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	var took time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		edge := startEdge(b, fmt.Sprintf("%s/edge%d", dir, i), fmt.Sprintf("store-%d", i), hub.mqtt)
		waitFor(b, 10*time.Minute, "the full sync", func() bool {
			s, ok := edge.cacheStatus(b)
			return ok && s.ProfilesCached == profiles
		})
		took += time.Since(t0)
		b.ReportMetric(peakRSS(edge.proc), "edge-rss-MB")
		edge.stop(syscall.SIGKILL)
	}
	b.ReportMetric(float64(profiles*b.N)/took.Seconds(), "profiles/s")
	b.ReportMetric(took.Seconds()/float64(b.N), "s/full-sync")
	b.ReportMetric(peakRSS(hub.proc), "hub-rss-MB")
}
