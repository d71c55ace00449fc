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
	return unmarshal(b, m, lim, true, nil)
}

// UnmarshalLean is Unmarshal for a batch whose events are read only in
// part, by a consumer that keeps their encoded bytes (BatchEventBytes)
// rather than encoding the decoded events again: the hub's intake. It
// accepts and rejects exactly the payloads Unmarshal does and yields the
// same batch, except that every event's Context is nil, and its
// Properties too unless props(type, name, channel) is true. The maps it
// leaves out are checked but never built.
func UnmarshalLean(b []byte, bt *Batch, lim Limits, props func(typ, name, channel string) bool) error {
	if props == nil {
		return errors.New("UnmarshalLean: props is nil")
	}
	return unmarshal(b, bt, lim, true, props)
}

// stripLean leaves out of bt's events what UnmarshalLean leaves out.
func stripLean(bt *Batch, props func(typ, name, channel string) bool) {
	for i := range bt.Events {
		stripEvent(&bt.Events[i], props)
	}
}

// stripEvent leaves out of e what UnmarshalEventLean leaves out.
func stripEvent(e *Event, props func(typ, name, channel string) bool) {
	e.Context = nil
	if e.Properties != nil && !props(e.Type, e.Name, e.Channel) {
		e.Properties = nil
	}
}

