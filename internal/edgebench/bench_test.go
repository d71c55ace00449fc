package edgebench

import (
	"encoding/base64"
	"fmt"
	"net"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

const benchEvents = 100 // events per request

// benchMemLimits are the agent's --memory-limit settings the benchmarks
// compare; "default" leaves the flag out.
var benchMemLimits = []string{"default", "64MiB"}

// memArgs returns the agent arguments for a benchMemLimits setting.
func memArgs(limit string, extra ...string) []string {
	if limit == "default" {
		return extra
	}
	return append([]string{"--memory-limit", limit}, extra...)
}

// deadHubPort returns a port nothing listens on, for an agent without a hub.
func deadHubPort(b testing.TB) int { return freePort(b) }

// loadClients posts the bodies from len(bodies) concurrent clients over
// keep-alive connections, one request per token received from next, and
// returns the latency of every 200. A non-200 answer is a benchmark error.
func loadClients(b testing.TB, url string, bodies [][]byte, next <-chan struct{}) []time.Duration {
	b.Helper()
	hc := &fasthttp.HostClient{
		Addr:     url,
		MaxConns: len(bodies),
		Dial:     func(a string) (net.Conn, error) { return net.Dial("tcp", a) },
	}
	defer hc.CloseIdleConnections()
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(writeKey+":"))
	var (
		mu   sync.Mutex
		lats []time.Duration
		wg   sync.WaitGroup
		once sync.Once
	)
	for c := range bodies {
		wg.Go(func() {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + url + "/v1/batch")
			req.Header.SetMethod("POST")
			req.Header.SetContentType("application/json")
			req.Header.Set("Authorization", auth)
			req.SetBody(bodies[c])
			mine := make([]time.Duration, 0, 1024)
			for range next {
				t0 := time.Now()
				err := hc.Do(req, resp)
				if err != nil || resp.StatusCode() != 200 {
					once.Do(func() { b.Errorf("POST /v1/batch: %v %d %s", err, resp.StatusCode(), resp.Body()) })
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return lats
}

// BenchmarkEdgeIngest measures durable ingest of the built edge-agent: N
// concurrent clients post /v1/batch requests of 100 events of about 250
// bytes over loopback; every 200 means fsynced. Reported: events/s
// accepted, p50/p99 request latency, the agent's CPU time (user+system)
// per accepted event, its peak RSS (VmHWM) and the largest anonymous and
// file-backed parts seen, at the default --memory-limit and at 64MiB.
// No hub: ingest does not depend on it.
func BenchmarkEdgeIngest(b *testing.B) {
	binaries(b)
	for _, clients := range []int{8, 16, 32} {
		for _, lim := range benchMemLimits {
			b.Run(fmt.Sprintf("clients=%d/memory-limit=%s", clients, lim), func(b *testing.B) {
				edge := startEdge(b, b.TempDir(), deadHubPort(b), nil, memArgs(lim, "--quota-bytes", "64GiB")...)
				bodies := make([][]byte, clients)
				for i := range bodies {
					bodies[i] = Batch(BatchSpec{Events: benchEvents, Channel: "pos", UserID: "user-" + strconv.Itoa(i)})
				}
				b.SetBytes(int64(len(bodies[0])))
				next := make(chan struct{})
				var lats []time.Duration
				done := make(chan struct{})
				go func() {
					defer close(done)
					lats = loadClients(b, fmt.Sprintf("127.0.0.1:%d", edge.http), bodies, next)
				}()
				cpu0, err := CPUTime(edge.pid())
				if err != nil {
					b.Fatal(err)
				}
				stopRSS := sampleRSS(edge.pid())
				start := time.Now()
				for b.Loop() {
					next <- struct{}{}
				}
				close(next)
				<-done
				elapsed := time.Since(start)
				mem := stopRSS()
				cpu1, err := CPUTime(edge.pid())
				if err != nil {
					b.Fatal(err)
				}
				rss, err := PeakRSSMiB(edge.pid())
				if err != nil {
					b.Fatal(err)
				}
				if st := edge.status(b); st.EventsAccepted != uint64(len(lats)*benchEvents) {
					b.Errorf("agent accepted %d events, clients got 200 for %d", st.EventsAccepted, len(lats)*benchEvents)
				}
				b.ReportMetric(float64(len(lats)*benchEvents)/elapsed.Seconds(), "events/s")
				b.ReportMetric(float64(Percentile(lats, 50).Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(Percentile(lats, 99).Microseconds())/1000, "p99-ms")
				if len(lats) > 0 {
					b.ReportMetric(float64((cpu1-cpu0).Microseconds())/float64(len(lats)*benchEvents), "agentCPU-us/event")
				}
				b.ReportMetric(rss, "peakRSS-MiB")
				b.ReportMetric(mem.Anon, "anonRSS-MiB")
				b.ReportMetric(mem.File, "fileRSS-MiB")
			})
		}
	}
}

// BenchmarkEdgeDrainHub measures how fast a backlog is taken in by the hub:
// 200,000 events are queued while the hub is stopped, then the hub starts
// and the time until the agent's queue_depth is 0 (every event acked by the
// hub, which acks only after identity resolution and its own durable
// commit) gives events/s. The figure is bound by the hub's work; the edge's
// own drain rate to the broker is BenchmarkEdgeDrainBroker.
func BenchmarkEdgeDrainHub(b *testing.B) {
	binaries(b)
	const backlog = 200_000
	for _, lim := range benchMemLimits {
		b.Run(fmt.Sprintf("events=%d/memory-limit=%s", backlog, lim), func(b *testing.B) {
			hub := startHub(b, b.TempDir())
			edge := startEdge(b, b.TempDir(), hub.mqtt, nil, memArgs(lim, "--quota-bytes", "4GiB")...)
			var drained int
			var took time.Duration
			for b.Loop() {
				b.StopTimer()
				hub.stop(syscall.SIGTERM)
				fill(b, edge, backlog)
				b.StartTimer()
				t0 := time.Now()
				hub.restart(b)
				waitFor(b, 10*time.Minute, "backlog drained", func() bool { return edge.status(b).QueueDepth == 0 })
				took += time.Since(t0)
				drained += backlog
			}
			rss, err := PeakRSSMiB(edge.pid())
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(drained)/took.Seconds(), "events/s")
			b.ReportMetric(rss, "peakRSS-MiB")
		})
	}
}

// fill queues n events (a multiple of benchEvents) from 8 clients; each
// event gets a fresh id from the agent.
func fill(b testing.TB, edge *edgeProc, n int) {
	b.Helper()
	bodies := make([][]byte, 8)
	for i := range bodies {
		bodies[i] = Batch(BatchSpec{Events: benchEvents, Channel: "pos", UserID: "user-" + strconv.Itoa(i)})
	}
	next := make(chan struct{})
	go func() {
		defer close(next)
		for range n / benchEvents {
			next <- struct{}{}
		}
	}()
	lats := loadClients(b, fmt.Sprintf("127.0.0.1:%d", edge.http), bodies, next)
	if len(lats)*benchEvents != n {
		b.Fatalf("queued %d of %d events", len(lats)*benchEvents, n)
	}
	if d := edge.status(b).QueueDepth; d < int64(n) {
		b.Fatalf("queue_depth %d after queueing %d events", d, n)
	}
}
