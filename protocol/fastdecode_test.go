package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"pgregory.net/rapid"
)

// exactDiff describes where x and y first differ, or returns "" when they
// are equal as reflect.DeepEqual sees them (concrete types in interfaces,
// nil apart from empty, times by wall clock, monotonic reading and
// location), except that floats compare by their bits so that a NaN equals
// itself. Unlike cmp, it takes linear time on deeply nested values.
func exactDiff(x, y any) string {
	return exactDiffValue("", reflect.ValueOf(x), reflect.ValueOf(y))
}

var timeType = reflect.TypeFor[time.Time]()

func exactDiffValue(path string, x, y reflect.Value) string {
	if x.IsValid() != y.IsValid() || x.IsValid() && x.Type() != y.Type() {
		return fmt.Sprintf("%s: %#v != %#v", path, x, y)
	}
	if !x.IsValid() {
		return ""
	}
	differ := func() string { return fmt.Sprintf("%s: %#v != %#v", path, x, y) }
	switch x.Kind() {
	case reflect.Float32:
		if math.Float32bits(float32(x.Float())) != math.Float32bits(float32(y.Float())) {
			return differ()
		}
	case reflect.Float64:
		if math.Float64bits(x.Float()) != math.Float64bits(y.Float()) {
			return differ()
		}
	case reflect.Struct:
		if x.Type() == timeType {
			if x.Interface().(time.Time) != y.Interface().(time.Time) {
				return differ()
			}
			return ""
		}
		for i := range x.NumField() {
			if d := exactDiffValue(path+"."+x.Type().Field(i).Name, x.Field(i), y.Field(i)); d != "" {
				return d
			}
		}
	case reflect.Slice:
		if x.IsNil() != y.IsNil() || x.Len() != y.Len() {
			return fmt.Sprintf("%s: nil %v len %d != nil %v len %d", path, x.IsNil(), x.Len(), y.IsNil(), y.Len())
		}
		for i := range x.Len() {
			if d := exactDiffValue(fmt.Sprintf("%s[%d]", path, i), x.Index(i), y.Index(i)); d != "" {
				return d
			}
		}
	case reflect.Map:
		if x.IsNil() != y.IsNil() || x.Len() != y.Len() {
			return fmt.Sprintf("%s: nil %v len %d != nil %v len %d", path, x.IsNil(), x.Len(), y.IsNil(), y.Len())
		}
		for it := x.MapRange(); it.Next(); {
			yv := y.MapIndex(it.Key())
			if !yv.IsValid() {
				return fmt.Sprintf("%s: key %#v missing", path, it.Key())
			}
			if d := exactDiffValue(fmt.Sprintf("%s[%#v]", path, it.Key()), it.Value(), yv); d != "" {
				return d
			}
		}
	case reflect.Interface, reflect.Pointer:
		if x.IsNil() || y.IsNil() {
			if x.IsNil() != y.IsNil() {
				return differ()
			}
			return ""
		}
		return exactDiffValue(path, x.Elem(), y.Elem())
	default:
		if !x.Equal(y) {
			return differ()
		}
	}
	return ""
}

// errClass names the sentinel a decode error wraps, so that both decoders
// can be required to fail alike.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrTooLarge):
		return "too large"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	}
	return "other: " + err.Error()
}

// checkSame decodes b into a what by reflection and with the fast decoder
// and fails unless both fail alike or decode equal values.
func checkSame[T any](t fataler, what string, b []byte, decode func(b []byte, v *T, fast bool) error) {
	var slow, fast T
	errSlow := decode(b, &slow, false)
	errFast := decode(b, &fast, true)
	if errClass(errSlow) != errClass(errFast) {
		t.Fatalf("reflection: %v\nfast: %v", errSlow, errFast)
	}
	if errSlow != nil {
		return
	}
	if diff := exactDiff(&slow, &fast); diff != "" {
		t.Fatalf("%s decoded differently (reflection != fast): %s", what, diff)
	}
}

