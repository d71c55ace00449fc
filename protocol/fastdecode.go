package protocol

// A hand-written decoder for the hub's hot path: a Batch and the Events in
// it. It yields exactly the Go values that msgpack's reflection decoder
// (github.com/vmihailenco/msgpack/v5 v5.4.1, as safeUnmarshal calls it)
// yields for the same bytes, at a fraction of the cost. The rules it
// follows, read from that decoder:
//
//   - A struct comes as a map (keys matched to the msgpack tags, as str,
//     bin or nil; unknown keys skipped, missing fields left zero), as an
//     array of exactly one value per field in declaration order, or as nil
//     or an empty array (the zero struct). Any other array length and any
//     other code is an error.
//   - A string field takes a str, a bin or nil (""); an integer field any
//     msgpack integer or nil (0), converted as Go converts; a time.Time
//     field only the timestamp extension (-1) of 4, 8 or 12 bytes (nil
//     makes msgpack panic, which safeUnmarshal turns into an error).
//   - A slice of structs: nil is a nil slice, an empty array an empty,
//     non-nil one. A map: nil is a nil map, an empty map an empty, non-nil
//     one; keys are str, bin or nil ("").
//   - An interface value (in Traits, Properties, Context) is int8 for a
//     fixint, the exact width and signedness of the wire's int and uint
//     codes, float32 or float64, string, []byte for bin (non-nil when
//     empty), bool, nil, []any, map[string]any (keys that are not strings
//     are an error) and time.Time in the local zone for the timestamp
//     extension. Only the Batch's and Events' own times are put in UTC (by
//     utcTimes, after decoding).
//
// The decoder runs after checkMsgpack and the density checks, which bound
// every length prefix and the nesting depth by the payload; it still
// checks every read against the payload, so that no input makes it panic.
// Where the reflection decoder does something it does not reproduce, it
// returns errFallback and the whole message is decoded again by
// reflection:
//
//   - the destination is not the zero value (msgpack merges into it);
//   - a struct map repeats a field's key (msgpack merges the second value
//     into the first for structs, slices and map[string]bool);
//   - a map field holds an extension (msgpack skips the extension's header
//     and reads a map from the bytes after it);
//   - an interface value is an extension other than the timestamp (it
//     decodes only if some package registered that extension).
//
// A batch of more than MaxBatchEvents events fails with ErrTooLarge before
// its events are allocated, as Unmarshal fails after reflection decoded
// them.
//
// A lean decode (UnmarshalLean) walks the values it leaves out (events'
// contexts, unwanted properties) through the same code with building
// turned off, so that it accepts and rejects exactly what a full decode
// does.
//
// Strings are copied out of the payload (callers reuse their buffers, and
// the hub's store decodes from database memory that is only valid during a
// callback). Short strings that repeat, such as map keys, event types and
// source names, are shared through a small per-decoder cache instead of
// being allocated again.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// errFallback is returned by the fast decoder for an input whose decoding
// by reflection it does not reproduce; the caller decodes it by reflection.
var errFallback = errors.New("fast decoder: decode by reflection")

var (
	errTruncated   = errors.New("truncated")
	errArrayStruct = errors.New("number of fields in array-encoded struct differs")
)

// Field counts of the structs as msgpack sees them, for the array form.
const (
	batchFields      = 7
	eventFields      = 14
	sourceFields     = 4
	identifierFields = 2
)

// maxFastDepth bounds the recursion of the fast decoder. checkMsgpack caps
// nesting at 64 levels, so it is never reached after it; it only keeps the
// decoder bounded on its own.
const maxFastDepth = 80

// mapHintLimit caps the size hint of a map make: a declared length is
// trusted only that far, the map grows beyond it as entries come.
const mapHintLimit = 1024

