package uplink

import (
	"fmt"
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
