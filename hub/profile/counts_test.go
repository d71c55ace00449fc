package profile

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/vmihailenco/msgpack/v5"
	"pgregory.net/rapid"
)

// TestCountsAsMap checks Counts against the map it replaces: after any
// sequence of adds, merges and clones it holds what a map would, sorted by
// key, a clone does not see its original's later changes, and it is
// written (JSON and msgpack) as that map and read back from it.
func TestCountsAsMap(t *testing.T) {
	key := rapid.SampledFrom([]string{"", "a", "b", "pos", "web", "store-1", "store-10", "é"})
	rapid.Check(t, func(t *rapid.T) {
		var c Counts
		m := map[string]int64{}
		var clones []Counts
		var cloned []map[string]int64
		for i := range rapid.IntRange(0, 30).Draw(t, "steps") {
			switch rapid.IntRange(0, 3).Draw(t, "op") {
			case 0, 1:
				k, n := key.Draw(t, "key"), rapid.Int64Range(-3, 1000).Draw(t, "n")
				c.Add(k, n)
				m[k] += n
			case 2:
				o := map[string]int64{}
				for range rapid.IntRange(0, 4).Draw(t, "others") {
					o[key.Draw(t, "okey")] += rapid.Int64Range(0, 50).Draw(t, "on")
				}
				c.Merge(CountsOf(o))
				for k, n := range o {
					m[k] += n
				}
			case 3:
				clones = append(clones, c.Clone())
				cloned = append(cloned, maps.Clone(m))
			}
			if !slices.IsSortedFunc(c, func(a, b Count) int { return strings.Compare(a.Key, b.Key) }) {
				t.Fatalf("step %d: not sorted: %v", i, c)
			}
			for k, n := range m {
				if c.Get(k) != n {
					t.Fatalf("step %d: Get(%q) = %d, want %d", i, k, c.Get(k), n)
				}
			}
		}
		if d := cmp.Diff(m, asMap(c), cmpopts.EquateEmpty()); d != "" {
			t.Fatalf("counts differ from the map (-map +counts):\n%s", d)
		}
		for i, cl := range clones {
			if d := cmp.Diff(cloned[i], asMap(cl), cmpopts.EquateEmpty()); d != "" {
				t.Fatalf("clone %d changed with its original (-then +now):\n%s", i, d)
			}
		}

		if len(c) == 0 {
			return
		}
		js, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(m)
		if string(js) != string(want) {
			t.Fatalf("JSON %s, want the map's %s", js, want)
		}
		var back Counts
		if err := json.Unmarshal(js, &back); err != nil || !slices.Equal(back, c) {
			t.Fatalf("JSON read back as %v (%v), want %v", back, err, c)
		}
		mp, err := msgpack.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		var asMap map[string]int64
		if err := msgpack.Unmarshal(mp, &asMap); err != nil || !cmp.Equal(asMap, m) {
			t.Fatalf("msgpack read as a map: %v (%v), want %v", asMap, err, m)
		}
		// Written from a map, in the map's order, read as counts.
		fromMap, err := msgpack.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		back = nil
		if err := msgpack.Unmarshal(fromMap, &back); err != nil || !slices.Equal(back, c) {
			t.Fatalf("msgpack map read back as %v (%v), want %v", back, err, c)
		}
	})
}

// asMap returns c as a map.
func asMap(c Counts) map[string]int64 {
	m := make(map[string]int64, len(c))
	for k, n := range c.All() {
		m[k] = n
	}
	return m
}

// TestCountsDecodeErrors: a value that is not a map of counts is an error.
func TestCountsDecodeErrors(t *testing.T) {
	for _, v := range []any{"x", 12, []int{1}, map[string]string{"a": "b"}, map[int]int{1: 2}} {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var c Counts
		if err := msgpack.Unmarshal(b, &c); err == nil {
			t.Errorf("%#v decoded as counts %v, want an error", v, c)
		}
	}
	var c Counts
	if err := msgpack.Unmarshal([]byte{0xc0}, &c); err != nil || c != nil {
		t.Errorf("nil decoded as %v, %v; want nil counts", c, err)
	}
}