// decodeBatch decodes body, which has passed checkMsgpack and
// checkElementDensity, into bt. It returns errFallback when the body has
// to be decoded by reflection instead, leaving bt as it found it. props,
// when set, makes the decode lean (UnmarshalLean).
func decodeBatch(body []byte, bt *Batch, props func(typ, name, channel string) bool) error {
	if bt == nil || !zeroBatch(bt) {
		return errFallback
	}
	d := getFastDecoder(body)
	defer putFastDecoder(d)
	d.props = props
	err := d.batch(bt)
	if errors.Is(err, errFallback) {
		*bt = Batch{Raw: bt.Raw}
	}
	return err
}

// decodeEvent is decodeBatch for a bare event, which has passed
// checkMsgpack and checkEventDensity.
func decodeEvent(body []byte, e *Event, props func(typ, name, channel string) bool) error {
	if e == nil || !zeroEvent(e) {
		return errFallback
	}
	d := getFastDecoder(body)
	defer putFastDecoder(d)
	d.props = props
	err := d.event(e, 0)
	if errors.Is(err, errFallback) {
		*e = Event{}
	}
	return err
}

// zeroBatch reports whether the fields of bt that msgpack decodes are
// zero; Raw is not one of them.
func zeroBatch(bt *Batch) bool {
	return bt.Tenant == "" && bt.EdgeID == "" && bt.FirstSeq == 0 && bt.LastSeq == 0 &&
		bt.SentAt == (time.Time{}) && bt.Backlog == 0 && bt.Events == nil
}

func zeroEvent(e *Event) bool {
	return e.ID == "" && e.Type == "" && e.Name == "" && e.Channel == "" && e.Source == (Source{}) &&
		e.Identifiers == nil && e.PreviousID == "" && e.GroupID == "" && e.Traits == nil &&
		e.Properties == nil && e.Context == nil && e.Consent == nil &&
		e.OccurredAt == (time.Time{}) && e.ReceivedAt == (time.Time{})
}

// fastDecoder reads one msgpack value from b at offset i.
type fastDecoder struct {
	b      []byte
	i      int
	intern internCache
	// props, when set, makes a lean decode (UnmarshalLean): events'
	// contexts are walked and checked but not built, and their
	// properties only where props returns true.
	props func(typ, name, channel string) bool
}

var fastDecoders = sync.Pool{New: func() any { return new(fastDecoder) }}

func getFastDecoder(b []byte) *fastDecoder {
	d := fastDecoders.Get().(*fastDecoder)
	d.b, d.i = b, 0
	return d
}

func putFastDecoder(d *fastDecoder) {
	d.b, d.props = nil, nil
	fastDecoders.Put(d)
}

// internCache shares short strings between the values of a decoder, and
// the interface values boxing them. It is a two-way set-associative cache:
// a set holds the last two strings that hashed to it, so a collision costs
// an allocation, never a wrong string. The strings are immutable copies,
// never the payload's bytes, and an interface holding a string cannot be
// changed through, so sharing them between messages (the cache outlives a
// decode in the pool) is safe; the cache keeps at most 512 strings of
// maxInterned bytes alive.
type internCache [512]internSlot

type internSlot struct {
	s string
	v any // s boxed, made when s is first wanted as an interface value
}

// maxInterned is the longest string the cache keeps.
const maxInterned = 32

// slot returns the slot of b, holding b; b is 1 to maxInterned bytes.
func (c *internCache) slot(b []byte) *internSlot {
	// A hash of the length and the first and last four bytes: cheap, and
	// it tells apart the keys and values that differ in a suffix or a
	// prefix (sku-1, sku-2).
	var x uint64
	if n := len(b); n >= 4 {
		x = uint64(binary.LittleEndian.Uint32(b))<<32 | uint64(binary.LittleEndian.Uint32(b[n-4:]))
	} else {
		for _, v := range b {
			x = x<<8 | uint64(v)
		}
	}
	x = (x ^ uint64(len(b))) * 0x9e3779b97f4a7c15
	set := c[x>>56<<1:][:2]
	if set[0].s == string(b) {
		return &set[0]
	}
	if set[1].s != string(b) {
		// The newest string first, the one it displaces second.
		set[1] = set[0]
		set[0] = internSlot{s: string(b)}
		return &set[0]
	}
	return &set[1]
}

