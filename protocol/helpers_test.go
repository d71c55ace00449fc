package protocol

import (
	"bytes"
	"math"
	"reflect"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/vmihailenco/msgpack/v5"
)

// cmpOpts compare decoded messages: times by instant (msgpack decodes them
// in the local zone) and floats with NaN equal to NaN, so that a value that
// round-trips bit for bit compares equal.
var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
	cmp.Comparer(func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }),
	cmp.Comparer(func(a, b float32) bool { return a == b || a != a && b != b }),
	// omitempty fields drop empty maps and slices on the wire.
	cmp.FilterValues(func(x, y any) bool { return isEmptyCollection(x) && isEmptyCollection(y) }, cmp.Comparer(func(_, _ any) bool { return true })),
}

func isEmptyCollection(x any) bool {
	v := reflect.ValueOf(x)
	return (v.Kind() == reflect.Map || v.Kind() == reflect.Slice) && v.Len() == 0
}

var sampleTime = time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.UTC)

func sampleEvent(i int) Event {
	return Event{
		ID:          "01JG6Z2Y3X4W5V6T7S8R9Q0P" + string(rune('A'+i%26)) + "Z",
		Type:        TypeTrack,
		Name:        "Order Completed",
		Channel:     ChannelPOS,
		Source:      Source{Tenant: "acme", Site: "store-12", Edge: "edge-1", Device: "till-3"},
		Identifiers: []Identifier{{IDUserID, "u-1"}, {IDEmail, "ana@example.com"}, {IDLoyaltyID, "LY-42"}},
		Traits:      map[string]any{"name": "Ana", "age": int64(41), "vip": true},
		Properties: map[string]any{
			"order_id": "o-1", "revenue": 12.5, "currency": "EUR", "coupon": nil,
			"products": []any{map[string]any{"sku": "SKU-1", "price": 9.99, "quantity": int64(2)}},
		},
		Context:    map[string]any{"ip": "10.0.0.1", "library": map[string]any{"name": "analytics-go"}},
		Consent:    map[string]bool{"marketing": true, "analytics": false},
		OccurredAt: sampleTime,
		ReceivedAt: sampleTime.Add(time.Second),
	}
}

func sampleBatch(n int) *Batch {
	b := &Batch{Tenant: "acme", EdgeID: "edge-1", FirstSeq: 1000, LastSeq: 1000 + uint64(n) - 1, SentAt: sampleTime}
	for i := range n {
		b.Events = append(b.Events, sampleEvent(i))
	}
	return b
}

func sampleAck() *Ack {
	return &Ack{EdgeID: "edge-1", FirstSeq: 1000, LastSeq: 1099, Status: AckOK, Accepted: 98, Duplicates: 2, AckedAt: sampleTime}
}

func sampleSnapshot() *SnapshotBatch {
	return &SnapshotBatch{EdgeID: "edge-1", Seq: 7, FullSync: true, Profiles: []ProfileSnapshot{
		{
			ProfileID:   "p-1",
			Identifiers: []Identifier{{IDEmail, "ana@example.com"}},
			Traits:      map[string]any{"name": "Ana"},
			Computed:    map[string]any{"ltv": 1234.5, "orders": int64(12)},
			Segments:    []string{"vip", "coffee-lovers"},
			Consent:     map[string]bool{"marketing": true},
			Offers:      []Offer{{Product: "espresso", Score: 0.93, Reason: "bought weekly"}},
			UpdatedAt:   sampleTime,
		},
		{ProfileID: "p-2", Tombstone: true, UpdatedAt: sampleTime},
	}}
}

func sampleCommand() *Command {
	return &Command{ID: "c-1", Type: CommandErase, ProfileID: "p-1", Identifiers: []Identifier{{IDEmail, "ana@example.com"}}, IssuedAt: sampleTime}
}

// newMessage returns an empty message of kind k, or nil.
func newMessage(k Kind) Message {
	switch k {
	case KindBatch:
		return new(Batch)
	case KindAck:
		return new(Ack)
	case KindSnapshot:
		return new(SnapshotBatch)
	case KindCommand:
		return new(Command)
	}
	return nil
}

var allKinds = []Kind{KindBatch, KindAck, KindSnapshot, KindCommand}

// canonical encodes v as msgpack with sorted map keys. Two decoded values
// with equal canonical forms are equal as far as the wire is concerned
// (times as instants, empty and absent collections alike, NaN bit for bit).
// Unlike cmp, it takes linear time on deeply nested values.
func canonical(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.SetSortMapKeys(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// sameOnWire reports whether a and b have the same canonical encoding, and
// a diff of them when not.
func sameOnWire(a, b any) (bool, string) {
	ca, errA := canonical(a)
	cb, errB := canonical(b)
	if errA != nil || errB != nil {
		return false, "canonical encoding failed: " + errString(errA) + " / " + errString(errB)
	}
	if bytes.Equal(ca, cb) {
		return true, ""
	}
	return false, cmp.Diff(a, b, cmpOpts)
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
