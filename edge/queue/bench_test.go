package queue_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/unico-cdp/unico/edge/queue"
)

// peakRSSMiB reads VmHWM (peak resident set) of this process.
func peakRSSMiB(b *testing.B) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				b.Fatal(err)
			}
			return float64(kb) / 1024
		}
	}
	return 0
}

// BenchmarkAppend measures durable appends: each op is one Append of
// batch events by one of the appenders goroutines.
func BenchmarkAppend(b *testing.B) {
	for _, sync := range []string{"syncwrites", "dbsync"} {
		for _, appenders := range []int{1, 8, 32} {
			name := fmt.Sprintf("appenders=%d/batch=100", appenders)
			if sync == "dbsync" {
				name = "dbsync/" + name
			}
			b.Run(name, func(b *testing.B) {
				opts := queue.Options{Dir: b.TempDir(), QuotaBytes: 8 << 30}
				if sync == "dbsync" {
					queue.SetSyncExplicit(&opts)
				}
				benchAppend(b, opts, appenders, 100)
			})
		}
	}
}

func benchAppend(b *testing.B, opts queue.Options, appenders, batch int) {
	q := open(b, opts)
	defer closeQ(b, q)
	evs := events("pos", 0, batch)
	size := 0
	for i := range evs {
		size += len(encoded(b, evs[i]))
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	var ops atomic.Int64
	ops.Store(int64(b.N))
	start := time.Now()
	var wg sync.WaitGroup
	for range appenders {
		wg.Go(func() {
			for ops.Add(-1) >= 0 {
				if err := q.Append(context.Background(), evs); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	b.ReportMetric(float64(b.N*batch)/el, "events/s")
	st := q.Stats()
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Appended)/float64(st.Commits), "events/commit")
	}
	b.ReportMetric(peakRSSMiB(b), "peakRSS-MiB")
}

// BenchmarkReadAck measures the drain rate: Read 1000 records from the head
// and Ack them, over a queue filled before the timer starts.
func BenchmarkReadAck(b *testing.B) {
	q := open(b, queue.Options{Dir: b.TempDir(), QuotaBytes: 8 << 30})
	defer closeQ(b, q)
	const per = 1000
	evs := events("pos", 0, per)
	for range b.N {
		if err := q.Append(context.Background(), evs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	n := 0
	for range b.N {
		recs, err := q.Read(0, per, 0)
		if err != nil {
			b.Fatal(err)
		}
		if len(recs) != per {
			b.Fatalf("read %d records, want %d", len(recs), per)
		}
		if err := q.Ack(recs[0].Seq, recs[len(recs)-1].Seq); err != nil {
			b.Fatal(err)
		}
		n += len(recs)
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "events/s")
	b.ReportMetric(peakRSSMiB(b), "peakRSS-MiB")
}

// BenchmarkOpen measures recovery: reopening a queue holding events
// queued events (the scan that rebuilds the counters).
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			if testing.Short() && n > 100_000 {
				b.Skip("large fill")
			}
			opts := queue.Options{Dir: b.TempDir(), QuotaBytes: 8 << 30}
			q := open(b, opts)
			const per = 1000
			for i := 0; i < n; i += per {
				if err := q.Append(context.Background(), events("pos", i, per)); err != nil {
					b.Fatal(err)
				}
			}
			closeQ(b, q)
			b.ResetTimer()
			for range b.N {
				q := open(b, opts)
				if d := q.Stats().Depth; d != int64(n) {
					b.Fatalf("depth %d, want %d", d, n)
				}
				b.StopTimer()
				closeQ(b, q)
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Seconds())/float64(b.N), "s/open")
		})
	}
}
