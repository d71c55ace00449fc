package store

import (
	"context"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/unico-cdp/unico/protocol"
	"github.com/unico-cdp/unico/simulate"
)

// simEvents maps n simulated Segment messages (the simulator's identity
// mix: POS with loyalty cards, kiosk e-mails, web and app sessions that
// identify later, calls by phone, presence) to envelopes as an edge would.
func simEvents(tb testing.TB, population, n int) []protocol.Event {
	tb.Helper()
	pop, err := simulate.NewPopulation(1, population, simulate.PopulationOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	gen, err := simulate.NewGenerator(pop, simulate.GeneratorConfig{Seed: 1})
	if err != nil {
		tb.Fatal(err)
	}
	m, err := protocol.NewMapper(protocol.MapOptions{DefaultChannel: "pos", DefaultCountryCode: "44", Source: protocol.Source{Tenant: "t", Edge: "e1", Site: "s1"}})
	if err != nil {
		tb.Fatal(err)
	}
	var out []protocol.Event
	var b simulate.Batch
	for len(out) < n {
		b.Reset()
		gen.Fill(&b, min(100, n-len(out)))
		out, err = m.Decode(protocol.EndpointBatch, b.Body(), out)
		if err != nil {
			tb.Fatal(err)
		}
	}
	return out
}

func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
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

// BenchmarkCommit measures hub throughput: events resolved and durably
// committed per second, in batches as edges send them, with the
// simulator's identity mix.
func BenchmarkCommit(b *testing.B) {
	for _, batch := range []int{100, 500} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			const total = 200_000
			evs := simEvents(b, 20_000, total)
			s, err := Open(Options{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			i := 0
			var committed int
			cpu0 := cpuTime()
			start := time.Now()
			var lat []time.Duration
			for b.Loop() {
				if i+batch > len(evs) {
					b.StopTimer()
					// Fresh ids so the next round is not all duplicates.
					for j := range evs {
						evs[j].ID = fmt.Sprintf("r%d-%s", committed, evs[j].ID)
					}
					i = 0
					b.StartTimer()
				}
				t0 := time.Now()
				res, err := s.Commit(ctx, &protocol.Batch{Tenant: "t", EdgeID: "e1", Events: evs[i : i+batch]})
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
				committed += res.Accepted
				i += batch
			}
			el := time.Since(start).Seconds()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(max(committed, 1)), "cpu-µs/event")
			b.ReportMetric(float64(committed)/el, "events/s")
			b.ReportMetric(percentile(lat, 0.50).Seconds()*1000, "p50-batch-ms")
			b.ReportMetric(percentile(lat, 0.99).Seconds()*1000, "p99-batch-ms")
			b.ReportMetric(peakRSSMB(), "peak-rss-MB")
			st := s.Stats()
			b.ReportMetric(float64(st.Profiles), "profiles")
			b.Logf("stats: %+v", st)
		})
	}
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[int(p*float64(len(s)-1))]
}