// checkSameBatch is checkSame for a wire batch.
func checkSameBatch(t fataler, b []byte) {
	checkSame(t, "batch", b, func(b []byte, bt *Batch, fast bool) error { return unmarshal(b, bt, Limits{}, fast, nil) })
}

// checkSameEvent is checkSame for a bare event.
func checkSameEvent(t fataler, b []byte) {
	checkSame(t, "event", b, func(b []byte, e *Event, fast bool) error { return unmarshalEvent(b, e, fast, nil) })
}

// oddProps wants the properties of some events and not of others,
// including events with no type, name or channel.
func oddProps(typ, name, channel string) bool { return (len(typ)+len(name)+len(channel))%2 == 1 }

// trackOnlyProps wants the properties of track events.
func trackOnlyProps(typ, _, _ string) bool { return typ == TypeTrack }

// notPageProps wants the properties of every event but pages, those of
// events with no type yet included.
func notPageProps(typ, _, _ string) bool { return typ != TypePage }

// leanOf leaves out of e what a lean decode with props leaves out.
func leanOf(e *Event, props func(typ, name, channel string) bool) {
	e.Context = nil
	if !props(e.Type, e.Name, e.Channel) {
		e.Properties = nil
	}
}

// checkLean fails unless UnmarshalLean accepts the wire batch b exactly
// when decoding by reflection does, and yields what reflection does with
// contexts and unwanted properties left out; so for UnmarshalEventLean
// and the bare event body. Either may be nil.
func checkLean(t fataler, b, body []byte) {
	for _, props := range []func(typ, name, channel string) bool{oddProps, trackOnlyProps, notPageProps} {
		if b != nil {
			var full, lean Batch
			errFull := unmarshal(b, &full, Limits{}, false, nil)
			errLean := UnmarshalLean(b, &lean, Limits{}, props)
			if errClass(errFull) != errClass(errLean) {
				t.Fatalf("reflection: %v\nlean: %v", errFull, errLean)
			}
			if errFull == nil {
				for i := range full.Events {
					leanOf(&full.Events[i], props)
				}
				if diff := exactDiff(&full, &lean); diff != "" {
					t.Fatalf("lean decode differs from reflection's, stripped: %s", diff)
				}
			}
		}
		if body != nil {
			var full, lean Event
			errFull := unmarshalEvent(body, &full, false, nil)
			errLean := UnmarshalEventLean(body, &lean, props)
			if errClass(errFull) != errClass(errLean) {
				t.Fatalf("event: reflection: %v\nlean: %v", errFull, errLean)
			}
			if errFull == nil {
				leanOf(&full, props)
				if diff := exactDiff(&full, &lean); diff != "" {
					t.Fatalf("lean event decode differs from reflection's, stripped: %s", diff)
				}
			}
		}
	}
}

// wire prefixes a msgpack body with the header of a batch.
func wire(body []byte) []byte {
	return append([]byte{Magic, WireVersion, byte(KindBatch)}, body...)
}

// encodeArrays encodes v with structs as arrays, msgpack's other struct
// form.
func encodeArrays(t fataler, v any) []byte {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseArrayEncodedStructs(true)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("encode: %v", err)
	}
	return buf.Bytes()
}

// wireTypesEvent carries in its maps a value of every type the reflection
// decoder puts in an interface.
func wireTypesEvent() Event {
	e := sampleEvent(7)
	e.Properties = map[string]any{
		"i8": int8(-5), "i16": int16(-300), "i32": int32(-70000), "i64": int64(math.MinInt64),
		"u8": uint8(200), "u16": uint16(60000), "u32": uint32(4000000000), "u64": uint64(math.MaxUint64),
		"f32": float32(1.25), "f64": math.Inf(-1), "nan": math.NaN(), "bin": []byte{0, 1, 2}, "empty bin": []byte{},
		"str": strings.Repeat("long ", 20), "t": true, "f": false, "nil": nil,
		"time": time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC), "old": time.Unix(1<<35, 1), "zero": time.Time{},
		"list": []any{int64(1), "a", []any{}, map[string]any{}}, "map": map[string]any{"deep": map[string]any{"er": []any{nil}}},
	}
	e.Traits = map[string]any{}
	e.Consent = map[string]bool{}
	e.Identifiers = []Identifier{}
	return e
}

