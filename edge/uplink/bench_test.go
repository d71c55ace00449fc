package uplink

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// BenchmarkDrain measures the drain rate of a 100,000-event backlog through
// the in-process broker to the acking test hub, from the real Badger queue
// and from the in-memory source. Filling the backlog is not timed.
func BenchmarkDrain(b *testing.B) {
	const backlog = 100000
	for _, source := range []string{"queue", "mem"} {
		for _, window := range []int{1, 8} {
			b.Run(fmt.Sprintf("source=%s/window=%d", source, window), func(b *testing.B) {
				addr, _ := startBroker(b)
				startResponder(b, addr, ackAll)
				var drained time.Duration
				events := 0
				for b.Loop() {
					b.StopTimer()
					var (
						src     Source
						pending func() int
					)
					if source == "queue" {
						q := openQueue(b)
						fillQueue(b, q, backlog)
						src, pending = QueueSource(q), func() int { return int(q.Stats().Depth) }
					} else {
						m := newMemSource()
						m.add(b, backlog)
						src, pending = m, func() int { n, _ := m.remaining(); return n }
					}
					cfg := testConfig(addr)
					cfg.MaxBatchEvents = 0
					cfg.Window = window
					cfg.AckTimeout = 30 * time.Second
					f, err := New(cfg, nil, src)
					if err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					start := time.Now()
					stop := runForwarder(b, f)
					waitFor(b, 120*time.Second, "backlog drained", func() bool { return pending() == 0 })
					drained += time.Since(start)
					events += backlog
					b.StopTimer()
					stop()
					b.StartTimer()
				}
				b.ReportMetric(float64(events)/drained.Seconds(), "events/s")
			})
		}
	}
}

// BenchmarkDrainRTT drains a 20,000-event in-memory backlog through a proxy
// that delays each direction by half of a 50 ms round trip, as on a store's
// WAN link, to show what the window of batches in flight buys.
func BenchmarkDrainRTT(b *testing.B) {
	const backlog = 20000
	for _, window := range []int{1, 8} {
		b.Run(fmt.Sprintf("rtt=50ms/window=%d", window), func(b *testing.B) {
			addr, _ := startBroker(b)
			startResponder(b, addr, ackAll)
			proxy := startDelayProxy(b, addr, 25*time.Millisecond)
			var drained time.Duration
			events := 0
			for b.Loop() {
				b.StopTimer()
				m := newMemSource()
				m.add(b, backlog)
				cfg := testConfig(proxy)
				cfg.MaxBatchEvents = 0
				cfg.Window = window
				cfg.AckTimeout = 30 * time.Second
				f, err := New(cfg, nil, m)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				stop := runForwarder(b, f)
				waitFor(b, 120*time.Second, "backlog drained", func() bool { n, _ := m.remaining(); return n == 0 })
				drained += time.Since(start)
				events += backlog
				b.StopTimer()
				stop()
				b.StartTimer()
			}
			b.ReportMetric(float64(events)/drained.Seconds(), "events/s")
		})
	}
}

// startDelayProxy forwards TCP connections to upstream, delaying the bytes
// in each direction by oneWay without limiting throughput.
func startDelayProxy(t testing.TB, upstream string, oneWay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, u)
			mu.Unlock()
			wg.Add(2)
			go func() { defer wg.Done(); delayedCopy(u, c, oneWay) }()
			go func() { defer wg.Done(); delayedCopy(c, u, oneWay) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func delayedCopy(dst, src net.Conn, d time.Duration) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	ch := make(chan chunk, 4096)
	go func() {
		defer close(ch)
		for {
			buf := make([]byte, 32<<10)
			n, err := src.Read(buf)
			if n > 0 {
				ch <- chunk{buf[:n], time.Now().Add(d)}
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for c := range ch {
		if failed {
			continue
		}
		if w := time.Until(c.at); w > 0 {
			time.Sleep(w) // simulated link latency
		}
		if _, err := dst.Write(c.b); err != nil {
			failed = true
			src.Close()
		}
	}
	dst.Close()
}
