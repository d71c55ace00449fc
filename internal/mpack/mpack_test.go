package mpack

import (
	"bytes"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// TestMatchEncoder checks the msgpack writers against the
// encoder MarshalEvent uses, at every boundary of their forms.
func TestMatchEncoder(t *testing.T) {
	enc := func(v any) []byte {
		b, err := msgpack.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	check := func(name string, got, want []byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Errorf("%s: got %x, want %x", name, got, want)
		}
	}
	for _, n := range []int{0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536} {
		s := strings.Repeat("x", n)
		check("string "+strconv.Itoa(n), AppendStr(nil, s), enc(s))
		m := make(map[string]bool, n)
		for i := range n {
			m[strconv.Itoa(i)] = true
		}
		// Only the header: the encoder writes keys in map order.
		check("map header "+strconv.Itoa(n), AppendMapHeader(nil, n), enc(m)[:len(AppendMapHeader(nil, n))])
		a := make([]any, n)
		check("array "+strconv.Itoa(n), append(AppendArrayHeader(nil, n), bytes.Repeat([]byte{0xc0}, n)...), enc(a))
		bin := bytes.Repeat([]byte{7}, n)
		check("bin "+strconv.Itoa(n), AppendBin(nil, bin), enc(bin))
	}
	for _, i := range []int64{0, 1, -1, 127, 128, -33, math.MaxInt64, math.MinInt64} {
		check("int64 "+strconv.FormatInt(i, 10), AppendInt64(nil, i), enc(i))
	}
	for _, f := range []float64{0, math.Copysign(0, -1), 1.5, 1e308, -2.5e-300, 3} {
		check(fmt.Sprint("float64 ", f), AppendFloat64(nil, f), enc(f))
	}
	for _, u := range []uint64{0, 1, 128, math.MaxUint64} {
		check("uint64 "+strconv.FormatUint(u, 10), AppendUint64(nil, u), enc(u))
	}
	check("true", AppendBool(nil, true), enc(true))
	check("false", AppendBool(nil, false), enc(false))
	check("nil", AppendNil(nil), enc(nil))
	for _, tm := range []time.Time{
		time.Unix(0, 0), time.Unix(1<<32-1, 0), time.Unix(1<<32, 0), time.Unix(1<<34-1, 999999999),
		time.Unix(1<<34, 0), time.Date(2026, 11, 23, 13, 0, 0, 123456789, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(1969, 1, 1, 0, 0, 0, 1, time.UTC),
	} {
		check("time "+tm.String(), AppendTime(nil, tm), enc(tm))
	}
}