// fastDecodeSeeds returns msgpack bodies of batches and events: the two
// struct forms, every interface type, empty and nil fields.
func fastDecodeSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	add := func(m Message) {
		b, err := Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b[headerLen:], encodeArrays(t, m))
	}
	add(sampleBatch(0))
	add(sampleBatch(3))
	add(&Batch{Events: []Event{{}, wireTypesEvent()}, Backlog: -7})
	add(&Batch{Events: []Event{}})
	mapper := benchMapperT(t)
	var eb EncodedBatch
	if err := mapper.DecodeEncoded(EndpointBatch, trackBatch(3), &eb); err != nil {
		t.Fatal(err)
	}
	var raws [][]byte
	for _, e := range eb.Events {
		raws = append(raws, e.Data)
		seeds = append(seeds, e.Data)
	}
	rb, err := MarshalRawBatch("acme", "edge-1", 1, 3, sampleTime, raws)
	if err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, rb[headerLen:])
	for _, e := range []Event{sampleEvent(1), {}, wireTypesEvent()} {
		b, err := MarshalEvent(&e)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b, encodeArrays(t, &e))
	}
	for _, c := range fastDecodeCases {
		seeds = append(seeds, c.body)
	}
	// The corpora of the other decoding fuzz targets.
	for _, dir := range []string{"FuzzUnmarshal", "FuzzUnmarshalEvent"} {
		files, _ := filepath.Glob(filepath.Join("testdata", "fuzz", dir, "*"))
		for _, f := range files {
			b, ok := readCorpusBytes(t, f)
			if !ok {
				continue
			}
			if dir == "FuzzUnmarshal" && len(b) >= headerLen {
				b = b[headerLen:]
			}
			seeds = append(seeds, b)
		}
	}
	return seeds
}

// readCorpusBytes reads a corpus file of a fuzz target with one []byte
// argument.
func readCorpusBytes(t testing.TB, path string) ([]byte, bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "[]byte(") || !strings.HasSuffix(lines[1], ")") {
		return nil, false
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
	if err != nil {
		return nil, false
	}
	return []byte(s), true
}