// str returns b as a string.
func (c *internCache) str(b []byte) string {
	if len(b) == 0 || len(b) > maxInterned {
		return string(b)
	}
	return c.slot(b).s
}

// value returns b as a string in an interface.
func (c *internCache) value(b []byte) any {
	if len(b) == 0 || len(b) > maxInterned {
		return string(b)
	}
	sl := c.slot(b)
	if sl.v == nil {
		sl.v = sl.s
	}
	return sl.v
}

func (d *fastDecoder) code() (byte, error) {
	if d.i >= len(d.b) {
		return 0, errTruncated
	}
	c := d.b[d.i]
	d.i++
	return c, nil
}

// bytes returns the next n bytes of the payload.
func (d *fastDecoder) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(d.b)-d.i {
		return nil, errTruncated
	}
	s := d.b[d.i : d.i+n : d.i+n]
	d.i += n
	return s, nil
}

// uintN reads a big-endian unsigned integer of n (1, 2, 4 or 8) bytes.
func (d *fastDecoder) uintN(n int) (uint64, error) {
	s, err := d.bytes(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(s[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(s)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(s)), nil
	}
	return binary.BigEndian.Uint64(s), nil
}

// lenN reads a length of n bytes.
func (d *fastDecoder) lenN(n int) (int, error) {
	v, err := d.uintN(n)
	if err != nil {
		return 0, err
	}
	if v > uint64(len(d.b)) {
		return 0, errTruncated
	}
	return int(v), nil
}

// rawStr reads what msgpack decodes into a Go string: the bytes of a str
// or a bin, nothing for nil. The result aliases the payload.
func (d *fastDecoder) rawStr() ([]byte, error) {
	c, err := d.code()
	if err != nil {
		return nil, err
	}
	return d.strBody(c)
}

// strBody reads the body of the str, bin or nil whose code c was read.
func (d *fastDecoder) strBody(c byte) ([]byte, error) {
	var n int
	var err error
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = int(c & 0x1f)
	case c == 0xc0:
		return nil, nil
	case c == 0xd9 || c == 0xc4:
		n, err = d.lenN(1)
	case c == 0xda || c == 0xc5:
		n, err = d.lenN(2)
	case c == 0xdb || c == 0xc6:
		n, err = d.lenN(4)
	default:
		return nil, fmt.Errorf("code 0x%02x for a string", c)
	}
	if err != nil {
		return nil, err
	}
	return d.bytes(n)
}

// str reads a string field, copying it.
func (d *fastDecoder) str() (string, error) {
	s, err := d.rawStr()
	return string(s), err
}

// shortStr reads a string field whose values repeat, through the cache.
func (d *fastDecoder) shortStr() (string, error) {
	s, err := d.rawStr()
	return d.intern.str(s), err
}

// uint64 reads an integer field as msgpack's DecodeUint64 does.
func (d *fastDecoder) uint64() (uint64, error) {
	c, err := d.code()
	if err != nil {
		return 0, err
	}
	if c <= 0x7f || c >= 0xe0 {
		return uint64(int8(c)), nil
	}
	switch c {
	case 0xc0:
		return 0, nil
	case 0xcc:
		return d.uintN(1)
	case 0xcd:
		return d.uintN(2)
	case 0xce:
		return d.uintN(4)
	case 0xcf, 0xd3:
		return d.uintN(8)
	case 0xd0:
		v, err := d.uintN(1)
		return uint64(int8(v)), err
	case 0xd1:
		v, err := d.uintN(2)
		return uint64(int16(v)), err
	case 0xd2:
		v, err := d.uintN(4)
		return uint64(int32(v)), err
	}
	return 0, fmt.Errorf("code 0x%02x for an integer", c)
}

// int64 reads an integer field as msgpack's DecodeInt64 does: the same
// codes as uint64, the same two's-complement conversions.
func (d *fastDecoder) int64() (int64, error) {
	v, err := d.uint64()
	return int64(v), err
}