// unmarshal is Unmarshal; fast decodes a Batch with decodeBatch rather
// than by reflection (tests compare the two); props, when set, makes it
// UnmarshalLean.
func unmarshal(b []byte, m Message, lim Limits, fast bool, props func(typ, name, channel string) bool) error {
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
	if err := checkElementDensity(body, m); err != nil {
		return fmt.Errorf("decode %s: %w", k, err)
	}
	err = errFallback
	if bt, ok := m.(*Batch); ok && fast {
		err = decodeBatch(body, bt, props)
	}
	if errors.Is(err, errFallback) {
		err = safeUnmarshal(body, m)
		if bt, ok := m.(*Batch); ok && err == nil && props != nil {
			// Reflection decodes whole; the fast decoder leaves out as
			// it goes.
			stripLean(bt, props)
		}
	}
	if errors.Is(err, ErrTooLarge) {
		return err // the fast decoder's check of MaxBatchEvents, as below
	}
	if err != nil {
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

// A shape describes where a message holds arrays of structs that are large
// in memory but can be written in one byte each (a nil or an empty map):
// Batch.Events, ProfileSnapshot.Offers, the Identifiers of events,
// profiles and commands. msgpack decodes a struct from a map or from an
// array of exactly as many values as it has fields, so a shape knows both
// the field's key and its position.
type shape struct {
	fields int
	arrays []arrayField
}

type arrayField struct {
	key   string
	index int
	// cost is the payload bytes each element is charged; with elements of
	// at most 32*cost bytes in memory, a payload that passes cannot make
	// the decoder allocate much more than 32 times its size.
	cost int
	elem *shape
}

var (
	eventShape    = &shape{fields: 14, arrays: []arrayField{{key: "ids", index: 5, cost: 2}}}
	batchShape    = &shape{fields: 7, arrays: []arrayField{{key: "ev", index: 6, cost: 16, elem: eventShape}}}
	profileShape  = &shape{fields: 9, arrays: []arrayField{{key: "ids", index: 2, cost: 2}, {key: "of", index: 7, cost: 2}}}
	snapshotShape = &shape{fields: 4, arrays: []arrayField{{key: "pf", index: 3, cost: 8, elem: profileShape}}}
	commandShape  = &shape{fields: 5, arrays: []arrayField{{key: "ids", index: 3, cost: 2}}}
)

// checkElementDensity bounds, before msgpack allocates anything, the arrays
// of large structs described by m's shape: their elements together may not
// cost more than the payload's size, and a batch may not hold more than
// MaxBatchEvents events. b must have passed checkMsgpack.
func checkElementDensity(b []byte, m Message) error {
	var sh *shape
	switch m.(type) {
	case *Batch:
		sh = batchShape
	case *SnapshotBatch:
		sh = snapshotShape
	case *Command:
		sh = commandShape
	default:
		return nil
	}
	var d densityWalk
	d.b = b
	d.walk(0, sh, true)
	if d.events > MaxBatchEvents {
		return fmt.Errorf("%d events, limit %d: %w", d.events, MaxBatchEvents, ErrTooLarge)
	}
	if d.cost > len(b) {
		return fmt.Errorf("%w: arrays of %d elements too dense for %d bytes", ErrMalformed, d.elems, len(b))
	}
	return nil
}

// checkEventDensity is checkElementDensity for a bare event.
func checkEventDensity(b []byte) error {
	d := densityWalk{b: b}
	d.walk(0, eventShape, false)
	if d.cost > len(b) {
		return fmt.Errorf("%w: arrays of %d elements too dense for %d bytes", ErrMalformed, d.elems, len(b))
	}
	return nil
}

type densityWalk struct {
	b      []byte
	cost   int
	elems  int
	events int // elements of top-level "ev" arrays
}

// walk charges the arrays of the struct value at b[i] and returns the
// offset after it.
func (d *densityWalk) walk(i int, sh *shape, top bool) int {
	if n, next, ok := readContainerHeader(d.b, i, true); ok {
		for range n {
			k, vi, isStr := readStr(d.b, next)
			if !isStr {
				vi = skipValue(d.b, next)
			}
			field := -1
			if isStr {
				for ai := range sh.arrays {
					if sh.arrays[ai].key == string(k) {
						field = ai
					}
				}
			}
			next = d.field(vi, sh, field, top)
		}
		return next
	}
	if n, next, ok := readContainerHeader(d.b, i, false); ok && n == sh.fields {
		for idx := range n {
			field := -1
			for ai := range sh.arrays {
				if sh.arrays[ai].index == idx {
					field = ai
				}
			}
			next = d.field(next, sh, field, top)
		}
		return next
	}
	return skipValue(d.b, i)
}

// field charges the value at b[i] if it is sh.arrays[ai] (ai >= 0) and
// returns the offset after it.
func (d *densityWalk) field(i int, sh *shape, ai int, top bool) int {
	if ai >= 0 {
		a := &sh.arrays[ai]
		n, next, ok := readContainerHeader(d.b, i, false)
		if !ok {
			return skipValue(d.b, i)
		}
		d.cost += n * a.cost
		d.elems += n
		if top && a.key == "ev" {
			d.events += n
		}
		for range n {
			if a.elem != nil {
				next = d.walk(next, a.elem, false)
			} else {
				next = skipValue(d.b, next)
			}
		}
		return next
	}
	return skipValue(d.b, i)
}

// readContainerHeader reads a map (wantMap) or array header at b[i] and
// returns its entry count and the offset after the header.
func readContainerHeader(b []byte, i int, wantMap bool) (n, next int, ok bool) {
	if i >= len(b) {
		return 0, i, false
	}
	c := b[i]
	fix, c16, c32 := byte(0x90), byte(0xdc), byte(0xdd)
	if wantMap {
		fix, c16, c32 = 0x80, 0xde, 0xdf
	}
	switch {
	case c >= fix && c <= fix+0x0f:
		return int(c & 0x0f), i + 1, true
	case c == c16 && i+3 <= len(b):
		return int(binary.BigEndian.Uint16(b[i+1:])), i + 3, true
	case c == c32 && i+5 <= len(b):
		return int(binary.BigEndian.Uint32(b[i+1:])), i + 5, true
	}
	return 0, i, false
}

// readStr reads a string at b[i] without allocating.
func readStr(b []byte, i int) (s []byte, next int, ok bool) {
	if i >= len(b) {
		return nil, i, false
	}
	c := b[i]
	var n, h int
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n, h = int(c&0x1f), 1
	case c == 0xd9 && i+2 <= len(b):
		n, h = int(b[i+1]), 2
	case c == 0xda && i+3 <= len(b):
		n, h = int(binary.BigEndian.Uint16(b[i+1:])), 3
	case c == 0xdb && i+5 <= len(b):
		n, h = int(binary.BigEndian.Uint32(b[i+1:])), 5
	default:
		return nil, i, false
	}
	if n > len(b)-i-h {
		return nil, i, false
	}
	return b[i+h : i+h+n], i + h + n, true
}

// skipValue returns the offset after the msgpack value at b[i]. b must have
// passed checkMsgpack; on malformed input it returns len(b).
func skipValue(b []byte, i int) int {
	for pending := 1; pending > 0; pending-- {
		if i >= len(b) {
			return len(b)
		}
		c := b[i]
		i++
		switch {
		case c <= 0x7f || c >= 0xe0 || c == 0xc0 || c == 0xc1 || c == 0xc2 || c == 0xc3:
		case c >= 0x80 && c <= 0x8f:
			pending += 2 * int(c&0x0f)
		case c >= 0x90 && c <= 0x9f:
			pending += int(c & 0x0f)
		case c >= 0xa0 && c <= 0xbf:
			i += int(c & 0x1f)
		default:
			var lenBytes, extra, fixed int
			switch c {
			case 0xc4, 0xd9:
				lenBytes = 1
			case 0xc5, 0xda, 0xdc, 0xde:
				lenBytes = 2
			case 0xc6, 0xdb, 0xdd, 0xdf:
				lenBytes = 4
			case 0xc7:
				lenBytes, extra = 1, 1
			case 0xc8:
				lenBytes, extra = 2, 1
			case 0xc9:
				lenBytes, extra = 4, 1
			case 0xca, 0xce, 0xd2:
				fixed = 4
			case 0xcb, 0xcf, 0xd3:
				fixed = 8
			case 0xcc, 0xd0:
				fixed = 1
			case 0xcd, 0xd1:
				fixed = 2
			case 0xd4:
				fixed = 2
			case 0xd5:
				fixed = 3
			case 0xd6:
				fixed = 5
			case 0xd7:
				fixed = 9
			case 0xd8:
				fixed = 17
			}
			if lenBytes > 0 {
				if len(b)-i < lenBytes {
					return len(b)
				}
				var n int
				switch lenBytes {
				case 1:
					n = int(b[i])
				case 2:
					n = int(binary.BigEndian.Uint16(b[i:]))
				case 4:
					n = int(binary.BigEndian.Uint32(b[i:]))
				}
				i += lenBytes
				switch c {
				case 0xdc, 0xdd:
					pending += n
				case 0xde, 0xdf:
					pending += 2 * n
				default:
					fixed = n + extra
				}
			}
			i += fixed
		}
		if i > len(b) || i < 0 {
			return len(b)
		}
	}
	return i
}

// safeUnmarshal is msgpack.Unmarshal turning a panic of the msgpack library
// into an error: v5.4.1 panics, for one, on a nil where a time.Time field
// is expected (reflect.Value.IsNil on a struct). checkMsgpack has already
// bounded the input, so a panic here is a decoding failure, not a broken
// invariant of this package.
func safeUnmarshal(b []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("msgpack: %v", r)
		}
	}()
	return msgpack.Unmarshal(b, v)
}