func benchMapperT(t testing.TB) *Mapper {
	m, err := NewMapper(MapOptions{Source: Source{Tenant: "acme", Edge: "edge-1"}, DefaultChannel: ChannelPOS, DefaultCountryCode: "39"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// FuzzFastDecode requires the fast decoder to decode every msgpack body
// exactly as the reflection decoder does, as a wire batch and as a bare
// event.
func FuzzFastDecode(f *testing.F) {
	for _, s := range fastDecodeSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		checkSameBatch(t, wire(body))
		checkLean(t, wire(body), body)
		checkSameEvent(t, body)
	})
}

// Wire fixtures of the corners of the reflection decoder. fallback says
// whether the fast decoder hands the case to reflection.
var fastDecodeCases = []struct {
	name     string
	body     []byte
	fallback bool
}{
	{name: "nil batch", body: []byte{0xc0}},
	{name: "empty array batch", body: []byte{0x90}},
	{name: "empty map batch", body: []byte{0x80}},
	{name: "string batch", body: []byte{0xa1, 'x'}},
	{name: "array of 6 values", body: []byte{0x96, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0}},
	{name: "array of 8 values", body: []byte{0x98, 0xc0, 0xc0, 0xc0, 0xc0, 0xd6, 0xff, 0, 0, 0, 0, 0xc0, 0xc0, 0xc0}},
	{name: "array of 7 values", body: []byte{
		0x97,
		0xa1, 't', // tn
		0xc4, 0x01, 'e', // ed as bin
		0xff,       // fs: -1 as uint64
		0xd0, 0x80, // ls: int8 -128 as uint64
		0xd6, 0xff, 0x00, 0x00, 0x00, 0x01, // sa: 4-byte timestamp
		0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, // bl: uint64 max as int64
		0x92, 0xc0, 0x90, // ev: a nil event and an empty-array event
	}},
	{name: "events not an array", body: []byte{0x81, 0xa2, 'e', 'v', 0x80}},
	{name: "empty events", body: []byte{0x81, 0xa2, 'e', 'v', 0x90}},
	{name: "nil events", body: []byte{0x81, 0xa2, 'e', 'v', 0xc0}},
	{name: "float sequence", body: []byte{0x81, 0xa2, 'f', 's', 0xca, 0, 0, 0, 0}},
	{name: "bool sequence", body: []byte{0x81, 0xa2, 'f', 's', 0xc3}},
	{name: "nil time", body: []byte{0x81, 0xa2, 's', 'a', 0xc0}},
	{name: "string time", body: []byte{0x81, 0xa2, 's', 'a', 0xa1, '1'}},
	{name: "time of 16 bytes", body: append([]byte{0x81, 0xa2, 's', 'a', 0xd8, 0xff}, make([]byte, 16)...)},
	{name: "time extension 13", body: []byte{0x81, 0xa2, 's', 'a', 0xd6, 13, 0, 0, 0, 1}},
	{name: "12-byte time", body: []byte{0x81, 0xa2, 's', 'a', 0xc7, 12, 0xff, 0x3b, 0x9a, 0xc9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	{name: "8-byte time, nanoseconds over a second", body: []byte{0x81, 0xa2, 's', 'a', 0xd7, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x01}},
	{name: "zero time", body: []byte{0x81, 0xa2, 's', 'a', 0xc7, 12, 0xff, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xf1, 0x88, 0x6e, 0x09, 0x00}},
	{name: "keys as bin and nil, unknown keys", body: []byte{
		0x84,
		0xc4, 0x02, 't', 'n', 0xa1, 'a', // tn as a bin key
		0xc0, 0x81, 0x01, 0x02, // nil key, skipped with its map value
		0xa2, 'z', 'z', 0x92, 0xd4, 0x05, 0x00, 0xc0, // unknown key
		0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 'c', 'x', 0x82, 0xc4, 0x01, 'k', 0x01, 0xc0, 0xa0, // cx with bin and nil keys
	}},
	{name: "integer key", body: []byte{0x81, 0x01, 0x02}},
	{name: "integer key in a map value", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 'p', 'r', 0x81, 0x01, 0x02}},
	{name: "consent values", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 'c', 's', 0x83, 0xa1, 'a', 0xc0, 0xa1, 'b', 0xc3, 0xa1, 'c', 0xc2}},
	{name: "consent not a bool", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 'c', 's', 0x81, 0xa1, 'a', 0x01}},
	{name: "empty consent", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 'c', 's', 0x80}},
	{name: "source as array", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa3, 's', 'r', 'c', 0x94, 0xa1, 'a', 0xc0, 0xa1, 'c', 0xa0}},
	{name: "source as short array", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa3, 's', 'r', 'c', 0x93, 0xa1, 'a', 0xc0, 0xa1, 'c'}},
	{name: "identifiers", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa3, 'i', 'd', 's', 0x94, 0xc0, 0x90, 0x92, 0xa1, 'e', 0xa1, 'x', 0x81, 0xa1, 'v', 0xa1, 'y'}},
	{name: "identifier as a string", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa3, 'i', 'd', 's', 0x91, 0xa1, 'e'}},
	{name: "extension in properties", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 'p', 'r', 0x81, 0xa1, 'x', 0xd4, 0x05, 0x00}},
	{name: "time of 5 bytes in properties", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 'p', 'r', 0x81, 0xa1, 'x', 0xc7, 0x05, 0xff, 0, 0, 0, 0, 1}},
	{name: "repeated events key", fallback: true, body: []byte{0x82, 0xa2, 'e', 'v', 0x92, 0x80, 0x81, 0xa2, 'i', 'd', 0xa1, 'a', 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 't', 'y', 0xa1, 't'}},
	{name: "repeated consent key", fallback: true, body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x82, 0xa2, 'c', 's', 0x81, 0xa1, 'a', 0xc3, 0xa2, 'c', 's', 0x81, 0xa1, 'b', 0xc3}},
	{name: "repeated unknown key", body: []byte{0x82, 0xa1, 'x', 0x01, 0xa1, 'x', 0x02}},
	{name: "traits as an extension", fallback: true, body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 't', 'r', 0xd4, 0x05, 0x80}},
	{name: "consent as an extension", fallback: true, body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 'c', 's', 0xd4, 0x05, 0x80}},
	{name: "type after properties", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x82, 0xa2, 'p', 'r', 0x81, 0xa1, 'x', 0x01, 0xa2, 't', 'y', 0xa5, 't', 'r', 'a', 'c', 'k'}},
	{name: "page after properties", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x82, 0xa2, 'p', 'r', 0x81, 0xa1, 'x', 0x01, 0xa2, 't', 'y', 0xa4, 'p', 'a', 'g', 'e'}},
	{name: "name after properties", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x83, 0xa2, 't', 'y', 0xa1, 't', 0xa2, 'p', 'r', 0x81, 0xa1, 'x', 0x91, 0xa1, 'y', 0xa1, 'n', 0xa2, 'a', 'b'}},
	{name: "context and properties of every kind", body: []byte{0x81, 0xa2, 'e', 'v', 0x91, 0x83,
		0xa2, 't', 'y', 0xa1, 't',
		0xa2, 'c', 'x', 0x86, 0xa1, 'a', 0xc4, 0x01, 'b', 0xa1, 'f', 0xcb, 0, 0, 0, 0, 0, 0, 0, 1, 0xa1, 'm', 0x81, 0xa1, 'k', 0xdc, 0, 1, 0xd9, 1, 's',
		0xa1, 'u', 0xcd, 1, 2, 0xa1, 't', 0xd6, 0xff, 0, 0, 0, 1, 0xa1, 'n', 0xc0,
		0xa2, 'p', 'r', 0xde, 0, 1, 0xa1, 'q', 0x92, 0xc3, 0xd0, 0x80}},
	// Bare events (as batches: maps of unknown keys).
	{name: "event: type after properties", body: []byte{0x82, 0xa2, 'p', 'r', 0x81, 0xa1, 'x', 0x01, 0xa2, 't', 'y', 0xa5, 't', 'r', 'a', 'c', 'k'}},
	{name: "event: page after properties", body: []byte{0x82, 0xa2, 'p', 'r', 0x81, 0xa1, 'x', 0x01, 0xa2, 't', 'y', 0xa4, 'p', 'a', 'g', 'e'}},
	{name: "event: context and properties", body: []byte{0x83, 0xa2, 't', 'y', 0xa1, 't', 0xa2, 'c', 'x', 0x81, 0xa1, 'k', 0xa1, 'v', 0xa2, 'p', 'r', 0x81, 0xa1, 'x', 0x90}},
	{name: "deep lists", body: append(append([]byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 'c', 'x', 0x81, 0xa0}, bytes.Repeat([]byte{0x91}, 25)...), 0xc0)},
	{name: "too deep", body: append(append([]byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 'c', 'x', 0x81, 0xa0}, bytes.Repeat([]byte{0x91}, 40)...), 0xc0)},
}