// extHeader reads the header of the extension whose code c was read and
// returns its type and length; ok is false if c is not an extension.
func (d *fastDecoder) extHeader(c byte) (typ int8, n int, ok bool, err error) {
	switch c {
	case 0xd4:
		n = 1
	case 0xd5:
		n = 2
	case 0xd6:
		n = 4
	case 0xd7:
		n = 8
	case 0xd8:
		n = 16
	case 0xc7:
		n, err = d.lenN(1)
	case 0xc8:
		n, err = d.lenN(2)
	case 0xc9:
		n, err = d.lenN(4)
	default:
		return 0, 0, false, nil
	}
	if err != nil {
		return 0, 0, true, err
	}
	t, err := d.code()
	return int8(t), n, true, err
}

// timeExtID is msgpack's extension type of time.Time.
const timeExtID = -1

// time reads a time.Time field: only the timestamp extension decodes.
func (d *fastDecoder) time() (time.Time, error) {
	c, err := d.code()
	if err != nil {
		return time.Time{}, err
	}
	typ, n, ok, err := d.extHeader(c)
	if err != nil {
		return time.Time{}, err
	}
	if !ok {
		return time.Time{}, fmt.Errorf("code 0x%02x for a time", c)
	}
	if typ != timeExtID {
		return time.Time{}, fmt.Errorf("extension %d for a time", typ)
	}
	return d.timeBody(n)
}

// timeBody reads the n bytes of a timestamp extension as msgpack does: a
// time in the local zone, the zero time in UTC.
func (d *fastDecoder) timeBody(n int) (time.Time, error) {
	b, err := d.bytes(n)
	if err != nil {
		return time.Time{}, err
	}
	var tm time.Time
	switch n {
	case 4:
		tm = time.Unix(int64(binary.BigEndian.Uint32(b)), 0)
	case 8:
		v := binary.BigEndian.Uint64(b)
		tm = time.Unix(int64(v&0x00000003ffffffff), int64(v>>34))
	case 12:
		tm = time.Unix(int64(binary.BigEndian.Uint64(b[4:])), int64(binary.BigEndian.Uint32(b)))
	default:
		return time.Time{}, fmt.Errorf("timestamp of %d bytes", n)
	}
	if tm.IsZero() {
		tm = tm.UTC()
	}
	return tm, nil
}

// structHeader reads the header of a struct of fields fields. It returns
// the entry count of a map, or fields and asArray for an array of one
// value per field; n is 0 for nil and for an empty array, the zero struct.
func (d *fastDecoder) structHeader(fields int) (n int, asArray bool, err error) {
	c, err := d.code()
	if err != nil {
		return 0, false, err
	}
	switch {
	case c == 0xc0:
		return 0, false, nil
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), false, nil
	case c == 0xde:
		n, err = d.lenN(2)
		return n, false, err
	case c == 0xdf:
		n, err = d.lenN(4)
		return n, false, err
	case c >= 0x90 && c <= 0x9f:
		n = int(c & 0x0f)
	case c == 0xdc:
		n, err = d.lenN(2)
	case c == 0xdd:
		n, err = d.lenN(4)
	default:
		return 0, false, fmt.Errorf("code 0x%02x for a struct", c)
	}
	if err != nil || n == 0 {
		return 0, false, err
	}
	if n != fields {
		return 0, false, fmt.Errorf("%w: %d values for %d fields", errArrayStruct, n, fields)
	}
	return n, true, nil
}

// sliceHeader reads the header of a slice field: n is -1 for nil.
func (d *fastDecoder) sliceHeader() (int, error) {
	return d.containerHeader(false)
}

// mapHeader reads the header of a map field: n is -1 for nil. An
// extension falls back (see the file comment).
func (d *fastDecoder) mapHeader() (int, error) {
	return d.containerHeader(true)
}

