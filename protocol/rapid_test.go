package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// genTime draws a UTC time between 1970 and 9999 with nanoseconds, which
// msgpack's timestamp extension keeps.
var genTime = rapid.Custom(func(t *rapid.T) time.Time {
	sec := rapid.Int64Range(0, 253402300799).Draw(t, "sec")
	nsec := rapid.Int64Range(0, 999999999).Draw(t, "nsec")
	return time.Unix(sec, nsec).UTC()
})

// genValue draws a trait/property value: a scalar of the types the mapper
// produces, or a map or slice of them, at most depth levels deep.
func genValue(depth int) *rapid.Generator[any] {
	scalars := []*rapid.Generator[any]{
		rapid.Map(rapid.String(), func(s string) any { return s }),
		rapid.Map(rapid.Int64(), func(i int64) any { return i }),
		rapid.Map(rapid.Float64(), func(f float64) any { return f }),
		rapid.Map(rapid.Bool(), func(b bool) any { return b }),
		rapid.Just[any](nil),
	}
	if depth <= 0 {
		return rapid.OneOf(scalars...)
	}
	return rapid.OneOf(append(scalars,
		rapid.Map(genMap(depth-1), func(m map[string]any) any { return m }),
		rapid.Map(rapid.SliceOfN(genValue(depth-1), 0, 4), func(s []any) any {
			if s == nil {
				s = []any{}
			}
			return s
		}),
	)...)
}

func genMap(depth int) *rapid.Generator[map[string]any] {
	return rapid.MapOfN(rapid.String(), genValue(depth), 0, 5)
}

var genIdentifier = rapid.Custom(func(t *rapid.T) Identifier {
	return Identifier{
		Type:  rapid.SampledFrom([]string{IDUserID, IDAnonymousID, IDEmail, IDPhone, IDLoyaltyID, IDDeviceID, IDMACHash, "crm_id"}).Draw(t, "type"),
		Value: rapid.StringN(1, 40, 256).Draw(t, "value"),
	}
})

var genEvent = rapid.Custom(func(t *rapid.T) Event {
	optMap := func(label string) map[string]any {
		if rapid.Bool().Draw(t, label+"?") {
			return genMap(3).Draw(t, label)
		}
		return nil
	}
	e := Event{
		ID:          rapid.StringN(1, 30, 256).Draw(t, "id"),
		Type:        rapid.SampledFrom([]string{TypeTrack, TypeIdentify, TypePage, TypeScreen, TypeGroup, TypeAlias}).Draw(t, "type"),
		Name:        rapid.String().Draw(t, "name"),
		Channel:     rapid.SampledFrom([]string{"", ChannelPOS, ChannelKiosk, ChannelWeb, ChannelApp, ChannelContactCenter, ChannelIoT, ChannelServer, ChannelImport}).Draw(t, "channel"),
		Source:      Source{Tenant: rapid.String().Draw(t, "tenant"), Site: rapid.String().Draw(t, "site"), Edge: rapid.String().Draw(t, "edge"), Device: rapid.String().Draw(t, "device")},
		Identifiers: rapid.SliceOfN(genIdentifier, 0, 5).Draw(t, "ids"),
		PreviousID:  rapid.String().Draw(t, "previous"),
		GroupID:     rapid.String().Draw(t, "group"),
		Traits:      optMap("traits"),
		Properties:  optMap("properties"),
		Context:     optMap("context"),
		OccurredAt:  genTime.Draw(t, "occurred"),
		ReceivedAt:  genTime.Draw(t, "received"),
	}
	if rapid.Bool().Draw(t, "consent?") {
		e.Consent = rapid.MapOfN(rapid.String(), rapid.Bool(), 1, 4).Draw(t, "consent")
	}
	return e
})

func TestRapidBatchRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := &Batch{
			Tenant:   rapid.String().Draw(t, "tenant"),
			EdgeID:   rapid.String().Draw(t, "edge"),
			FirstSeq: rapid.Uint64().Draw(t, "first"),
			LastSeq:  rapid.Uint64().Draw(t, "last"),
			SentAt:   genTime.Draw(t, "sent"),
			Events:   rapid.SliceOfN(genEvent, 0, 8).Draw(t, "events"),
		}
		b, err := Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var got Batch
		if err := Unmarshal(b, &got, Limits{}); err != nil {
			t.Fatalf("Unmarshal: %v", err)
		}
		if diff := cmp.Diff(in, &got, cmpOpts); diff != "" {
			t.Fatalf("Batch round trip (-want +got):\n%s", diff)
		}

		// The edge's path: events stored one by one, batched from bytes.
		raws := make([][]byte, len(in.Events))
		for i := range in.Events {
			if raws[i], err = MarshalEvent(&in.Events[i]); err != nil {
				t.Fatal(err)
			}
			var e Event
			if err := UnmarshalEvent(raws[i], &e); err != nil {
				t.Fatalf("UnmarshalEvent: %v", err)
			}
			if diff := cmp.Diff(in.Events[i], e, cmpOpts); diff != "" {
				t.Fatalf("event round trip (-want +got):\n%s", diff)
			}
		}
		rb, err := MarshalRawBatch(in.Tenant, in.EdgeID, in.FirstSeq, in.LastSeq, in.SentAt, raws)
		if err != nil {
			t.Fatal(err)
		}
		var got2 Batch
		if err := Unmarshal(rb, &got2, Limits{}); err != nil {
			t.Fatalf("Unmarshal raw batch: %v", err)
		}
		if diff := cmp.Diff(in, &got2, cmpOpts); diff != "" {
			t.Fatalf("raw batch round trip (-want +got):\n%s", diff)
		}

		// The hub's path: each event's bytes found in the wire batch, the
		// exact bytes the edge queued.
		checkEventBytes(t, b, in)
		checkEventBytes(t, rb, in)
		got3, err := BatchEventBytes(rb)
		if err != nil {
			t.Fatalf("BatchEventBytes: %v", err)
		}
		for i := range raws {
			if !bytes.Equal(got3[i], raws[i]) {
				t.Fatalf("event %d: bytes %x, queued %x", i, got3[i], raws[i])
			}
		}
	})
}

func TestBatchEventBytesErrors(t *testing.T) {
	ack, _ := Marshal(sampleAck())
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"short", []byte{Magic}, ErrMalformed},
		{"not a batch", ack, ErrKind},
		{"not a map", []byte{Magic, WireVersion, byte(KindBatch), 0x91, 0x01}, ErrMalformed},
		{"key not a string", []byte{Magic, WireVersion, byte(KindBatch), 0x81, 0x01, 0x02}, ErrMalformed},
		{"events not an array", []byte{Magic, WireVersion, byte(KindBatch), 0x81, 0xa2, 'e', 'v', 0x05}, ErrMalformed},
		{"array longer than the payload", []byte{Magic, WireVersion, byte(KindBatch), 0x81, 0xa2, 'e', 'v', 0xdc, 0xff, 0xff}, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := BatchEventBytes(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err %v, want %v", err, tt.want)
			}
		})
	}
	// The last of repeated keys wins, as in msgpack decoding.
	ev := func(id byte) []byte {
		return []byte{0x82, 0xa2, 'i', 'd', 0xa1, id, 0xa2, 't', 'y', 0xa5, 't', 'r', 'a', 'c', 'k'}
	}
	two := []byte{Magic, WireVersion, byte(KindBatch), 0x82, 0xa2, 'e', 'v', 0x91}
	two = append(two, ev('a')...)
	two = append(two, 0xa2, 'e', 'v', 0x92)
	two = append(append(two, ev('b')...), ev('c')...)
	got, err := BatchEventBytes(two)
	if err != nil || len(got) != 2 {
		t.Fatalf("repeated ev: %d events, %v; want the last array's 2", len(got), err)
	}
	var bt Batch
	if err := Unmarshal(two, &bt, Limits{}); err != nil || len(bt.Events) != 2 {
		t.Fatalf("Unmarshal of repeated ev: %d events, %v", len(bt.Events), err)
	}
	checkEventBytes(t, two, &bt)
	if bt.Events[0].ID != "b" {
		t.Fatalf("first event %q, want b", bt.Events[0].ID)
	}
}

func TestRapidAckRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := &Ack{
			EdgeID:     rapid.String().Draw(t, "edge"),
			FirstSeq:   rapid.Uint64().Draw(t, "first"),
			LastSeq:    rapid.Uint64().Draw(t, "last"),
			Status:     AckStatus(rapid.SampledFrom([]string{string(AckOK), string(AckRejected), string(AckRetry)}).Draw(t, "status")),
			Error:      rapid.String().Draw(t, "error"),
			Accepted:   rapid.Int().Draw(t, "accepted"),
			Duplicates: rapid.Int().Draw(t, "duplicates"),
			AckedAt:    genTime.Draw(t, "at"),
		}
		roundTrip(t, in, new(Ack))
	})
}

func TestRapidSnapshotRoundTrip(t *testing.T) {
	genProfile := rapid.Custom(func(t *rapid.T) ProfileSnapshot {
		return ProfileSnapshot{
			ProfileID:   rapid.String().Draw(t, "id"),
			Tombstone:   rapid.Bool().Draw(t, "tombstone"),
			Identifiers: rapid.SliceOfN(genIdentifier, 0, 4).Draw(t, "ids"),
			Traits:      genMap(2).Draw(t, "traits"),
			Computed:    genMap(2).Draw(t, "computed"),
			Segments:    rapid.SliceOfN(rapid.String(), 0, 4).Draw(t, "segments"),
			Consent:     rapid.MapOfN(rapid.String(), rapid.Bool(), 0, 3).Draw(t, "consent"),
			Offers: rapid.SliceOfN(rapid.Custom(func(t *rapid.T) Offer {
				return Offer{Product: rapid.String().Draw(t, "product"), Score: rapid.Float64().Draw(t, "score"), Reason: rapid.String().Draw(t, "reason")}
			}), 0, 3).Draw(t, "offers"),
			UpdatedAt: genTime.Draw(t, "updated"),
		}
	})
	rapid.Check(t, func(t *rapid.T) {
		in := &SnapshotBatch{
			EdgeID:   rapid.String().Draw(t, "edge"),
			Seq:      rapid.Uint64().Draw(t, "seq"),
			FullSync: rapid.Bool().Draw(t, "full"),
			Profiles: rapid.SliceOfN(genProfile, 0, 5).Draw(t, "profiles"),
		}
		roundTrip(t, in, new(SnapshotBatch))
	})
}

func TestRapidCommandRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		in := &Command{
			ID:          rapid.String().Draw(t, "id"),
			Type:        rapid.SampledFrom([]string{CommandErase, "future"}).Draw(t, "type"),
			ProfileID:   rapid.String().Draw(t, "profile"),
			Identifiers: rapid.SliceOfN(genIdentifier, 0, 4).Draw(t, "ids"),
			IssuedAt:    genTime.Draw(t, "at"),
		}
		roundTrip(t, in, new(Command))
	})
}

func roundTrip(t *rapid.T, in, out Message) {
	b, err := Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := Unmarshal(b, out, Limits{}); err != nil {
		t.Fatalf("Unmarshal: %v", err)
	}
	if diff := cmp.Diff(in, out, cmpOpts); diff != "" {
		t.Fatalf("%s round trip (-want +got):\n%s", in.Kind(), diff)
	}
}

// segmentKeys are the keys random Segment-like messages are built from, so
// that generated inputs reach the mapper's branches.
var segmentKeys = []string{
	"type", "userId", "anonymousId", "messageId", "event", "name", "category", "groupId", "previousId",
	"properties", "traits", "context", "timestamp", "originalTimestamp", "sentAt", "batch", "channel",
	"consent", "categoryPreferences", "device", "id", "revenue", "price", "quantity", "products",
	"email", "phone", "loyalty_id",
}

