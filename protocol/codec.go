package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Wire format of every MQTT payload:
//
//	byte 0   Magic ('U')
//	byte 1   WireVersion
//	byte 2   Kind ('B' batch, 'A' ack, 'S' snapshot batch, 'C' command)
//	byte 3…  the message as msgpack, field names as in the struct tags
//
// A newer protocol version changes byte 1; decoders reject versions they do
// not know with ErrVersion instead of guessing.
const (
	Magic       byte = 'U'
	WireVersion byte = 1
	headerLen        = 3
)

// Default decode limits.
const (
	DefaultMaxPayload = 8 << 20 // bytes
	DefaultMaxDepth   = 32      // nested arrays/maps
	MaxBatchEvents    = 10000
)

// Codec errors.
var (
	// ErrTooLarge is returned when a payload exceeds the decode size limit.
	ErrTooLarge = errors.New("payload too large")
	// ErrMagic is returned when a payload does not start with Magic.
	ErrMagic = errors.New("not a unico payload")
	// ErrVersion is returned for a wire version this build does not know.
	ErrVersion = errors.New("unsupported wire version")
	// ErrKind is returned when a payload holds another message kind than
	// the one asked for.
	ErrKind = errors.New("unexpected message kind")
	// ErrMalformed is returned when the msgpack body is not well formed or
	// exceeds the structural limits.
	ErrMalformed = errors.New("malformed msgpack")
)

// Message is implemented by every message that crosses MQTT.
type Message interface {
	Kind() Kind
}

// Kind implements Message.
func (*Batch) Kind() Kind { return KindBatch }

// Kind implements Message.
func (*Ack) Kind() Kind { return KindAck }

// Kind implements Message.
func (*SnapshotBatch) Kind() Kind { return KindSnapshot }

// Kind implements Message.
func (*Command) Kind() Kind { return KindCommand }

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// Marshal encodes m with the wire header.
func Marshal(m Message) ([]byte, error) {
	return AppendMarshal(nil, m)
}

// AppendMarshal appends the encoding of m to dst.
func AppendMarshal(dst []byte, m Message) ([]byte, error) {
	buf := bufPool.Get().(*bytes.Buffer)
	buf.Reset()
	defer bufPool.Put(buf)
	buf.Write([]byte{Magic, WireVersion, byte(m.Kind())})
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf)
	if err := enc.Encode(m); err != nil {
		return dst, fmt.Errorf("encode %s: %w", m.Kind(), err)
	}
	return append(dst, buf.Bytes()...), nil
}

// Limits bound decoding of outside input. Zero fields take the defaults.
type Limits struct {
	MaxPayload int // bytes, default DefaultMaxPayload
	MaxDepth   int // nesting, default DefaultMaxDepth
}