// containerHeader reads the header of a map (wantMap) or array with
// readContainerHeader; n is -1 for nil, and no more than the payload's
// length.
func (d *fastDecoder) containerHeader(wantMap bool) (int, error) {
	if n, next, ok := readContainerHeader(d.b, d.i, wantMap); ok {
		if n > len(d.b) {
			return 0, errTruncated
		}
		d.i = next
		return n, nil
	}
	c, err := d.code()
	switch {
	case err != nil:
		return 0, err
	case c == 0xc0:
		return -1, nil
	case wantMap && (c >= 0xd4 && c <= 0xd8 || c >= 0xc7 && c <= 0xc9):
		return 0, errFallback
	case !wantMap && (c == 0xdc || c == 0xdd) || wantMap && (c == 0xde || c == 0xdf):
		return 0, errTruncated // a length cut short
	case wantMap:
		return 0, fmt.Errorf("code 0x%02x for a map", c)
	}
	return 0, fmt.Errorf("code 0x%02x for an array", c)
}

// fieldIndex is the index of a struct field (declaration order, as in the
// array form) or -1 for a key the struct does not have.
type fieldIndex int

// fields decodes a struct of n fields whose header structHeader read:
// key names the field of a map key, field decodes field i. A repeated key
// falls back.
func (d *fastDecoder) fields(n int, asArray bool, key func([]byte) fieldIndex, field func(fieldIndex) error) error {
	if asArray {
		for i := range n {
			if err := field(fieldIndex(i)); err != nil {
				return err
			}
		}
		return nil
	}
	var seen uint64
	for range n {
		k, err := d.rawStr()
		if err != nil {
			return fmt.Errorf("key: %w", err)
		}
		i := key(k)
		if i < 0 {
			d.i = skipValue(d.b, d.i)
			continue
		}
		if seen&(1<<i) != 0 {
			return errFallback
		}
		seen |= 1 << i
		if err := field(i); err != nil {
			return err
		}
	}
	return nil
}

func (d *fastDecoder) batch(bt *Batch) error {
	n, asArray, err := d.structHeader(batchFields)
	if err != nil {
		return err
	}
	return d.fields(n, asArray, batchKey, func(i fieldIndex) error {
		var err error
		switch i {
		case 0:
			bt.Tenant, err = d.shortStr()
		case 1:
			bt.EdgeID, err = d.shortStr()
		case 2:
			bt.FirstSeq, err = d.uint64()
		case 3:
			bt.LastSeq, err = d.uint64()
		case 4:
			bt.SentAt, err = d.time()
		case 5:
			bt.Backlog, err = d.int64()
		case 6:
			bt.Events, err = d.events()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", batchKeys[i], err)
		}
		return nil
	})
}

var batchKeys = [batchFields]string{"tn", "ed", "fs", "ls", "sa", "bl", "ev"}

func batchKey(k []byte) fieldIndex {
	switch string(k) {
	case "tn":
		return 0
	case "ed":
		return 1
	case "fs":
		return 2
	case "ls":
		return 3
	case "sa":
		return 4
	case "bl":
		return 5
	case "ev":
		return 6
	}
	return -1
}

func (d *fastDecoder) events() ([]Event, error) {
	n, err := d.sliceHeader()
	if err != nil || n < 0 {
		return nil, err
	}
	// Unmarshal rejects a batch of more events after decoding it; here
	// before they are allocated.
	if n > MaxBatchEvents {
		return nil, fmt.Errorf("batch: %d events, limit %d: %w", n, MaxBatchEvents, ErrTooLarge)
	}
	evs := make([]Event, n)
	for i := range evs {
		if err := d.event(&evs[i], 1); err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
	}
	return evs, nil
}

