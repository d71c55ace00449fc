package protocol

import (
	"slices"
	"sync"
	"testing"
	"time"
)

func TestIDGenFormat(t *testing.T) {
	g := NewIDGen(nil)
	for range 1000 {
		id := g.New()
		if len(id) != IDLen {
			t.Fatalf("len(%q) = %d, want %d", id, len(id), IDLen)
		}
		for i := 0; i < len(id); i++ {
			if indexCrockford(id[i]) < 0 {
				t.Fatalf("%q: byte %d (%q) is not Crockford base32", id, i, id[i])
			}
		}
		if id[0] > '7' {
			t.Fatalf("%q: first char carries only 3 bits", id)
		}
	}
}

func TestIDGenMonotonicFixedClock(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 6000000, time.UTC)
	g := NewIDGen(func() time.Time { return now })
	prev := g.New()
	for range 10000 {
		id := g.New()
		if id <= prev {
			t.Fatalf("%q after %q: not increasing", id, prev)
		}
		if ts, ok := IDTime(id); !ok || !ts.Equal(now) {
			t.Fatalf("IDTime(%q) = %v, %t; want %v", id, ts, ok, now)
		}
		prev = id
	}
}

func TestIDGenClockGoingBack(t *testing.T) {
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	g := NewIDGen(func() time.Time { return clock })
	a := g.New()
	clock = clock.Add(-time.Hour)
	b := g.New()
	if b <= a {
		t.Fatalf("id %q after the clock went back is not above %q", b, a)
	}
	clock = clock.Add(2 * time.Hour)
	c := g.New()
	if c <= b {
		t.Fatalf("id %q after the clock recovered is not above %q", c, b)
	}
	if ts, _ := IDTime(c); !ts.Equal(clock) {
		t.Fatalf("IDTime = %v, want %v", ts, clock)
	}
}

func TestIDGenCarry(t *testing.T) {
	// The random part is incremented within one millisecond; an overflow of
	// the low 64 bits carries into the high 16.
	now := time.UnixMilli(1_700_000_000_000)
	g := NewIDGen(func() time.Time { return now })
	first := g.New()
	g.mu.Lock()
	g.lo = ^uint64(0) - 1
	hi := g.hi
	g.mu.Unlock()
	a, b, c := g.New(), g.New(), g.New()
	if !(first < a || hi == ^uint16(0)) || !(a < b && b < c) {
		t.Fatalf("ids not increasing across the carry: %q %q %q %q", first, a, b, c)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.lo != 1 || g.hi != hi+1 {
		t.Fatalf("after carry lo=%d hi=%d, want 1 and %d", g.lo, g.hi, hi+1)
	}
}

func TestIDGenConcurrentUnique(t *testing.T) {
	g := NewIDGen(nil)
	const workers, per = 8, 2000
	ids := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			prev := ""
			for range per {
				id := g.New()
				if id <= prev {
					t.Errorf("worker %d: %q after %q", w, id, prev)
					return
				}
				prev = id
				ids[w] = append(ids[w], id)
			}
		})
	}
	wg.Wait()
	all := slices.Concat(ids...)
	slices.Sort(all)
	if len(slices.Compact(all)) != workers*per {
		t.Fatalf("duplicate ids among %d", workers*per)
	}
}

func TestIDGenGeneratorsDiffer(t *testing.T) {
	now := func() time.Time { return time.UnixMilli(1_700_000_000_000) }
	a, b := NewIDGen(now).New(), NewIDGen(now).New()
	if a == b {
		t.Fatalf("two generators made the same id %q", a)
	}
}

func TestIDTimeRoundTrip(t *testing.T) {
	times := []time.Time{
		time.UnixMilli(0),
		time.UnixMilli(1),
		time.Date(2026, 1, 2, 3, 4, 5, 678000000, time.UTC),
		time.Date(9999, 12, 31, 23, 59, 59, 999000000, time.UTC),
		time.UnixMilli(1<<48 - 1),
	}
	for _, tm := range times {
		id := NewIDGen(func() time.Time { return tm }).New()
		got, ok := IDTime(id)
		if !ok || !got.Equal(tm) {
			t.Errorf("IDTime(%q) = %v, %t; want %v", id, got, ok, tm)
		}
	}
	// Sub-millisecond precision is dropped.
	tm := time.Date(2026, 1, 2, 3, 4, 5, 678999999, time.UTC)
	got, _ := IDTime(NewIDGen(func() time.Time { return tm }).New())
	if !got.Equal(tm.Truncate(time.Millisecond)) {
		t.Errorf("IDTime = %v, want %v", got, tm.Truncate(time.Millisecond))
	}
}

func TestIDsSortByTime(t *testing.T) {
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	offsets := []time.Duration{time.Millisecond, 0, 48 * time.Hour, time.Second, 365 * 24 * time.Hour, 2 * time.Millisecond}
	var ids []string
	for _, off := range offsets {
		// A fresh generator each time, so that ordering comes from the
		// time part alone, not from one generator's counter.
		ids = append(ids, NewIDGen(func() time.Time { return base.Add(off) }).New())
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	for i := 1; i < len(sorted); i++ {
		a, _ := IDTime(sorted[i-1])
		b, _ := IDTime(sorted[i])
		if !a.Before(b) {
			t.Fatalf("sorted ids out of time order: %q (%v) before %q (%v)", sorted[i-1], a, sorted[i], b)
		}
	}
}

func TestIDTimeRejects(t *testing.T) {
	for _, id := range []string{"", "01ARZ3NDEKTSV4RRFFQ69G5FA", "01ARZ3NDEKTSV4RRFFQ69G5FAVX", "01ARZ3NDEKTSV4RRFFQ69G5FAU", "01arz3ndektsv4rrffq69g5fav", "81ARZ3NDEKTSV4RRFFQ69G5FAV", "0IARZ3NDEKTSV4RRFFQ69G5FAV", "022bb90c-bbac-11e4-8dfc-aa"} {
		if _, ok := IDTime(id); ok {
			t.Errorf("IDTime(%q) accepted", id)
		}
	}
}