func (l Limits) withDefaults() Limits {
	if l.MaxPayload <= 0 {
		l.MaxPayload = DefaultMaxPayload
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// PeekKind checks the header of b and returns the message kind it holds.
func PeekKind(b []byte) (Kind, error) {
	if len(b) < headerLen {
		return 0, fmt.Errorf("header: %w", ErrMalformed)
	}
	if b[0] != Magic {
		return 0, ErrMagic
	}
	if b[1] != WireVersion {
		return 0, fmt.Errorf("%w: %d", ErrVersion, b[1])
	}
	return Kind(b[2]), nil
}

// Unmarshal decodes b into m within lim. It never panics: structure, depth
// and every length prefix are checked against the payload before msgpack
// allocates anything.
func Unmarshal(b []byte, m Message, lim Limits) error {
	lim = lim.withDefaults()
	if len(b) > lim.MaxPayload {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(b), lim.MaxPayload)
	}
	k, err := PeekKind(b)
	if err != nil {
		return err
	}
	if k != m.Kind() {
		return fmt.Errorf("%w: got %s, want %s", ErrKind, k, m.Kind())
	}
	body := b[headerLen:]
	if err := checkMsgpack(body, lim.MaxDepth); err != nil {
		return err
	}
	if err := msgpack.Unmarshal(body, m); err != nil {
		return fmt.Errorf("decode %s: %w: %w", k, ErrMalformed, err)
	}
	if bt, ok := m.(*Batch); ok && len(bt.Events) > MaxBatchEvents {
		return fmt.Errorf("batch: %d events, limit %d: %w", len(bt.Events), MaxBatchEvents, ErrTooLarge)
	}
	utcTimes(m)
	return nil
}

// utcTimes puts the decoded times of m in UTC: msgpack decodes timestamps in
// the local zone, and the wire contract is UTC everywhere.
func utcTimes(m Message) {
	switch x := m.(type) {
	case *Batch:
		x.SentAt = x.SentAt.UTC()
		for i := range x.Events {
			utcEventTimes(&x.Events[i])
		}
	case *Ack:
		x.AckedAt = x.AckedAt.UTC()
	case *SnapshotBatch:
		for i := range x.Profiles {
			x.Profiles[i].UpdatedAt = x.Profiles[i].UpdatedAt.UTC()
		}
	case *Command:
		x.IssuedAt = x.IssuedAt.UTC()
	}
}

func utcEventTimes(e *Event) {
	e.OccurredAt = e.OccurredAt.UTC()
	e.ReceivedAt = e.ReceivedAt.UTC()
}

// checkMsgpack walks b as exactly one msgpack value without allocating. It
// fails if the value is truncated, followed by trailing bytes, nested deeper
// than maxDepth, or declares a container with more elements than there are
// bytes left (each element takes at least one byte), so that a decoder
// trusting length prefixes cannot be made to allocate more than a small
// multiple of len(b).
func checkMsgpack(b []byte, maxDepth int) error {
	var stack [64]int
	if maxDepth > len(stack) {
		maxDepth = len(stack)
	}
	depth := 0
	pending := 1
	i := 0
	need := func(n int) bool { return n >= 0 && len(b)-i >= n }
	for {
		for pending == 0 {
			if depth == 0 {
				if i != len(b) {
					return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(b)-i)
				}
				return nil
			}
			depth--
			pending = stack[depth]
		}
		if !need(1) {
			return fmt.Errorf("%w: truncated at byte %d", ErrMalformed, i)
		}
		c := b[i]
		i++
		pending--
		var skip, items int // bytes to skip, child items to read
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc2 || c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			items = 2 * int(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			items = int(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			skip = int(c & 0x1f)
		case c == 0xc1:
			return fmt.Errorf("%w: reserved byte 0xc1 at %d", ErrMalformed, i-1)
		default:
			var lenBytes, extra int
			switch c {
			case 0xc4, 0xd9:
				lenBytes = 1
			case 0xc5, 0xda:
				lenBytes = 2
			case 0xc6, 0xdb:
				lenBytes = 4
			case 0xc7:
				lenBytes, extra = 1, 1
			case 0xc8:
				lenBytes, extra = 2, 1
			case 0xc9:
				lenBytes, extra = 4, 1
			case 0xca:
				skip = 4
			case 0xcb:
				skip = 8
			case 0xcc, 0xd0:
				skip = 1
			case 0xcd, 0xd1:
				skip = 2
			case 0xce, 0xd2:
				skip = 4
			case 0xcf, 0xd3:
				skip = 8
			case 0xd4:
				skip = 2
			case 0xd5:
				skip = 3
			case 0xd6:
				skip = 5
			case 0xd7:
				skip = 9
			case 0xd8:
				skip = 17
			case 0xdc, 0xde:
				lenBytes = 2
			case 0xdd, 0xdf:
				lenBytes = 4
			}
			if lenBytes > 0 {
				if !need(lenBytes) {
					return fmt.Errorf("%w: truncated length at byte %d", ErrMalformed, i)
				}
				var n uint64
				switch lenBytes {
				case 1:
					n = uint64(b[i])
				case 2:
					n = uint64(binary.BigEndian.Uint16(b[i:]))
				case 4:
					n = uint64(binary.BigEndian.Uint32(b[i:]))
				}
				i += lenBytes
				if n > uint64(len(b)) {
					return fmt.Errorf("%w: length %d exceeds payload at byte %d", ErrMalformed, n, i)
				}
				switch c {
				case 0xdc, 0xdd:
					items = int(n)
				case 0xde, 0xdf:
					items = 2 * int(n)
				default:
					skip = int(n) + extra
				}
			}
		}
		if skip > 0 {
			if !need(skip) {
				return fmt.Errorf("%w: truncated value at byte %d", ErrMalformed, i)
			}
			i += skip
		}
		if items > 0 {
			if items > len(b)-i {
				return fmt.Errorf("%w: container of %d items exceeds payload at byte %d", ErrMalformed, items, i)
			}
			if depth >= maxDepth {
				return fmt.Errorf("%w: nested deeper than %d", ErrMalformed, maxDepth)
			}
			stack[depth] = pending
			depth++
			pending = items
		}
	}
}