// event decodes an event at nesting depth depth.
func (d *fastDecoder) event(e *Event, depth int) error {
	n, asArray, err := d.structHeader(eventFields)
	if err != nil {
		return err
	}
	depth++
	// In a lean decode, whether properties are built is decided by the
	// event's type, name and channel as they are when the properties
	// come. The edge encodes those first. If one comes after, the
	// decision may not hold for its final value: reflection decodes the
	// message whole instead, stripped then on the final values. So the
	// fast decoder's lean result never needs stripping.
	decided := false
	return d.fields(n, asArray, eventKey, func(i fieldIndex) error {
		var err error
		if decided && i >= 1 && i <= 3 {
			return errFallback
		}
		switch i {
		case 0:
			e.ID, err = d.str()
		case 1:
			e.Type, err = d.shortStr()
		case 2:
			e.Name, err = d.shortStr()
		case 3:
			e.Channel, err = d.shortStr()
		case 4:
			err = d.source(&e.Source)
		case 5:
			e.Identifiers, err = d.identifiers()
		case 6:
			e.PreviousID, err = d.str()
		case 7:
			e.GroupID, err = d.str()
		case 8:
			e.Traits, err = d.mapAny(depth, true)
		case 9:
			keep := d.props == nil || d.props(e.Type, e.Name, e.Channel)
			decided = d.props != nil
			e.Properties, err = d.mapAny(depth, keep)
		case 10:
			e.Context, err = d.mapAny(depth, d.props == nil)
		case 11:
			e.Consent, err = d.mapBool()
		case 12:
			e.OccurredAt, err = d.time()
		case 13:
			e.ReceivedAt, err = d.time()
		}
		if err != nil {
			return fmt.Errorf("%s: %w", eventKeys[i], err)
		}
		return nil
	})
}

var eventKeys = [eventFields]string{"id", "ty", "n", "ch", "src", "ids", "pid", "gid", "tr", "pr", "cx", "cs", "oa", "ra"}

func eventKey(k []byte) fieldIndex {
	switch string(k) {
	case "id":
		return 0
	case "ty":
		return 1
	case "n":
		return 2
	case "ch":
		return 3
	case "src":
		return 4
	case "ids":
		return 5
	case "pid":
		return 6
	case "gid":
		return 7
	case "tr":
		return 8
	case "pr":
		return 9
	case "cx":
		return 10
	case "cs":
		return 11
	case "oa":
		return 12
	case "ra":
		return 13
	}
	return -1
}

func (d *fastDecoder) source(s *Source) error {
	n, asArray, err := d.structHeader(sourceFields)
	if err != nil {
		return err
	}
	return d.fields(n, asArray, sourceKey, func(i fieldIndex) error {
		var err error
		switch i {
		case 0:
			s.Tenant, err = d.shortStr()
		case 1:
			s.Site, err = d.shortStr()
		case 2:
			s.Edge, err = d.shortStr()
		case 3:
			s.Device, err = d.shortStr()
		}
		return err
	})
}

func sourceKey(k []byte) fieldIndex {
	switch string(k) {
	case "tn":
		return 0
	case "st":
		return 1
	case "ed":
		return 2
	case "dv":
		return 3
	}
	return -1
}

func (d *fastDecoder) identifiers() ([]Identifier, error) {
	n, err := d.sliceHeader()
	if err != nil || n < 0 {
		return nil, err
	}
	ids := make([]Identifier, n)
	for i := range ids {
		id := &ids[i]
		m, asArray, err := d.structHeader(identifierFields)
		if err == nil {
			err = d.fields(m, asArray, identifierKey, func(f fieldIndex) error {
				var err error
				if f == 0 {
					id.Type, err = d.shortStr()
				} else {
					id.Value, err = d.str()
				}
				return err
			})
		}
		if err != nil {
			return nil, err
		}
	}
	return ids, nil
}

func identifierKey(k []byte) fieldIndex {
	switch string(k) {
	case "t":
		return 0
	case "v":
		return 1
	}
	return -1
}

// mapAny decodes a map[string]any field. Unless keep, it only reads and
// checks it, as decoding would, and returns nil: keep changes what is
// built, never what is accepted (so for sliceBody and value).
func (d *fastDecoder) mapAny(depth int, keep bool) (map[string]any, error) {
	n, err := d.mapHeader()
	if err != nil || n < 0 {
		return nil, err
	}
	return d.mapBody(n, depth, keep)
}

// mapBody decodes the n entries of a map[string]any whose header was read,
// as msgpack's DecodeMap does.
func (d *fastDecoder) mapBody(n, depth int, keep bool) (map[string]any, error) {
	if depth >= maxFastDepth {
		return nil, errFallback
	}
	var m map[string]any
	if keep {
		m = make(map[string]any, min(n, mapHintLimit))
	}
	for range n {
		k, err := d.rawStr()
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		v, err := d.value(depth+1, keep)
		if err != nil {
			return nil, err
		}
		if keep {
			m[d.intern.str(k)] = v
		}
	}
	return m, nil
}

