package queue

import (
	"bytes"
	"testing"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// TestValueEncodingMatchesMarshalEvent checks that the values Append builds
// in one buffer are byte for byte the header plus protocol.MarshalEvent,
// the stored form the package documents and Read returns.
func TestValueEncodingMatchesMarshalEvent(t *testing.T) {
	at := time.Unix(1_700_000_000, 123)
	q := &Queue{opts: Options{Now: func() time.Time { return at }, Overflow: map[string]OverflowPolicy{"iot": OverflowDropOldest}}}
	evs := []protocol.Event{
		{ID: "a", Type: protocol.TypeTrack, Channel: "pos", Name: "Order Completed",
			// One key per map: msgpack writes map keys in Go's random
			// iteration order, so only single-key maps encode stably.
			Properties: map[string]any{"items": []any{"x", int64(2), 12.5, map[string]any{"k": true}}}},
		{ID: "b", Type: protocol.TypeIdentify, Channel: "iot", Traits: map[string]any{"email": "ana@example.com"}},
		{ID: "c", Channel: ""},
	}
	for round := range 3 { // later rounds reuse pooled buffers
		r, err := q.newAppendReq(evs)
		if err != nil {
			t.Fatal(err)
		}
		var size int64
		for i := range evs {
			data, err := protocol.MarshalEvent(&evs[i])
			if err != nil {
				t.Fatal(err)
			}
			want := appendValue(nil, at, evs[i].Channel, data)
			if !bytes.Equal(r.vals[i], want) {
				t.Fatalf("round %d event %d: value\n got %x\nwant %x", round, i, r.vals[i], want)
			}
			gotAt, ch, gotData, err := decodeValue(r.vals[i])
			if err != nil || !gotAt.Equal(at) || ch != evs[i].Channel || !bytes.Equal(gotData, data) {
				t.Fatalf("round %d event %d: decodeValue = %v %q %x %v", round, i, gotAt, ch, gotData, err)
			}
			size += storedSize(len(want))
		}
		if r.size != size || r.allDrop || r.chans[1] != "iot" {
			t.Errorf("round %d: size %d (want %d), allDrop %v, chans %q", round, r.size, size, r.allDrop, r.chans)
		}
		r.release()
	}
}