func TestFastDecodeCases(t *testing.T) {
	for _, tt := range fastDecodeCases {
		t.Run(tt.name, func(t *testing.T) {
			checkSameBatch(t, wire(tt.body))
			checkLean(t, wire(tt.body), tt.body)
			checkSameEvent(t, tt.body)
			// Whether the fast decoder decodes the case itself, for the
			// cases that pass the structural checks.
			if checkMsgpack(tt.body, DefaultMaxDepth) != nil || checkElementDensity(tt.body, new(Batch)) != nil {
				return
			}
			var bt Batch
			err := decodeBatch(tt.body, &bt, nil)
			if fellBack := errors.Is(err, errFallback); fellBack != tt.fallback {
				t.Fatalf("fallback %v, want %v (err %v)", fellBack, tt.fallback, err)
			}
		})
	}
}

// TestFastDecodeSeeds checks the seeds of FuzzFastDecode, and that the
// fast decoder does not fall back on the batches edges send.
func TestFastDecodeSeeds(t *testing.T) {
	for i, s := range fastDecodeSeeds(t) {
		t.Run(strconv.Itoa(i), func(t *testing.T) {
			checkSameBatch(t, wire(s))
			checkLean(t, wire(s), s)
			checkSameEvent(t, s)
		})
	}
	for _, m := range []*Batch{sampleBatch(3), {Events: []Event{wireTypesEvent()}}} {
		b, err := Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		for _, body := range [][]byte{b[headerLen:], encodeArrays(t, m)} {
			if err := decodeBatch(body, new(Batch), nil); err != nil {
				t.Fatalf("decodeBatch: %v", err)
			}
		}
	}
}