// mapBool decodes a map[string]bool field.
func (d *fastDecoder) mapBool() (map[string]bool, error) {
	n, err := d.mapHeader()
	if err != nil || n < 0 {
		return nil, err
	}
	m := make(map[string]bool, min(n, mapHintLimit))
	for range n {
		k, err := d.rawStr()
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		c, err := d.code()
		if err != nil {
			return nil, err
		}
		var v bool
		switch c {
		case 0xc0, 0xc2:
		case 0xc3:
			v = true
		default:
			return nil, fmt.Errorf("code 0x%02x for a bool", c)
		}
		m[d.intern.str(k)] = v
	}
	return m, nil
}

// sliceBody decodes the n elements of a []any whose header was read.
func (d *fastDecoder) sliceBody(n, depth int, keep bool) ([]any, error) {
	if depth >= maxFastDepth {
		return nil, errFallback
	}
	if !keep {
		for range n {
			if _, err := d.value(depth+1, false); err != nil {
				return nil, err
			}
		}
		return nil, nil
	}
	s := make([]any, n)
	for i := range s {
		v, err := d.value(depth+1, true)
		if err != nil {
			return nil, err
		}
		s[i] = v
	}
	return s, nil
}

// value decodes an interface value as msgpack's DecodeInterface does.
// Unless keep, the maps, lists, strings and bytes it reads are not built.
func (d *fastDecoder) value(depth int, keep bool) (any, error) {
	c, err := d.code()
	if err != nil {
		return nil, err
	}
	switch {
	case c <= 0x7f || c >= 0xe0:
		return int8(c), nil
	case c <= 0x8f:
		return d.mapBody(int(c&0x0f), depth, keep)
	case c <= 0x9f:
		return d.sliceBody(int(c&0x0f), depth, keep)
	case c <= 0xbf:
		s, err := d.bytes(int(c & 0x1f))
		if err != nil || !keep {
			return nil, err
		}
		return d.intern.value(s), nil
	}
	switch c {
	case 0xc0:
		return nil, nil
	case 0xc2:
		return false, nil
	case 0xc3:
		return true, nil
	case 0xca:
		v, err := d.uintN(4)
		return math.Float32frombits(uint32(v)), err
	case 0xcb:
		v, err := d.uintN(8)
		return math.Float64frombits(v), err
	case 0xcc:
		v, err := d.uintN(1)
		return uint8(v), err
	case 0xcd:
		v, err := d.uintN(2)
		return uint16(v), err
	case 0xce:
		v, err := d.uintN(4)
		return uint32(v), err
	case 0xcf:
		return d.uintN(8)
	case 0xd0:
		v, err := d.uintN(1)
		return int8(v), err
	case 0xd1:
		v, err := d.uintN(2)
		return int16(v), err
	case 0xd2:
		v, err := d.uintN(4)
		return int32(v), err
	case 0xd3:
		v, err := d.uintN(8)
		return int64(v), err
	case 0xd9, 0xda, 0xdb:
		s, err := d.strBody(c)
		if err != nil || !keep {
			return nil, err
		}
		return d.intern.value(s), nil
	case 0xc4, 0xc5, 0xc6:
		s, err := d.strBody(c)
		if err != nil || !keep {
			return nil, err
		}
		return append([]byte{}, s...), nil
	case 0xdc, 0xdd:
		n, err := d.lenN(2 + 2*int(c-0xdc))
		if err != nil {
			return nil, err
		}
		return d.sliceBody(n, depth, keep)
	case 0xde, 0xdf:
		n, err := d.lenN(2 + 2*int(c-0xde))
		if err != nil {
			return nil, err
		}
		return d.mapBody(n, depth, keep)
	}
	typ, n, ok, err := d.extHeader(c)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("unknown code 0x%02x", c)
	}
	if typ != timeExtID {
		return nil, errFallback
	}
	return d.timeBody(n)
}
