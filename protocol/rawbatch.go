package protocol

import (
	"errors"
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// MaxEventBytes bounds an event encoded by MarshalEvent that UnmarshalEvent
// accepts. Every event a Mapper makes fits.
const MaxEventBytes = 2 << 20

// MarshalEvent encodes one event as bare msgpack (no wire header), the form
// the edge's durable queue stores.
func MarshalEvent(e *Event) ([]byte, error) {
	b, err := msgpack.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode event: %w", err)
	}
	return b, nil
}

// UnmarshalEvent decodes an event encoded by MarshalEvent, with the same
// structural checks as Unmarshal.
func UnmarshalEvent(b []byte, e *Event) error {
	return unmarshalEvent(b, e, true, nil)
}

// UnmarshalEventLean is UnmarshalEvent for an event read only in part, as
// UnmarshalLean is Unmarshal: it accepts and rejects exactly what
// UnmarshalEvent does and yields the same event, except that its Context
// is nil, and its Properties too unless props(type, name, channel) is
// true.
func UnmarshalEventLean(b []byte, e *Event, props func(typ, name, channel string) bool) error {
	if props == nil {
		return errors.New("UnmarshalEventLean: props is nil")
	}
	return unmarshalEvent(b, e, true, props)
}

// unmarshalEvent is UnmarshalEvent; fast decodes with decodeEvent rather
// than by reflection (tests compare the two); props, when set, makes it
// UnmarshalEventLean.
func unmarshalEvent(b []byte, e *Event, fast bool, props func(typ, name, channel string) bool) error {
	if len(b) > MaxEventBytes {
		return fmt.Errorf("event: %w: %d bytes", ErrTooLarge, len(b))
	}
	if err := checkMsgpack(b, DefaultMaxDepth); err != nil {
		return fmt.Errorf("event: %w", err)
	}
	if err := checkEventDensity(b); err != nil {
		return fmt.Errorf("event: %w", err)
	}
	err := errFallback
	if fast {
		err = decodeEvent(b, e, props)
	}
	if errors.Is(err, errFallback) {
		err = safeUnmarshal(b, e)
		if err == nil && props != nil {
			stripEvent(e, props) // reflection decodes whole
		}
	}
	if err != nil {
		return fmt.Errorf("event: %w: %w", ErrMalformed, err)
	}
	utcEventTimes(e)
	return nil
}

// rawBatch has the field tags of Batch with events kept as encoded msgpack,
// so an edge can build a batch from queued bytes without decoding them.
type rawBatch struct {
	Tenant   string               `msgpack:"tn"`
	EdgeID   string               `msgpack:"ed"`
	FirstSeq uint64               `msgpack:"fs"`
	LastSeq  uint64               `msgpack:"ls"`
	SentAt   time.Time            `msgpack:"sa"`
	Events   []msgpack.RawMessage `msgpack:"ev"`
}

func (*rawBatch) Kind() Kind { return KindBatch }

// MarshalRawBatch encodes a Batch whose events are already encoded with
// MarshalEvent. The result decodes with Unmarshal into a Batch.
func MarshalRawBatch(tenant, edgeID string, firstSeq, lastSeq uint64, sentAt time.Time, events [][]byte) ([]byte, error) {
	rb := rawBatch{Tenant: tenant, EdgeID: edgeID, FirstSeq: firstSeq, LastSeq: lastSeq, SentAt: sentAt, Events: make([]msgpack.RawMessage, len(events))}
	for i, e := range events {
		rb.Events[i] = e
	}
	return Marshal(&rb)
}