// cpuTime is the process's user+system CPU time; under contention from
// other processes it is a steadier measure than wall-clock throughput.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCommitWire measures the hub's intake path per event: wire
// batches of 100 events (as edges send them) decoded, their event bytes
// located, and committed in groups of 10 batches (the intake's group
// commit when several batches wait). As in intake, another goroutine
// decodes while the store resolves, and the store resolves the next group
// while Badger writes the last (CommitAsync). Only the wire bytes are held
// in memory between rounds, as in the running hub. Latency is from a
// group's CommitAsync to its durability callback; the collector runs at
// the hub's default target and limit (GOGC 400, 2 GiB). BENCH_CPUPROFILE=FILE
// writes a CPU profile of the measured loop alone.
func BenchmarkCommitWire(b *testing.B) {
	const total, batch, group = 200_000, 100, 10
	evs := simEvents(b, 20_000, total)
	wire := make([][]byte, 0, total/batch)
	for i := 0; i < total; i += batch {
		raws := make([][]byte, 0, batch)
		for j := i; j < i+batch; j++ {
			r, err := protocol.MarshalEvent(&evs[j])
			if err != nil {
				b.Fatal(err)
			}
			raws = append(raws, r)
		}
		w, err := protocol.MarshalRawBatch("t", "e1", uint64(i+1), uint64(i+batch), time.Now(), raws)
		if err != nil {
			b.Fatal(err)
		}
		wire = append(wire, w)
	}
	evs = nil
	// The collector's target and memory limit of the hub (--gc-percent,
	// --memory-limit).
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(2 << 30))
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	decoded := make(chan []*protocol.Batch, 2)
	go func() {
		defer close(decoded)
		for next := 0; next+group <= len(wire); next += group {
			bs := make([]*protocol.Batch, group)
			for k := range bs {
				w := wire[next+k]
				bt := &protocol.Batch{}
				if err := protocol.Unmarshal(w, bt, protocol.Limits{}); err != nil {
					panic(err)
				}
				var err error
				if bt.Raw, err = protocol.BatchEventBytes(w); err != nil {
					panic(err)
				}
				bs[k] = bt
			}
			select {
			case decoded <- bs:
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		mu        sync.Mutex
		committed int
		lat       []time.Duration
		failed    error
		pending   sync.WaitGroup
	)
	if path := os.Getenv("BENCH_CPUPROFILE"); path != "" {
		// A profile of the measured loop only, without the setup.
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	cpu0 := cpuTime()
	start := time.Now()
	for b.Loop() {
		bs, ok := <-decoded
		if !ok {
			b.Fatalf("more than %d events asked for; use -benchtime %dx or less", total, len(wire)/group)
		}
		t0 := time.Now()
		pending.Add(1)
		s.CommitAsync(ctx, bs, func(res []Result, err error) {
			defer pending.Done()
			mu.Lock()
			defer mu.Unlock()
			lat = append(lat, time.Since(t0))
			if err != nil {
				failed = err
			}
			for _, r := range res {
				committed += r.Accepted
			}
		})
	}
	pending.Wait()
	el := time.Since(start).Seconds()
	if failed != nil {
		b.Fatal(failed)
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Microsecond)/float64(max(committed, 1)), "cpu-µs/event")
	b.ReportMetric(float64(committed)/el, "events/s")
	b.ReportMetric(percentile(lat, 0.50).Seconds()*1000, "p50-group-ms")
	b.ReportMetric(percentile(lat, 0.99).Seconds()*1000, "p99-group-ms")
	b.ReportMetric(peakRSSMB(), "peak-rss-MB")
	b.ReportMetric(float64(s.Stats().Profiles), "profiles")
}

// BenchmarkBadgerWrites measures what Badger alone costs the hub: the
// keys and values the store wrote for 200,000 simulator events (20,000
// persons, groups of 1,000 events), recorded as they were handed to
// Badger, are written again into an empty database with the store's
// options, one transaction per recorded one, two in flight as in the
// store's pipeline. Badger's share of BenchmarkCommitWire's CPU per event
// is this benchmark's cpu-µs/event.
func BenchmarkBadgerWrites(b *testing.B) {
	const total, group = 200_000, 1_000
	evs := simEvents(b, 20_000, total)
	s, err := Open(Options{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	var txs [][]kvWrite
	s.onWrite = func(kvs []kvWrite) {
		c := make([]kvWrite, len(kvs))
		for i, w := range kvs {
			c[i] = kvWrite{k: slices.Clone(w.k), v: slices.Clone(w.v), del: w.del}
		}
		txs = append(txs, c)
	}
	for i := 0; i < total; i += group {
		if _, err := s.Commit(context.Background(), &protocol.Batch{Tenant: "t", EdgeID: "e1", Events: evs[i:min(i+group, total)]}); err != nil {
			b.Fatal(err)
		}
	}
	opts := s.opts
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	evs = nil
	var keys int
	for _, t := range txs {
		keys += len(t)
	}
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(2 << 30))
	for b.Loop() {
		opts.Dir = b.TempDir()
		db, err := badger.Open(badgerOptions(opts))
		if err != nil {
			b.Fatal(err)
		}
		var (
			wg     sync.WaitGroup
			mu     sync.Mutex
			failed error
		)
		ahead := make(chan struct{}, maxAhead)
		cpu0 := cpuTime()
		start := time.Now()
		for _, t := range txs {
			txn := db.NewTransaction(true)
			for _, w := range t {
				if w.del {
					err = txn.Delete(w.k)
				} else {
					err = txn.Set(w.k, w.v)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			ahead <- struct{}{}
			wg.Add(1)
			txn.CommitWith(func(err error) {
				defer wg.Done()
				<-ahead
				if err != nil {
					mu.Lock()
					failed = err
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		el, cpu := time.Since(start), cpuTime()-cpu0
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		if failed != nil {
			b.Fatal(failed)
		}
		b.ReportMetric(float64(cpu)/float64(time.Microsecond)/total, "cpu-µs/event")
		b.ReportMetric(total/el.Seconds(), "events/s")
		b.ReportMetric(float64(keys)/total, "keys/event")
	}
}
