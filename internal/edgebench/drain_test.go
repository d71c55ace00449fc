package edgebench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/unico-cdp/unico/hub/broker"
	"github.com/unico-cdp/unico/protocol"
)

// The drain benchmark measures the edge's own drain rate: a real agent
// binary with a pre-filled backlog forwards it through a real MQTT broker to
// ackSubscriber, which decodes every batch and answers with the same
// application-level ack as the hub's intake, without doing any hub work. The
// hub-bound figure (identity resolution and profiles included) is
// BenchmarkEdgeDrainHub.

// drainBacklog is the backlog of BenchmarkEdgeDrainBroker: 200,000 events,
// or 1,000,000 × BENCH_SCALE when BENCH_SCALE is set.
func drainBacklog(tb testing.TB) int {
	s := os.Getenv("BENCH_SCALE")
	if s == "" {
		return 200_000
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f <= 0 || f > 100 {
		tb.Fatalf("BENCH_SCALE %q: want a number in (0, 100]", s)
	}
	n := int(f*1_000_000) / benchEvents * benchEvents
	return max(n, benchEvents)
}

// agentArgs are extra edge-agent flags from EDGEBENCH_AGENT_ARGS
// (space-separated), for comparing settings without editing the benchmark.
func agentArgs() []string { return strings.Fields(os.Getenv("EDGEBENCH_AGENT_ARGS")) }

// drainBrokers are the brokers the drain runs through: "mochi" is the
// embedded broker of the hub (hub/broker) in this process, "mosquitto"
// Debian's, skipped when it is not installed.
var drainBrokers = []string{"mochi", "mosquitto"}

// startDrainBroker starts the named broker on a free loopback port and
// returns the port.
func startDrainBroker(tb testing.TB, name string) int {
	tb.Helper()
	switch name {
	case "mochi":
		return startMochi(tb)
	case "mosquitto":
		return startMosquitto(tb)
	}
	tb.Fatalf("unknown broker %q", name)
	return 0
}

func startMochi(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	br, err := broker.New(broker.Config{}, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Serve(ctx, ln) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("embedded broker: %v", err)
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// startMosquitto runs Debian's mosquitto on a free port, or skips.
func startMosquitto(tb testing.TB) int {
	tb.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		tb.Skip("SKIP: mosquitto is not installed (Debian package mosquitto)")
	}
	port := freePort(tb)
	dir := tb.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	// The subscriber keeps up and the agent keeps at most --window batches
	// in flight, so the default queue limits are never reached; raise them
	// anyway so that a slow run cannot lose batches and stall on resends.
	body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 10000\nmax_inflight_messages 0\n", port)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		tb.Fatal(err)
	}
	log := &lockedBuffer{}
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	tb.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if tb.Failed() {
			tb.Logf("--- mosquitto log ---\n%s", log.String())
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	waitFor(tb, 10*time.Second, "mosquitto to accept connections", func() bool {
		select {
		case <-exited:
			tb.Fatalf("mosquitto exited early:\n%s", log.String())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return port
}

// ackSubscriber stands in for the hub's intake: it subscribes to every
// edge's batches with the hub's shared subscription, decodes each batch with
// the hub's limits, checks that the edge's sequence has no gap, and
// publishes an ok ack on the edge's ack topic, as hub/intake does after a
// commit.
type ackSubscriber struct {
	client paho.Client

	mu       sync.Mutex
	high     uint64 // highest seq received; every seq below it was received
	events   uint64 // distinct events received
	batches  uint64 // batches received, resends included
	resent   uint64 // batches that started at or below high
	firstAt  time.Time
	firstCPU time.Duration
	errs     []string

	// onFirst runs on the first batch and returns the agent's CPU time.
	onFirst func() time.Duration
}

func startAckSubscriber(tb testing.TB, port int, onFirst func() time.Duration) *ackSubscriber {
	tb.Helper()
	s := &ackSubscriber{onFirst: onFirst}
	subbed := make(chan error, 1)
	opts := paho.NewClientOptions().
		AddBroker(fmt.Sprintf("tcp://127.0.0.1:%d", port)).
		SetClientID("edgebench-hub").
		SetCleanSession(true).
		SetAutoReconnect(false).
		SetKeepAlive(30 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetOrderMatters(true).
		SetConnectionLostHandler(func(_ paho.Client, err error) { s.fail("subscriber connection lost: %v", err) })
	s.client = paho.NewClient(opts)
	if tok := s.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("subscriber connect: %v", tok.Error())
	}
	tb.Cleanup(func() { s.client.Disconnect(250) })
	tok := s.client.Subscribe(protocol.HubBatchFilter(true), 1, s.handle)
	go func() {
		if !tok.WaitTimeout(10 * time.Second) {
			subbed <- errors.New("timeout")
			return
		}
		subbed <- tok.Error()
	}()
	if err := <-subbed; err != nil {
		tb.Fatalf("subscribe %s: %v", protocol.HubBatchFilter(true), err)
	}
	return s
}

func (s *ackSubscriber) fail(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.errs) < 10 {
		s.errs = append(s.errs, fmt.Sprintf(format, args...))
	}
}

// handle runs on paho's router, in arrival order.
func (s *ackSubscriber) handle(_ paho.Client, m paho.Message) {
	now := time.Now()
	tenant, edge, leaf, err := protocol.ParseTopic(m.Topic())
	if err != nil || leaf != "batch" {
		s.fail("batch on topic %q: %v", m.Topic(), err)
		return
	}
	var b protocol.Batch
	if err := protocol.Unmarshal(m.Payload(), &b, protocol.Limits{}); err != nil {
		s.fail("decode batch: %v", err)
		return
	}
	if b.EdgeID != edge || b.LastSeq < b.FirstSeq || uint64(len(b.Events)) != b.LastSeq-b.FirstSeq+1 {
		s.fail("batch %d-%d of edge %q on the topic of %q holds %d events", b.FirstSeq, b.LastSeq, b.EdgeID, edge, len(b.Events))
		return
	}
	for i := range b.Events {
		if b.Events[i].ID == "" {
			s.fail("batch %d-%d: event %d has no id", b.FirstSeq, b.LastSeq, i)
			return
		}
	}
	s.mu.Lock()
	if s.batches == 0 && s.onFirst != nil {
		s.firstAt, s.firstCPU = now, s.onFirst()
	}
	s.batches++
	switch {
	case b.FirstSeq <= s.high:
		s.resent++
		if b.LastSeq > s.high {
			s.events += b.LastSeq - s.high
			s.high = b.LastSeq
		}
	case b.FirstSeq == s.high+1:
		s.events += b.LastSeq - b.FirstSeq + 1
		s.high = b.LastSeq
	default:
		if len(s.errs) < 10 {
			s.errs = append(s.errs, fmt.Sprintf("gap: batch %d-%d after seq %d", b.FirstSeq, b.LastSeq, s.high))
		}
	}
	s.mu.Unlock()
	ack := protocol.Ack{EdgeID: edge, FirstSeq: b.FirstSeq, LastSeq: b.LastSeq, Status: protocol.AckOK,
		Accepted: len(b.Events), AckedAt: time.Now().UTC()}
	payload, err := protocol.Marshal(&ack)
	if err != nil {
		s.fail("encode ack: %v", err)
		return
	}
	// Not waiting on the token, as the hub's intake: a lost ack makes the
	// edge resend.
	s.client.Publish(protocol.AckTopic(tenant, edge), 1, false, payload)
}

type subStats struct {
	high, events, batches, resent uint64
	firstAt                       time.Time
	firstCPU                      time.Duration
	errs                          []string
}

func (s *ackSubscriber) stats() subStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return subStats{s.high, s.events, s.batches, s.resent, s.firstAt, s.firstCPU, append([]string(nil), s.errs...)}
}

// sampleRSS polls the resident memory of pid every 20 ms until stop is
// called, which returns the largest anonymous and file-backed figures seen.
func sampleRSS(pid int) (stop func() RSS) {
	quit, done := make(chan struct{}), make(chan RSS, 1)
	go func() {
		var peak RSS
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if r, err := CurrentRSS(pid); err == nil {
				peak.MaxRSS(r)
			}
			select {
			case <-quit:
				done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() RSS { close(quit); return <-done }
}

// drainResult is one drain of a backlog.
type drainResult struct {
	took      time.Duration // first batch received → queue_depth 0
	startup   time.Duration // agent start → first batch received
	agentCPU  time.Duration // agent CPU time during took
	peakRSS   float64       // MiB, the draining agent process
	drainMem  RSS           // its largest anonymous and file-backed RSS
	batches   uint64
	resent    uint64
	fillRate  float64 // events/s accepted while filling
	fillRSS   float64 // MiB, the filling agent process
	fillMem   RSS
	fillCPUev time.Duration
}

// runDrain queues n events in a fresh agent that has no broker, stops it,
// and starts it again against the broker on port with the subscriber
// acking. It returns when every event is acked and deleted.
func runDrain(tb testing.TB, brokerPort, n int, env, extra []string) drainResult {
	tb.Helper()
	dir := tb.TempDir()
	args := append([]string{"--quota-bytes", "8GiB"}, extra...)
	var r drainResult

	filler := startEdge(tb, dir, deadHubPort(tb), env, args...)
	cpu0, err := CPUTime(filler.pid())
	if err != nil {
		tb.Fatal(err)
	}
	t0 := time.Now()
	stopSampling := sampleRSS(filler.pid())
	fill(tb, filler, n)
	r.fillRate = float64(n) / time.Since(t0).Seconds()
	r.fillMem = stopSampling()
	cpu1, err := CPUTime(filler.pid())
	if err != nil {
		tb.Fatal(err)
	}
	r.fillCPUev = (cpu1 - cpu0) / time.Duration(n)
	if r.fillRSS, err = PeakRSSMiB(filler.pid()); err != nil {
		tb.Fatal(err)
	}
	filler.stop(syscall.SIGTERM)

	var agent *edgeProc
	var mu sync.Mutex
	sub := startAckSubscriber(tb, brokerPort, func() time.Duration {
		mu.Lock()
		defer mu.Unlock()
		c, err := CPUTime(agent.pid())
		if err != nil {
			return -1
		}
		return c
	})
	started := time.Now()
	mu.Lock()
	agent = startEdge(tb, dir, brokerPort, env, args...)
	mu.Unlock()
	stopSampling = sampleRSS(agent.pid())
	waitFor(tb, 30*time.Minute, "backlog drained", func() bool {
		if st := sub.stats(); len(st.errs) > 0 {
			tb.Fatalf("subscriber: %s", strings.Join(st.errs, "; "))
		}
		return agent.status(tb).QueueDepth == 0
	})
	end := time.Now()
	r.drainMem = stopSampling()
	cpuEnd, err := CPUTime(agent.pid())
	if err != nil {
		tb.Fatal(err)
	}
	if r.peakRSS, err = PeakRSSMiB(agent.pid()); err != nil {
		tb.Fatal(err)
	}
	st := sub.stats()
	if st.events != uint64(n) || st.high != uint64(n) {
		tb.Fatalf("subscriber received %d distinct events up to seq %d, want %d", st.events, st.high, n)
	}
	if st.firstCPU < 0 {
		tb.Fatal("could not read the agent's CPU time at the first batch")
	}
	r.took, r.startup = end.Sub(st.firstAt), st.firstAt.Sub(started)
	r.agentCPU = cpuEnd - st.firstCPU
	r.batches, r.resent = st.batches, st.resent
	agent.stop(syscall.SIGTERM)
	return r
}

// TestDrainToBroker drains a small backlog through each broker and checks
// that the subscriber saw every event once in order and the queue emptied.
func TestDrainToBroker(t *testing.T) {
	binaries(t)
	for _, name := range drainBrokers {
		t.Run("broker="+name, func(t *testing.T) {
			port := startDrainBroker(t, name)
			r := runDrain(t, port, 5_000, nil, []string{"--max-batch-events", "200"})
			if r.batches < 5_000/200 {
				t.Errorf("%d batches for 5,000 events of at most 200, want at least 25", r.batches)
			}
			t.Logf("drained 5,000 events in %v (%d batches, %d resent), agent CPU %v", r.took, r.batches, r.resent, r.agentCPU)
		})
	}
}

// BenchmarkEdgeDrainBroker measures the edge's drain rate to the broker:
// a backlog (drainBacklog) queued while no broker was reachable is drained
// by a restarted agent through a real broker to a subscriber that decodes
// every batch and acks it like the hub, without hub work. Reported: events/s
// and batches/s from the first batch received until the agent's
// queue_depth is 0 (every event acked and deleted), the agent's CPU µs per
// event over that span, its peak RSS while draining (queue recovery
// included) and, for the filling agent, ingest events/s, CPU µs per event
// and peak RSS; for both, the largest anonymous and file-backed parts of
// RSS seen (sampled every 20 ms). EDGEBENCH_AGENT_ARGS adds agent flags.
func BenchmarkEdgeDrainBroker(b *testing.B) {
	binaries(b)
	n := drainBacklog(b)
	for _, name := range drainBrokers {
		b.Run(fmt.Sprintf("broker=%s/events=%d", name, n), func(b *testing.B) {
			port := startDrainBroker(b, name)
			var sum drainResult
			runs := 0
			for b.Loop() {
				b.StopTimer()
				r := runDrain(b, port, n, nil, agentArgs())
				b.StartTimer()
				sum.took += r.took
				sum.startup += r.startup
				sum.agentCPU += r.agentCPU
				sum.batches += r.batches
				sum.resent += r.resent
				sum.peakRSS = max(sum.peakRSS, r.peakRSS)
				sum.fillRSS = max(sum.fillRSS, r.fillRSS)
				sum.drainMem.MaxRSS(r.drainMem)
				sum.fillMem.MaxRSS(r.fillMem)
				sum.fillRate += r.fillRate
				sum.fillCPUev += r.fillCPUev
				runs++
			}
			events := float64(runs * n)
			b.ReportMetric(events/sum.took.Seconds(), "events/s")
			b.ReportMetric(float64(sum.batches)/sum.took.Seconds(), "batches/s")
			b.ReportMetric(float64(sum.agentCPU.Microseconds())/events, "agent-CPU-µs/event")
			b.ReportMetric(sum.peakRSS, "drain-peakRSS-MiB")
			b.ReportMetric(float64(sum.resent), "resent-batches")
			b.ReportMetric(sum.startup.Seconds()/float64(runs), "startup-s")
			b.ReportMetric(sum.fillRate/float64(runs), "ingest-events/s")
			b.ReportMetric(float64(sum.fillCPUev.Nanoseconds())/1000/float64(runs), "ingest-CPU-µs/event")
			b.ReportMetric(sum.fillRSS, "ingest-peakRSS-MiB")
			b.ReportMetric(sum.drainMem.Anon, "drain-anon-MiB")
			b.ReportMetric(sum.drainMem.File, "drain-file-MiB")
			b.ReportMetric(sum.fillMem.Anon, "ingest-anon-MiB")
			b.ReportMetric(sum.fillMem.File, "ingest-file-MiB")
		})
	}
}