// TestFastDecodeCopies checks that nothing decoded aliases the payload:
// the hub reuses payload buffers, and its store decodes events from
// database memory that is valid only during a callback.
func TestFastDecodeCopies(t *testing.T) {
	in := &Batch{Tenant: "acme", EdgeID: "edge-1", SentAt: sampleTime, Events: []Event{sampleEvent(1), wireTypesEvent()}}
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var want, got Batch
	if err := unmarshal(b, &want, Limits{}, false, nil); err != nil {
		t.Fatal(err)
	}
	buf := bytes.Clone(b)
	if err := unmarshal(buf, &got, Limits{}, true, nil); err != nil {
		t.Fatal(err)
	}
	for i := range buf {
		buf[i] = 'X'
	}
	if diff := exactDiff(&want, &got); diff != "" {
		t.Fatalf("batch changed with its payload: %s", diff)
	}
	ev, err := MarshalEvent(&in.Events[1])
	if err != nil {
		t.Fatal(err)
	}
	var e Event
	if err := unmarshalEvent(ev, &e, true, nil); err != nil {
		t.Fatal(err)
	}
	for i := range ev {
		ev[i] = 'X'
	}
	if diff := exactDiff(&want.Events[1], &e); diff != "" {
		t.Fatalf("event changed with its payload: %s", diff)
	}
}

// TestFastDecodeIntoNonZero checks that a destination holding values is
// decoded by reflection, which merges into it.
func TestFastDecodeIntoNonZero(t *testing.T) {
	b, err := Marshal(sampleBatch(2))
	if err != nil {
		t.Fatal(err)
	}
	prefilled := func() *Batch {
		return &Batch{Tenant: "old", Backlog: 9, Events: []Event{{Consent: map[string]bool{"old": true}}, {}, {}}}
	}
	slow, fast := prefilled(), prefilled()
	if err := unmarshal(b, slow, Limits{}, false, nil); err != nil {
		t.Fatal(err)
	}
	if err := unmarshal(b, fast, Limits{}, true, nil); err != nil {
		t.Fatal(err)
	}
	if diff := exactDiff(slow, fast); diff != "" {
		t.Fatalf("reflection != fast: %s", diff)
	}
	if err := decodeBatch(b[headerLen:], prefilled(), nil); !errors.Is(err, errFallback) {
		t.Fatalf("decodeBatch into a filled batch: %v, want errFallback", err)
	}
	// Raw is not decoded: it stays, and does not stop the fast decoder.
	raw := [][]byte{{1}}
	bt := &Batch{Raw: raw}
	if err := decodeBatch(b[headerLen:], bt, nil); err != nil || len(bt.Events) != 2 || &bt.Raw[0] != &raw[0] {
		t.Fatalf("decodeBatch with Raw set: %v, %d events, Raw %v", err, len(bt.Events), bt.Raw)
	}
}

