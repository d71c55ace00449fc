package protocol

import (
	"errors"
	"testing"
)

// fuzzEndpoints maps the fuzzer's endpoint byte to an endpoint.
var fuzzEndpoints = []Endpoint{EndpointBatch, TypeTrack, TypeIdentify, TypePage, TypeScreen, TypeGroup, TypeAlias}

func endpointByte(ep Endpoint) byte {
	for i, e := range fuzzEndpoints {
		if e == ep {
			return byte(i)
		}
	}
	return 0
}

func FuzzSegmentDecode(f *testing.F) {
	for _, tc := range goldenCases(f) {
		f.Add(tc.input, endpointByte(tc.endpoint))
	}
	m := goldenMapper(f, "")
	f.Fuzz(func(t *testing.T, body []byte, epb byte) {
		ep := fuzzEndpoints[int(epb)%len(fuzzEndpoints)]
		evs, err := m.Decode(ep, body, nil)
		checkDecodeResult(t, ep, evs, err)
	})
}

// fataler is what *testing.T and *rapid.T share.
type fataler interface {
	Fatalf(format string, args ...any)
}

// checkDecodeResult asserts what every Mapper.Decode result must satisfy.
func checkDecodeResult(t fataler, ep Endpoint, evs []Event, err error) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	if err != nil {
		var verr *ValidationError
		if !errors.As(err, &verr) {
			t.Fatalf("error %T %v is not a *ValidationError", err, err)
		}
		if len(verr.Errors) == 0 || len(verr.Errors) > maxReportedErrors {
			t.Fatalf("ValidationError with %d field errors", len(verr.Errors))
		}
		if len(evs) != 0 {
			t.Fatalf("%d events returned with an error", len(evs))
		}
		return
	}
	if len(evs) == 0 || len(evs) > MaxBatchEvents || ep != EndpointBatch && len(evs) != 1 {
		t.Fatalf("%d events from endpoint %s", len(evs), ep)
	}
	for i := range evs {
		e := &evs[i]
		if e.ID == "" || len(e.ID) > MaxIdentifierLen || !knownType(e.Type) || !KnownChannel(e.Channel) {
			t.Fatalf("event %d: bad id/type/channel: %q %q %q", i, e.ID, e.Type, e.Channel)
		}
		if !e.HasIdentifier(IDUserID, firstValue(e, IDUserID)) && !e.HasIdentifier(IDAnonymousID, firstValue(e, IDAnonymousID)) {
			t.Fatalf("event %d has neither user_id nor anonymous_id: %v", i, e.Identifiers)
		}
		for _, id := range e.Identifiers {
			if id.Type == "" || id.Value == "" || len(id.Value) > MaxIdentifierLen {
				t.Fatalf("event %d: bad identifier %q", i, id)
			}
		}
		if e.OccurredAt.IsZero() || e.ReceivedAt.IsZero() {
			t.Fatalf("event %d: zero time", i)
		}
		b, err := MarshalEvent(e)
		if err != nil {
			t.Fatalf("MarshalEvent: %v", err)
		}
		var back Event
		if err := UnmarshalEvent(b, &back); err != nil {
			t.Fatalf("UnmarshalEvent of a mapped event: %v", err)
		}
		if same, diff := sameOnWire(e, &back); !same {
			t.Fatalf("event %d changed in a msgpack round trip (-want +got):\n%s", i, diff)
		}
	}
}

func firstValue(e *Event, typ string) string {
	for _, id := range e.Identifiers {
		if id.Type == typ {
			return id.Value
		}
	}
	return ""
}

func FuzzUnmarshal(f *testing.F) {
	msgs := []Message{sampleBatch(0), sampleBatch(1), sampleBatch(3), sampleAck(), sampleSnapshot(), sampleCommand(), &Ack{Status: AckRejected, Error: "bad"}}
	for _, m := range msgs {
		b, err := Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	raw, _ := MarshalEvent(new(Event))
	rb, err := MarshalRawBatch("t", "e", 1, 1, sampleTime, [][]byte{raw})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(rb)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, k := range allKinds {
			m := newMessage(k)
			if err := Unmarshal(b, m, Limits{}); err != nil {
				continue
			}
			if bt, ok := m.(*Batch); ok {
				if len(bt.Events) > MaxBatchEvents {
					t.Fatalf("batch of %d events decoded", len(bt.Events))
				}
				checkEventBytes(t, b, bt)
			}
			again, err := Marshal(m)
			if err != nil {
				t.Fatalf("re-encode %s: %v", k, err)
			}
			m2 := newMessage(k)
			if err := Unmarshal(again, m2, Limits{}); err != nil {
				t.Fatalf("decode re-encoded %s: %v", k, err)
			}
			if same, diff := sameOnWire(m, m2); !same {
				t.Fatalf("%s changed in a round trip (-first +second):\n%s", k, diff)
			}
		}
	})
}

func FuzzUnmarshalEvent(f *testing.F) {
	for i := range 3 {
		e := sampleEvent(i)
		b, err := MarshalEvent(&e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	b, _ := MarshalEvent(new(Event))
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		var e Event
		if err := UnmarshalEvent(b, &e); err != nil {
			return
		}
		again, err := MarshalEvent(&e)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		var e2 Event
		if err := UnmarshalEvent(again, &e2); err != nil {
			t.Fatalf("decode re-encoded event: %v", err)
		}
		if same, diff := sameOnWire(&e, &e2); !same {
			t.Fatalf("event changed in a round trip (-first +second):\n%s", diff)
		}
	})
}

// checkEventBytes asserts that BatchEventBytes of an accepted wire batch
// gives, for every event, bytes that decode to that very event: the hub
// stores those bytes and resolves the decoded events.
func checkEventBytes(t fataler, wire []byte, bt *Batch) {
	raws, err := BatchEventBytes(wire)
	if err != nil {
		// The hub then encodes the decoded events itself: allowed, but
		// only for encodings this walk does not follow.
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("BatchEventBytes of an accepted batch: %v", err)
		}
		return
	}
	if len(raws) != len(bt.Events) {
		t.Fatalf("BatchEventBytes: %d events, Unmarshal %d", len(raws), len(bt.Events))
	}
	for i, raw := range raws {
		var e Event
		if err := UnmarshalEvent(raw, &e); err != nil {
			t.Fatalf("event %d bytes: %v", i, err)
		}
		if same, diff := sameOnWire(&e, &bt.Events[i]); !same {
			t.Fatalf("event %d: its bytes decode to another event (-bytes +batch):\n%s", i, diff)
		}
	}
}
