package snapshot

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadProfiles commits n one-order profiles seen at edge and waits until
// the manager has consumed their change marks.
func loadProfiles(b *testing.B, h *hubRig, n int, edge string) {
	base := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	for i := 0; i < n; i += 5000 {
		evs := make([]protocol.Event, 0, 5000)
		for j := i; j < min(i+5000, n); j++ {
			evs = append(evs, event(fmt.Sprintf("f%06d", j), edge, fmt.Sprintf("f%06d@example.com", j), fmt.Sprintf("FL%06d", j), 10, base))
		}
		commit(b, h.st, edge, evs...)
	}
	h.m.Notify()
	waitFor(b, 10*time.Minute, "change marks", func() bool {
		cs, err := h.st.Changes(1)
		return err == nil && len(cs) == 0
	})
}

// BenchmarkFullSync streams a full sync of 100,000 profiles to a test edge
// through the embedded broker (the edge wipes its cache and resumes with 0
// each iteration) and reports profiles/s.
func BenchmarkFullSync(b *testing.B) {
	const n = 100000
	h := startHub(b, Config{})
	loadProfiles(b, h, n, "store-a")
	e := startEdge(b, h.bk, "store-a")
	waitFor(b, 10*time.Minute, "first sync", func() bool { return len(e.ids()) == n })
	var wall, cpu time.Duration
	for b.Loop() {
		e.disconnect()
		e.wipe()
		start, c0 := time.Now(), cpuTime()
		e.connect()
		waitFor(b, 10*time.Minute, "full sync", func() bool { return len(e.ids()) == n })
		wall += time.Since(start)
		cpu += cpuTime() - c0
	}
	b.ReportMetric(float64(n)*float64(b.N)/wall.Seconds(), "profiles/s")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/sync")
	b.ReportMetric(wall.Seconds()/float64(b.N), "wall-s/sync")
}

// BenchmarkCommitToSnapshot measures the time from a store commit (one
// order of an existing profile, then Notify) to the updated snapshot
// applied at the test edge (clock starts when Commit returns; it
// includes publish, broker delivery and the edge's decode).
func BenchmarkCommitToSnapshot(b *testing.B) {
	const n = 10000
	h := startHub(b, Config{})
	loadProfiles(b, h, n, "store-a")
	e := startEdge(b, h.bk, "store-a")
	waitFor(b, 5*time.Minute, "sync", func() bool { return len(e.ids()) == n })
	var target string
	e.mu.Lock()
	e.hit = make(chan string, 1)
	e.want = func(p protocol.ProfileSnapshot) bool { return p.Traits["first_name"] == target }
	e.mu.Unlock()
	var lat []time.Duration
	base := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("u%06d", i)
		e.mu.Lock()
		target = "N" + id
		e.mu.Unlock()
		ev := event(id, "store-a", fmt.Sprintf("f%06d@example.com", i%n), "", 3, base.Add(time.Duration(i)*time.Second))
		commit(b, h.st, "store-a", ev)
		start := time.Now()
		h.m.Notify()
		select {
		case <-e.hit:
		case <-time.After(30 * time.Second):
			b.Fatal("snapshot not received")
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}
