package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestMarshalRoundTripSamples(t *testing.T) {
	for _, m := range []Message{sampleBatch(0), sampleBatch(5), sampleAck(), sampleSnapshot(), sampleCommand()} {
		t.Run(m.Kind().String(), func(t *testing.T) {
			b, err := Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != Magic || b[1] != WireVersion || Kind(b[2]) != m.Kind() {
				t.Fatalf("header % x", b[:3])
			}
			if k, err := PeekKind(b); err != nil || k != m.Kind() {
				t.Fatalf("PeekKind = %v, %v", k, err)
			}
			got := newMessage(m.Kind())
			if err := Unmarshal(b, got, Limits{}); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(m, got, cmpOpts); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
}

func TestUnmarshalTimesAreUTC(t *testing.T) {
	local := time.FixedZone("CET", 3600)
	in := sampleBatch(1)
	in.SentAt = in.SentAt.In(local)
	in.Events[0].OccurredAt = in.Events[0].OccurredAt.In(local)
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var got Batch
	if err := Unmarshal(b, &got, Limits{}); err != nil {
		t.Fatal(err)
	}
	for _, tm := range []time.Time{got.SentAt, got.Events[0].OccurredAt, got.Events[0].ReceivedAt} {
		if tm.Location() != time.UTC {
			t.Errorf("time %v decoded in %v, want UTC", tm, tm.Location())
		}
	}
	if got.SentAt != sampleTime {
		t.Errorf("SentAt = %v, want %v (== comparable)", got.SentAt, sampleTime)
	}
	raw, _ := MarshalEvent(&in.Events[0])
	var e Event
	if err := UnmarshalEvent(raw, &e); err != nil || e.OccurredAt != sampleTime {
		t.Errorf("UnmarshalEvent OccurredAt = %v (%v), err %v", e.OccurredAt, e.OccurredAt.Location(), err)
	}
}

func TestAppendMarshal(t *testing.T) {
	prefix := []byte("prefix")
	b, err := AppendMarshal(prefix, sampleAck())
	if err != nil {
		t.Fatal(err)
	}
	want, _ := Marshal(sampleAck())
	if !bytes.HasPrefix(b, prefix) || !bytes.Equal(b[len(prefix):], want) {
		t.Fatalf("AppendMarshal = % x", b)
	}
}

func TestMarshalRawBatch(t *testing.T) {
	in := sampleBatch(3)
	raws := make([][]byte, len(in.Events))
	for i := range in.Events {
		r, err := MarshalEvent(&in.Events[i])
		if err != nil {
			t.Fatal(err)
		}
		raws[i] = r
	}
	b, err := MarshalRawBatch(in.Tenant, in.EdgeID, in.FirstSeq, in.LastSeq, in.SentAt, raws)
	if err != nil {
		t.Fatal(err)
	}
	var got Batch
	if err := Unmarshal(b, &got, Limits{}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, &got, cmpOpts); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestUnmarshalErrors(t *testing.T) {
	ack, _ := Marshal(sampleAck())
	batch, _ := Marshal(sampleBatch(2))
	withHeader := func(k Kind, body ...byte) []byte { return append([]byte{Magic, WireVersion, byte(k)}, body...) }
	tests := []struct {
		name string
		in   []byte
		into Message
		lim  Limits
		want error
	}{
		{"empty", nil, new(Ack), Limits{}, ErrMalformed},
		{"short header", []byte{Magic, WireVersion}, new(Ack), Limits{}, ErrMalformed},
		{"bad magic", append([]byte{'X'}, ack[1:]...), new(Ack), Limits{}, ErrMagic},
		{"future version", append([]byte{Magic, 2}, ack[2:]...), new(Ack), Limits{}, ErrVersion},
		{"wrong kind", ack, new(Batch), Limits{}, ErrKind},
		{"unknown kind", withHeader('Z', 0x80), new(Ack), Limits{}, ErrKind},
		{"over payload limit", batch, new(Batch), Limits{MaxPayload: len(batch) - 1}, ErrTooLarge},
		{"over depth limit", withHeader(KindAck, 0x81, 0xa0, 0x81, 0xa0, 0x80), new(Ack), Limits{MaxDepth: 1}, ErrMalformed},
		{"header only", withHeader(KindAck), new(Ack), Limits{}, ErrMalformed},
		{"wrong field type", withHeader(KindAck, 0x81, 0xa2, 'f', 's', 0xa1, 'x'), new(Ack), Limits{}, ErrMalformed},
		{"nil time field", withHeader(KindAck, 0x81, 0xa2, 'a', 't', 0xc0), new(Ack), Limits{}, ErrMalformed},
		{"batch as array of 6 fields with dense events", withHeader(KindBatch, append([]byte{0x96, 0xc0, 0xc0, 0xc0, 0xc0, 0xc0, 0xdc, 0x00, 0x20}, bytes.Repeat([]byte{0x80}, 32)...)...), new(Batch), Limits{}, ErrMalformed},
		{"batch of one-byte events", withHeader(KindBatch, append([]byte{0x81, 0xa2, 'e', 'v', 0xdc, 0x00, 0x20}, bytes.Repeat([]byte{0x80}, 32)...)...), new(Batch), Limits{}, ErrMalformed},
		{"snapshot of one-byte profiles", withHeader(KindSnapshot, append([]byte{0x81, 0xa2, 'p', 'f', 0xdc, 0x00, 0x20}, bytes.Repeat([]byte{0xc0}, 32)...)...), new(SnapshotBatch), Limits{}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Unmarshal(tt.in, tt.into, tt.lim)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Unmarshal = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestUnmarshalBatchEventLimit(t *testing.T) {
	// MaxBatchEvents+1 minimal real events: rejected before decoding.
	e, _ := MarshalEvent(new(Event))
	raws := make([][]byte, MaxBatchEvents+1)
	for i := range raws {
		raws[i] = e
	}
	b, err := MarshalRawBatch("t", "e", 1, uint64(len(raws)), sampleTime, raws)
	if err != nil {
		t.Fatal(err)
	}
	if err := Unmarshal(b, new(Batch), Limits{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Unmarshal = %v, want ErrTooLarge", err)
	}
	b, _ = MarshalRawBatch("t", "e", 1, MaxBatchEvents, sampleTime, raws[:MaxBatchEvents])
	var got Batch
	if err := Unmarshal(b, &got, Limits{}); err != nil || len(got.Events) != MaxBatchEvents {
		t.Fatalf("Unmarshal of %d events = %v, %d", MaxBatchEvents, err, len(got.Events))
	}
}

func TestUnmarshalEventErrors(t *testing.T) {
	big := make([]byte, MaxEventBytes+1)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"too large", big, ErrTooLarge},
		{"empty", nil, ErrMalformed},
		{"not a map", []byte{0x01}, ErrMalformed},
		{"trailing", []byte{0x80, 0x80}, ErrMalformed},
		{"nil time", []byte{0x81, 0xa2, 'r', 'a', 0xc0}, ErrMalformed},
	}
	for _, tt := range tests {
		if err := UnmarshalEvent(tt.in, new(Event)); !errors.Is(err, tt.want) {
			t.Errorf("%s: UnmarshalEvent = %v, want %v", tt.name, err, tt.want)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindBatch: "batch", KindAck: "ack", KindSnapshot: "snapshot", KindCommand: "command", 'x': "unknown"} {
		if k.String() != want {
			t.Errorf("Kind(%q).String() = %q", byte(k), k.String())
		}
	}
}

// allocatedBy returns the bytes allocated while f runs.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// maxAmplification bounds the memory a decoder may allocate per input byte;
// allocSlack covers fixed costs (decoder state, error messages).
const (
	maxAmplification = 64
	allocSlack       = 64 << 10
)

func TestDecodeMemoryBound(t *testing.T) {
	const n = 1 << 17
	hdr := func(k Kind) []byte { return []byte{Magic, WireVersion, byte(k)} }
	array32 := func(count int) []byte {
		return binary.BigEndian.AppendUint32([]byte{0xdd}, uint32(count))
	}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	nils := bytes.Repeat([]byte{0xc0}, n)
	emptyMaps := bytes.Repeat([]byte{0x80}, n)
	// A map32 of n/2 pairs, each a distinct 2-byte fixint key... keys must
	// be strings for map[string]any: use 3-byte fixstr keys.
	var pairs []byte
	for i := range n / 4 {
		pairs = append(pairs, 0xa2, byte(i>>8), byte(i), 0xc0)
	}
	payloads := []struct {
		name string
		kind Kind
		body []byte
	}{
		{"batch events of nils", KindBatch, cat([]byte{0x81, 0xa2, 'e', 'v'}, array32(n), nils)},
		{"batch events of empty maps", KindBatch, cat([]byte{0x81, 0xa2, 'e', 'v'}, array32(n), emptyMaps)},
		{"event identifiers of nils", KindBatch, cat([]byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa3, 'i', 'd', 's'}, array32(n), nils)},
		{"event traits array of nils", KindBatch, cat([]byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 't', 'r', 0x81, 0xa1, 'a'}, array32(n), nils)},
		{"event traits map of pairs", KindBatch, cat([]byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 't', 'r', 0xdf, 0, 0, byte(n / 4 >> 8), byte(n / 4 & 0xff)}, pairs)},
		{"event traits nested empty arrays", KindBatch, cat([]byte{0x81, 0xa2, 'e', 'v', 0x91, 0x81, 0xa2, 't', 'r', 0x81, 0xa1, 'a'}, array32(n), bytes.Repeat([]byte{0x90}, n))},
		{"snapshot profiles of nils", KindSnapshot, cat([]byte{0x81, 0xa2, 'p', 'f'}, array32(n), nils)},
		{"snapshot offers of nils", KindSnapshot, cat([]byte{0x81, 0xa2, 'p', 'f', 0x91, 0x81, 0xa2, 'o', 'f'}, array32(n), nils)},
		{"snapshot segments of empty strings", KindSnapshot, cat([]byte{0x81, 0xa2, 'p', 'f', 0x91, 0x81, 0xa2, 's', 'g'}, array32(n), bytes.Repeat([]byte{0xa0}, n))},
		{"command identifiers of nils", KindCommand, cat([]byte{0x81, 0xa3, 'i', 'd', 's'}, array32(n), nils)},
		{"ack with a long error", KindAck, cat([]byte{0x81, 0xa2, 'e', 'r', 0xdb, 0, byte(n >> 16), byte(n >> 8 & 0xff), byte(n & 0xff)}, bytes.Repeat([]byte{'x'}, n))},
	}
	for _, p := range payloads {
		t.Run(p.name, func(t *testing.T) {
			b := cat(hdr(p.kind), p.body)
			var err error
			got := allocatedBy(func() { err = Unmarshal(b, newMessage(p.kind), Limits{}) })
			limit := uint64(maxAmplification*len(b) + allocSlack)
			t.Logf("%d bytes in, %d allocated (%.1fx), err=%v", len(b), got, float64(got)/float64(len(b)), err)
			if got > limit {
				t.Errorf("decoding %d bytes allocated %d, limit %d", len(b), got, limit)
			}
		})
	}
}

func TestSegmentDecodeMemoryBound(t *testing.T) {
	const n = 1 << 16
	m := goldenMapper(t, "")
	m.opts.MaxMessageBytes = 1 << 20
	m.opts.MaxBatchBytes = 1 << 20
	bodies := []struct {
		name string
		ep   Endpoint
		body []byte
	}{
		{"array of zeros", TypeTrack, []byte(`{"userId":"u","event":"E","properties":{"a":[` + string(bytes.Repeat([]byte("0,"), n)) + `0]}}`)},
		{"array of empty objects", TypeTrack, []byte(`{"userId":"u","event":"E","properties":{"a":[` + string(bytes.Repeat([]byte("{},"), n)) + `{}]}}`)},
		{"array of empty arrays", TypeTrack, []byte(`{"userId":"u","event":"E","properties":{"a":[` + string(bytes.Repeat([]byte("[],"), n)) + `[]]}}`)},
		{"batch of minimal messages", EndpointBatch, []byte(`{"batch":[` + string(bytes.Repeat([]byte(`{"type":"track","userId":"u","event":"E"},`), 4000)) + `{"type":"track","userId":"u","event":"E"}]}`)},
		{"batch of invalid messages", EndpointBatch, []byte(`{"batch":[` + string(bytes.Repeat([]byte("{},"), 9000)) + `{}]}`)},
	}
	for _, tc := range bodies {
		t.Run(tc.name, func(t *testing.T) {
			// The least of several runs: a parser new to the pool first
			// grows its value cache, which costs fastjson a few hundred
			// bytes per JSON value once. The pool keeps one parser per P
			// and a collection empties it, so on a busy machine a run may
			// find no warm parser; with no collection during the runs,
			// each cold run leaves one more warm parser behind.
			defer debug.SetGCPercent(debug.SetGCPercent(-1))
			got := uint64(1 << 63)
			for range 20 {
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				_, _ = m.Decode(tc.ep, tc.body, nil)
				runtime.ReadMemStats(&after)
				got = min(got, after.TotalAlloc-before.TotalAlloc)
			}
			limit := uint64(maxAmplification*len(tc.body) + allocSlack)
			t.Logf("%d bytes in, %d allocated (%.1fx)", len(tc.body), got, float64(got)/float64(len(tc.body)))
			if got > limit {
				t.Errorf("decoding %d bytes allocated %d, limit %d", len(tc.body), got, limit)
			}
		})
	}
}