// TestFastDecodeTooManyEvents checks that a batch of more than
// MaxBatchEvents events fails alike in both decoders, the fast one before
// allocating them. The events are in the array form of the batch.
func TestFastDecodeTooManyEvents(t *testing.T) {
	n := MaxBatchEvents + 1
	body := []byte{0x97, 0xc0, 0xc0, 0xc0, 0xc0, 0xd6, 0xff, 0, 0, 0, 0, 0xc0, 0xdc, byte(n >> 8), byte(n)}
	body = append(body, bytes.Repeat([]byte{0xc0}, n)...)
	var bt Batch
	err := Unmarshal(wire(body), &bt, Limits{})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Unmarshal: %v, want ErrTooLarge", err)
	}
	checkSameBatch(t, wire(body))
}

// genWireValue draws a map value of any type msgpack encodes from Go, so
// that every interface code of the decoder is reached.
func genWireValue(depth int) *rapid.Generator[any] {
	scalars := []*rapid.Generator[any]{
		rapid.Map(rapid.String(), func(s string) any { return s }),
		rapid.Map(rapid.Int8(), func(i int8) any { return i }),
		rapid.Map(rapid.Int16(), func(i int16) any { return i }),
		rapid.Map(rapid.Int32(), func(i int32) any { return i }),
		rapid.Map(rapid.Int64(), func(i int64) any { return i }),
		rapid.Map(rapid.Uint8(), func(i uint8) any { return i }),
		rapid.Map(rapid.Uint16(), func(i uint16) any { return i }),
		rapid.Map(rapid.Uint32(), func(i uint32) any { return i }),
		rapid.Map(rapid.Uint64(), func(i uint64) any { return i }),
		rapid.Map(rapid.Float32(), func(f float32) any { return f }),
		rapid.Map(rapid.Float64(), func(f float64) any { return f }),
		rapid.Map(rapid.SliceOf(rapid.Byte()), func(b []byte) any { return b }),
		rapid.Map(genTime, func(t time.Time) any { return t }),
		rapid.Map(rapid.Bool(), func(b bool) any { return b }),
		rapid.Just[any](nil),
	}
	if depth <= 0 {
		return rapid.OneOf(scalars...)
	}
	return rapid.OneOf(append(scalars,
		rapid.Map(rapid.MapOfN(rapid.String(), genWireValue(depth-1), 0, 5), func(m map[string]any) any { return m }),
		rapid.Map(rapid.SliceOfN(genWireValue(depth-1), 0, 4), func(s []any) any { return s }),
	)...)
}

// TestRapidFastDecode round-trips random events through the edge's
// encodings (MarshalEvent, MarshalRawBatch; Marshal with structs as maps
// and as arrays) and requires both decoders to decode them alike and to
// the events sent.
func TestRapidFastDecode(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		evs := rapid.SliceOfN(genEvent, 0, 6).Draw(t, "events")
		for i := range evs {
			if rapid.Bool().Draw(t, "wire types?") {
				evs[i].Properties = rapid.MapOfN(rapid.String(), genWireValue(3), 0, 6).Draw(t, "properties")
			}
		}
		in := &Batch{
			Tenant:   rapid.String().Draw(t, "tenant"),
			EdgeID:   rapid.String().Draw(t, "edge"),
			FirstSeq: rapid.Uint64().Draw(t, "first"),
			LastSeq:  rapid.Uint64().Draw(t, "last"),
			SentAt:   genTime.Draw(t, "sent"),
			Backlog:  rapid.Int64().Draw(t, "backlog"),
			Events:   evs,
		}
		raws := make([][]byte, len(evs))
		for i := range evs {
			var err error
			if raws[i], err = MarshalEvent(&evs[i]); err != nil {
				t.Fatal(err)
			}
			checkSameEvent(t, raws[i])
			checkLean(t, nil, raws[i])
		}
		rb, err := MarshalRawBatch(in.Tenant, in.EdgeID, in.FirstSeq, in.LastSeq, in.SentAt, raws)
		if err != nil {
			t.Fatal(err)
		}
		mb, err := Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{rb, mb, wire(encodeArrays(t, in))} {
			checkSameBatch(t, b)
			checkLean(t, b, nil)
			var got Batch
			if err := Unmarshal(b, &got, Limits{}); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			got.Backlog = in.Backlog // MarshalRawBatch does not send it
			if same, diff := sameOnWire(in, &got); !same {
				t.Fatalf("batch changed (-sent +decoded):\n%s", diff)
			}
		}
	})
}