var segmentScalars = []any{
	"track", "identify", "page", "screen", "group", "alias", "browser", "mobile", "kiosk",
	"2026-01-02T03:04:05Z", "2026-01-02", "not a date", "12.5", "abc", " Ana@Example.COM ", "+39 333 1234567", "",
	int64(0), int64(-1), 1.5, 1e300, true, false, nil,
}

func genJSONValue(depth int) *rapid.Generator[any] {
	scalar := rapid.OneOf(rapid.SampledFrom(segmentScalars), rapid.Map(rapid.String(), func(s string) any { return s }))
	if depth <= 0 {
		return scalar
	}
	return rapid.OneOf(scalar,
		rapid.Map(rapid.MapOfN(rapid.SampledFrom(segmentKeys), genJSONValue(depth-1), 0, 8), func(m map[string]any) any { return m }),
		rapid.Map(rapid.SliceOfN(genJSONValue(depth-1), 0, 4), func(s []any) any { return s }),
	)
}

func TestRapidSegmentDecodeNeverPanics(t *testing.T) {
	m := goldenMapper(t, "")
	rapid.Check(t, func(t *rapid.T) {
		v := genJSONValue(5).Draw(t, "json")
		body, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		switch rapid.IntRange(0, 3).Draw(t, "mutation") {
		case 1:
			body = body[:rapid.IntRange(0, len(body)).Draw(t, "cut")]
		case 2:
			if len(body) > 0 {
				body[rapid.IntRange(0, len(body)-1).Draw(t, "at")] = rapid.Byte().Draw(t, "byte")
			}
		}
		ep := rapid.SampledFrom(fuzzEndpoints).Draw(t, "endpoint")
		evs, err := m.Decode(ep, body, nil)
		checkDecodeResult(t, ep, evs, err)
	})
}

// TestRapidSegmentDecodeValid draws well-formed messages and checks that
// each becomes exactly one event with the drawn ids.
func TestRapidSegmentDecodeValid(t *testing.T) {
	m := goldenMapper(t, "")
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 20).Draw(t, "n")
		var msgs []map[string]any
		for i := range n {
			typ := rapid.SampledFrom([]string{TypeTrack, TypeIdentify, TypePage, TypeScreen, TypeGroup, TypeAlias}).Draw(t, "type")
			msg := map[string]any{
				"type":       typ,
				"userId":     fmt.Sprintf("u-%d", i),
				"messageId":  fmt.Sprintf("m-%d", i),
				"event":      "E",
				"groupId":    "g",
				"previousId": "p",
			}
			if rapid.Bool().Draw(t, "props?") {
				msg["properties"] = genJSONValue(3).Filter(func(v any) bool { _, ok := v.(map[string]any); return ok }).Draw(t, "props")
				delete(msg["properties"].(map[string]any), "revenue")
				delete(msg["properties"].(map[string]any), "price")
				delete(msg["properties"].(map[string]any), "quantity")
				delete(msg["properties"].(map[string]any), "products")
			}
			msgs = append(msgs, msg)
		}
		body, err := json.Marshal(map[string]any{"batch": msgs})
		if err != nil {
			t.Fatal(err)
		}
		evs, err := m.Decode(EndpointBatch, body, nil)
		if err != nil {
			t.Fatalf("Decode(%s): %v", body, err)
		}
		checkDecodeResult(t, EndpointBatch, evs, nil)
		if len(evs) != n {
			t.Fatalf("%d events from %d messages", len(evs), n)
		}
		for i, e := range evs {
			if e.ID != fmt.Sprintf("m-%d", i) || !e.HasIdentifier(IDUserID, fmt.Sprintf("u-%d", i)) || e.Type != msgs[i]["type"] {
				t.Fatalf("event %d = %+v", i, e)
			}
		}
	})
}