// TestFastDecodeAllocs keeps the allocations of decoding a realistic batch
// in check.
func TestFastDecodeAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations differ under the race detector")
	}
	const n = 100
	b := hubBatches(t, trackBatch, n, 1)[0]
	allocs := testing.AllocsPerRun(50, func() {
		var bt Batch
		if err := Unmarshal(b, &bt, Limits{}); err != nil || len(bt.Events) != n {
			t.Fatalf("Unmarshal: %d events, %v", len(bt.Events), err)
		}
	})
	t.Logf("%.2f allocations per event", allocs/n)
	if perEvent := allocs / n; perEvent > 17 {
		t.Fatalf("%.1f allocations per event, want at most 17 (reflection: 36)", perEvent)
	}
}

// hubBatches returns k wire batches of n events as the hub receives them:
// the Segment request body(k*n) mapped by an edge into stored events, sent
// n at a time with MarshalRawBatch.
func hubBatches(t testing.TB, body func(n int) []byte, n, k int) [][]byte {
	m, err := NewMapper(MapOptions{Source: Source{Tenant: "acme", Edge: "edge-1"}, DefaultChannel: ChannelPOS, DefaultCountryCode: "39", MaxBatchBytes: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var eb EncodedBatch
	if err := m.DecodeEncoded(EndpointBatch, body(n*k), &eb); err != nil {
		t.Fatal(err)
	}
	var out [][]byte
	for i := range k {
		raws := make([][]byte, n)
		for j := range raws {
			raws[j] = eb.Events[i*n+j].Data
		}
		b, err := MarshalRawBatch("acme", "edge-1", uint64(i*n+1), uint64(i*n+n), sampleTime, raws)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// BenchmarkUnmarshalBatchPaths decodes batches of 100 events as the hub
// receives them, by reflection (the decoder before the fast one), with
// the fast decoder, and lean (UnmarshalLean keeping only track events'
// properties, as the hub's intake keeps only orders' and contacts'). body=kiosk and body=edge are the Segment requests of
// BenchmarkSegmentToStored. It cycles through 32 batches with different
// values, so that the fast decoder's string cache sees what it would in a
// stream of batches, not one batch again and again.
func BenchmarkUnmarshalBatchPaths(b *testing.B) {
	const n, k = 100, 32
	for _, bd := range benchBodies {
		for _, path := range []string{"reflect", "fast", "lean"} {
			b.Run(fmt.Sprintf("body=%s/batch=%d/path=%s", bd.name, n, path), func(b *testing.B) {
				encs := hubBatches(b, bd.body, n, k)
				b.ReportAllocs()
				b.SetBytes(int64(len(encs[0])))
				var ms0, ms1 runtime.MemStats
				runtime.ReadMemStats(&ms0)
				i := 0
				for b.Loop() {
					var got Batch
					var props func(typ, name, channel string) bool
					if path == "lean" {
						props = trackOnlyProps
					}
					if err := unmarshal(encs[i%k], &got, Limits{}, path != "reflect", props); err != nil || len(got.Events) != n {
						b.Fatalf("Unmarshal: %d events, %v", len(got.Events), err)
					}
					i++
				}
				runtime.ReadMemStats(&ms1)
				reportPerEvent(b, n)
				b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(b.N*n), "allocs/event")
			})
		}
	}
}
