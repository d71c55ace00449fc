package protocol

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fastjson"
)

// Segment limits, as documented by the Segment HTTP Tracking API.
const (
	DefaultMaxMessageBytes = 32 << 10
	DefaultMaxBatchBytes   = 500 << 10
	// MaxMessageBytesLimit is the largest MapOptions.MaxMessageBytes. An
	// event holds at most one message and its batch's context, each within
	// MaxMessageBytes of JSON, and msgpack takes at most 4.5 bytes for 2 of
	// JSON (the integer in "0," becomes 9 bytes), so every event the Mapper
	// makes encodes within MaxEventBytes.
	MaxMessageBytesLimit = MaxEventBytes / 10
	// MaxIdentifierLen bounds identifier values and ids.
	MaxIdentifierLen = 256
	// MaxNameLen bounds event, page and screen names.
	MaxNameLen = 512
	// MaxNesting bounds nesting of traits, properties and context.
	MaxNesting = 16
)

// IdentifierRule extracts an extra identifier from a message: the string (or
// number) at Path, a dotted JSON path such as "properties.card_number" or
// "context.traits.crm_id", becomes an identifier of Type. Paths under
// context.traits read the event's traits, where context traits are lifted.
type IdentifierRule struct {
	Path string `json:"path" yaml:"path"`
	Type string `json:"type" yaml:"type"`
}

// MapOptions configures a Mapper.
type MapOptions struct {
	// Source stamps every event (tenant, site, edge). Source.Device is taken
	// from context.device.id when the message has one.
	Source Source
	// DefaultChannel applies when context.channel names none of Unico's
	// channels; default "server".
	DefaultChannel string
	// DefaultCountryCode is the calling code (such as "44") used to bring
	// national phone numbers to E.164. Empty leaves them as digits.
	DefaultCountryCode string
	// Rules adds identifier extraction rules to the built-in ones.
	Rules []IdentifierRule
	// MaxMessageBytes bounds one message and a batch's context (default
	// 32 KiB, at most MaxMessageBytesLimit); MaxBatchBytes a batch request
	// body (default 500 KiB).
	MaxMessageBytes int
	MaxBatchBytes   int
	// IDs generates event ids for messages without messageId. Default: a
	// new generator.
	IDs *IDGen
	// Now is the clock for received-at times; default time.Now.
	Now func() time.Time
}

type compiledRule struct {
	path []string
	typ  string
}

// Mapper turns Segment HTTP Tracking API requests into events. It is safe
// for concurrent use.
type Mapper struct {
	opts  MapOptions
	rules []compiledRule
	pp    fastjson.ParserPool
}

// NewMapper validates opts and returns a Mapper.
func NewMapper(opts MapOptions) (*Mapper, error) {
	if opts.DefaultChannel == "" {
		opts.DefaultChannel = ChannelServer
	}
	if !KnownChannel(opts.DefaultChannel) {
		return nil, fmt.Errorf("default channel %q: unknown channel", opts.DefaultChannel)
	}
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if opts.MaxMessageBytes > MaxMessageBytesLimit {
		return nil, fmt.Errorf("max message bytes %d: above the limit of %d", opts.MaxMessageBytes, MaxMessageBytesLimit)
	}
	if opts.MaxBatchBytes <= 0 {
		opts.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.IDs == nil {
		opts.IDs = NewIDGen(opts.Now)
	}
	m := &Mapper{opts: opts}
	for i, r := range opts.Rules {
		p := strings.Split(r.Path, ".")
		if r.Path == "" || r.Type == "" || !ValidName(r.Type) {
			return nil, fmt.Errorf("identifier rule %d: need a path and a type of [A-Za-z0-9._-]", i)
		}
		switch p[0] {
		case "traits", "properties", "context":
		default:
			return nil, fmt.Errorf("identifier rule %d: path %q must start with traits, properties or context", i, r.Path)
		}
		if len(p) > 2 && p[0] == "context" && p[1] == "traits" {
			// context.traits are lifted into the event's traits.
			p = p[1:]
		}
		m.rules = append(m.rules, compiledRule{path: p, typ: r.Type})
	}
	return m, nil
}

// Options returns the options in force, defaults applied.
func (m *Mapper) Options() MapOptions { return m.opts }

// Endpoint names the Segment endpoint a body was posted to: "batch" or one
// of the Type* constants.
type Endpoint string

// EndpointBatch is the /v1/batch endpoint (also accepted as "import").
const EndpointBatch Endpoint = "batch"

// Decode parses body as posted to endpoint and appends the resulting events
// to dst. On any invalid message it returns a *ValidationError listing every
// problem found and no events: a request is stored whole or not at all.
func (m *Mapper) Decode(endpoint Endpoint, body []byte, dst []Event) ([]Event, error) {
	verr := &ValidationError{}
	start := len(dst)
	p := m.pp.Get()
	defer m.pp.Put(p)
	var fp fieldPath
	m.parseRequest(p, endpoint, body, verr, func(msg, batchCtx *fastjson.Value, batchSentAt time.Time, typ string, idx int, received time.Time) {
		dst = append(dst, Event{})
		m.decodeMessage(msg, batchCtx, batchSentAt, typ, idx, received, &dst[len(dst)-1], verr, &fp)
	})
	if len(verr.Errors) > 0 {
		clear(dst[start:])
		return dst[:start], verr
	}
	return dst, nil
}

// messageFunc handles one message of a request: msg is the message object,
// batchCtx and batchSentAt the batch's context and sentAt (nil and zero for
// a single-message endpoint), typ its known type, idx its position in the
// batch (-1 for a single message) and received the request's received-at.
type messageFunc func(msg, batchCtx *fastjson.Value, batchSentAt time.Time, typ string, idx int, received time.Time)

// parseRequest checks the request-level structure and limits of body as
// posted to endpoint, adding problems to verr, and calls each for every
// message that has a known type, in order. Messages are checked by each;
// the request is valid only if verr is empty afterwards. The values given
// to each are valid until p is reused.
func (m *Mapper) parseRequest(p *fastjson.Parser, endpoint Endpoint, body []byte, verr *ValidationError, each messageFunc) {
	limit := m.opts.MaxMessageBytes
	if endpoint == EndpointBatch {
		limit = m.opts.MaxBatchBytes
	}
	if len(body) > limit {
		verr.TooLarge = true
		verr.add(-1, "", fmt.Sprintf("request body of %d bytes exceeds the limit of %d", len(body), limit))
		return
	}
	root, err := p.ParseBytes(body)
	if err != nil {
		verr.add(-1, "", "invalid JSON: "+err.Error())
		return
	}
	if root.Type() != fastjson.TypeObject {
		verr.add(-1, "", "body must be a JSON object")
		return
	}
	received := m.opts.Now().UTC()
	if endpoint != EndpointBatch {
		t := string(endpoint)
		if !knownType(t) {
			verr.add(-1, "type", fmt.Sprintf("unknown endpoint %q", t))
			return
		}
		each(root, nil, time.Time{}, t, -1, received)
		return
	}
	batch := root.Get("batch")
	if batch == nil {
		verr.add(-1, "batch", "missing")
		return
	}
	arr, err := batch.Array()
	if err != nil {
		verr.add(-1, "batch", "not an array")
		return
	}
	if len(arr) == 0 {
		verr.add(-1, "batch", "empty")
		return
	}
	if len(arr) > MaxBatchEvents {
		verr.TooLarge = true
		verr.add(-1, "batch", fmt.Sprintf("%d messages exceed the limit of %d", len(arr), MaxBatchEvents))
		return
	}
	batchCtx := root.Get("context")
	if batchCtx != nil && batchCtx.Type() != fastjson.TypeObject {
		verr.add(-1, "context", "not an object")
		batchCtx = nil
	}
	// The batch's context is copied into every event: it is bounded like
	// a message, so that no event outgrows MaxEventBytes.
	if batchCtx != nil && len(body) > m.opts.MaxMessageBytes {
		if n := len(batchCtx.MarshalTo(nil)); n > m.opts.MaxMessageBytes {
			verr.TooLarge = true
			verr.add(-1, "context", fmt.Sprintf("batch context of %d bytes exceeds the limit of %d", n, m.opts.MaxMessageBytes))
			batchCtx = nil
		}
	}
	// The batch's sentAt applies to every message without its own.
	var batchSentAt time.Time
	if sv := root.Get("sentAt"); sv != nil {
		batchSentAt = parseTimeValue(sv, "sentAt", -1, verr)
	}
	var scratch []byte
	for i, msg := range arr {
		if msg.Type() != fastjson.TypeObject {
			verr.add(i, "", "not an object")
			continue
		}
		// A message is never longer than the body holding it: only a
		// body over the per-message limit needs its messages measured.
		// MarshalTo writes a message untouched since parsing as it came,
		// minus whitespace.
		if len(body) <= m.opts.MaxMessageBytes {
			// fits
		} else if scratch = msg.MarshalTo(scratch[:0]); len(scratch) > m.opts.MaxMessageBytes {
			verr.TooLarge = true
			verr.add(i, "", fmt.Sprintf("message of %d bytes exceeds the limit of %d", len(scratch), m.opts.MaxMessageBytes))
			continue
		}
		tv := msg.Get("type")
		if tv != nil && tv.Type() != fastjson.TypeString && tv.Type() != fastjson.TypeNull {
			verr.add(i, "type", "not a string")
			continue
		}
		t := typeName(msg.GetStringBytes("type"))
		if t == "" {
			verr.add(i, "type", "missing")
			continue
		}
		if !knownType(t) {
			verr.add(i, "type", fmt.Sprintf("unknown type %q", t))
			continue
		}
		each(msg, batchCtx, batchSentAt, t, i, received)
	}
}

// typeName returns b as a string, the Type* constant itself when b names
// one, so that known types cost no allocation.
func typeName(b []byte) string {
	switch string(b) {
	case TypeTrack:
		return TypeTrack
	case TypeIdentify:
		return TypeIdentify
	case TypePage:
		return TypePage
	case TypeScreen:
		return TypeScreen
	case TypeGroup:
		return TypeGroup
	case TypeAlias:
		return TypeAlias
	}
	return string(b)
}

func knownType(t string) bool {
	switch t {
	case TypeTrack, TypeIdentify, TypePage, TypeScreen, TypeGroup, TypeAlias:
		return true
	}
	return false
}

// ecommerceNumbers are the Segment spec properties that must be numbers.
var ecommerceNumbers = [...]string{"revenue", "value", "total", "subtotal", "price", "quantity", "tax", "shipping", "discount"}

func (m *Mapper) decodeMessage(v, batchCtx *fastjson.Value, batchSentAt time.Time, typ string, idx int, received time.Time, ev *Event, verr *ValidationError, fp *fieldPath) {
	nerr := len(verr.Errors)
	ev.Type = typ
	ev.ReceivedAt = received
	ev.Source = m.opts.Source

	userID := idString(v, "userId", idx, verr)
	userErr := len(verr.Errors) > nerr
	anonID := idString(v, "anonymousId", idx, verr)
	if userID == "" && anonID == "" && len(verr.Errors) == nerr {
		verr.add(idx, "userId", "userId or anonymousId is required")
	}
	msgID := idString(v, "messageId", idx, verr)
	if msgID == "" {
		msgID = m.opts.IDs.New()
	}
	ev.ID = msgID

	switch typ {
	case TypeTrack:
		before := len(verr.Errors)
		ev.Name = nameString(v, "event", idx, verr)
		if ev.Name == "" && len(verr.Errors) == before {
			verr.add(idx, "event", "missing")
		}
	case TypePage, TypeScreen:
		ev.Name = nameString(v, "name", idx, verr)
	case TypeGroup:
		before := len(verr.Errors)
		ev.GroupID = idString(v, "groupId", idx, verr)
		if ev.GroupID == "" && len(verr.Errors) == before {
			verr.add(idx, "groupId", "missing")
		}
	case TypeAlias:
		before := len(verr.Errors)
		ev.PreviousID = idString(v, "previousId", idx, verr)
		if ev.PreviousID == "" && len(verr.Errors) == before {
			verr.add(idx, "previousId", "missing")
		}
		if userID == "" && !userErr {
			verr.add(idx, "userId", "missing")
		}
	}

	// Context: the message's, with the batch's keys filled in where absent.
	ctx := objectField(v, "context", idx, verr)
	var ctxMap map[string]any
	if ctx != nil || batchCtx != nil {
		fp.root = "context"
		ctxMap = make(map[string]any, objectLen(batchCtx)+objectLen(ctx))
		if batchCtx != nil {
			m.fillMap(ctxMap, batchCtx, fp, idx, verr, 1)
		}
		if ctx != nil {
			m.fillMap(ctxMap, ctx, fp, idx, verr, 1)
		}
	}

	var traitsV *fastjson.Value
	switch typ {
	case TypeIdentify, TypeGroup:
		traitsV = objectField(v, "traits", idx, verr)
	}
	if traitsV != nil {
		fp.root = "traits"
		ev.Traits = m.toMap(traitsV, fp, idx, verr, 1)
	}
	// context.traits describe the user on every call.
	if ct, ok := ctxMap["traits"].(map[string]any); ok {
		if ev.Traits == nil {
			ev.Traits = ct
		} else {
			for k, val := range ct {
				if _, dup := ev.Traits[k]; !dup {
					ev.Traits[k] = val
				}
			}
		}
		delete(ctxMap, "traits")
	}

	if pv := objectField(v, "properties", idx, verr); pv != nil {
		fp.root = "properties"
		ev.Properties = m.toMap(pv, fp, idx, verr, 1)
		checkNumbers(ev.Properties, "properties", idx, verr)
		if products, ok := ev.Properties["products"].([]any); ok {
			for i, p := range products {
				if pm, ok := p.(map[string]any); ok {
					checkNumbers(pm, "properties.products["+strconv.Itoa(i)+"]", idx, verr)
				}
			}
		}
	}
	if typ == TypePage {
		if c := v.GetStringBytes("category"); len(c) > 0 {
			if ev.Properties == nil {
				ev.Properties = make(map[string]any, 1)
			}
			ev.Properties["category"] = string(c)
		}
	}

	// Consent: context.consent.categoryPreferences {purpose: bool}.
	if cons, ok := ctxMap["consent"].(map[string]any); ok {
		if prefs, ok := cons["categoryPreferences"].(map[string]any); ok {
			// Sorted, so that errors come in a stable order.
			keys := make([]string, 0, len(prefs))
			for k := range prefs {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			for _, k := range keys {
				b, isBool := prefs[k].(bool)
				if !isBool {
					verr.add(idx, "context.consent.categoryPreferences."+k, "not a boolean")
					continue
				}
				if ev.Consent == nil {
					ev.Consent = make(map[string]bool, len(prefs))
				}
				// Purposes differing only in case are one purpose; a
				// denial among them wins.
				lk := strings.ToLower(k)
				if granted, seen := ev.Consent[lk]; seen {
					b = b && granted
				}
				ev.Consent[lk] = b
			}
		}
		delete(ctxMap, "consent")
	}
	if len(ctxMap) > 0 {
		ev.Context = ctxMap
	}

	ev.Channel = m.channel(ctxMap, v)
	if dev, ok := ctxMap["device"].(map[string]any); ok {
		if id, ok := dev["id"].(string); ok {
			ev.Source.Device = strings.TrimSpace(id)
		}
	}

	// Times.
	ev.OccurredAt = received
	ts := timeField(v, "timestamp", idx, verr)
	orig := timeField(v, "originalTimestamp", idx, verr)
	sent := batchSentAt
	if sentAtV := v.Get("sentAt"); sentAtV != nil {
		sent = parseTimeValue(sentAtV, "sentAt", idx, verr)
	}
	switch {
	case !ts.IsZero():
		ev.OccurredAt = ts
	case !orig.IsZero() && !sent.IsZero():
		// Correct the device's clock skew as Segment does. A clock so far
		// off that the correction leaves 1970–9999 (the difference
		// saturates at 292 years) keeps the device's own time.
		ev.OccurredAt = received.Add(-sent.Sub(orig))
		if y := ev.OccurredAt.Year(); y < 1970 || y > 9999 {
			ev.OccurredAt = orig
		}
	case !orig.IsZero():
		ev.OccurredAt = orig
	}

	// Identifiers: most events carry two to four.
	ev.Identifiers = make([]Identifier, 0, 4)
	ev.AddIdentifier(IDUserID, userID)
	ev.AddIdentifier(IDAnonymousID, anonID)
	m.extractIdentifiers(ev)
	if len(verr.Errors) > nerr {
		*ev = Event{}
	}
}

// channel maps context.channel, or else the message's top-level channel of
// the Segment spec ("browser", "server", "mobile"), to a Unico channel.
func (m *Mapper) channel(ctx map[string]any, v *fastjson.Value) string {
	c, ok := ctx["channel"].(string)
	if !ok {
		if b := v.GetStringBytes("channel"); b != nil {
			c, ok = string(b), true
		}
	}
	if ok {
		c = strings.ToLower(c)
		switch {
		case c == "browser":
			return ChannelWeb
		case c == "mobile":
			return ChannelApp
		case c == ChannelServer:
			return m.opts.DefaultChannel
		case KnownChannel(c):
			return c
		}
	}
	return m.opts.DefaultChannel
}

func (m *Mapper) extractIdentifiers(ev *Event) {
	// Traits hold the context traits too (merged above).
	if s, ok := ev.Traits["email"].(string); ok {
		if e, valid := NormalizeEmail(s); valid && len(e) <= MaxIdentifierLen {
			ev.AddIdentifier(IDEmail, e)
		}
	}
	if s := scalarString(ev.Traits["phone"]); s != "" {
		if p, _ := NormalizePhone(s, m.opts.DefaultCountryCode); len(p) >= 5 && len(p) <= MaxIdentifierLen {
			ev.AddIdentifier(IDPhone, p)
		}
	}
	for _, src := range [...]map[string]any{ev.Traits, ev.Properties} {
		if s := strings.TrimSpace(scalarString(src["loyalty_id"])); s != "" && len(s) <= MaxIdentifierLen {
			ev.AddIdentifier(IDLoyaltyID, s)
		}
	}
	if ev.Source.Device != "" && len(ev.Source.Device) <= MaxIdentifierLen {
		ev.AddIdentifier(IDDeviceID, ev.Source.Device)
	}
	for _, r := range m.rules {
		var cur any
		switch r.path[0] {
		case "traits":
			cur = ev.Traits
		case "properties":
			cur = ev.Properties
		case "context":
			cur = ev.Context
		}
		for _, k := range r.path[1:] {
			mm, ok := cur.(map[string]any)
			if !ok {
				cur = nil
				break
			}
			cur = mm[k]
		}
		if s := strings.TrimSpace(scalarString(cur)); s != "" && len(s) <= MaxIdentifierLen {
			if r.typ == IDEmail {
				var ok bool
				if s, ok = NormalizeEmail(s); !ok {
					continue
				}
			} else if r.typ == IDPhone {
				s, _ = NormalizePhone(s, m.opts.DefaultCountryCode)
				if len(s) < 5 {
					continue
				}
			}
			ev.AddIdentifier(r.typ, s)
		}
	}
}

// scalarString returns a string or number as a string, "" otherwise.
func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	}
	return ""
}

func checkNumbers(props map[string]any, prefix string, idx int, verr *ValidationError) {
	for _, k := range ecommerceNumbers {
		val, ok := props[k]
		if !ok || val == nil {
			continue
		}
		switch x := val.(type) {
		case int64, float64:
		case string:
			// Accept numbers sent as strings, as many SDKs do, and store
			// them as numbers.
			f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
			if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
				verr.add(idx, prefix+"."+k, "not a number")
				continue
			}
			props[k] = f
		default:
			verr.add(idx, prefix+"."+k, "not a number")
		}
	}
}

// idString reads an id-like field: a string or an integer, trimmed, at most
// MaxIdentifierLen long.
func idString(v *fastjson.Value, key string, idx int, verr *ValidationError) string {
	f := v.Get(key)
	if f == nil {
		return ""
	}
	var s string
	switch f.Type() {
	case fastjson.TypeString:
		s = strings.TrimSpace(string(f.GetStringBytes()))
	case fastjson.TypeNumber:
		s = string(f.MarshalTo(nil))
	case fastjson.TypeNull:
		return ""
	default:
		verr.add(idx, key, "not a string")
		return ""
	}
	if len(s) > MaxIdentifierLen {
		verr.add(idx, key, fmt.Sprintf("longer than %d bytes", MaxIdentifierLen))
		return ""
	}
	return s
}

func nameString(v *fastjson.Value, key string, idx int, verr *ValidationError) string {
	f := v.Get(key)
	if f == nil || f.Type() == fastjson.TypeNull {
		return ""
	}
	if f.Type() != fastjson.TypeString {
		verr.add(idx, key, "not a string")
		return ""
	}
	s := strings.TrimSpace(string(f.GetStringBytes()))
	if len(s) > MaxNameLen {
		verr.add(idx, key, fmt.Sprintf("longer than %d bytes", MaxNameLen))
		return ""
	}
	return s
}

// objectLen returns the number of members of object v, 0 for nil.
func objectLen(v *fastjson.Value) int {
	if v == nil {
		return 0
	}
	o, _ := v.Object()
	return o.Len()
}

func objectField(v *fastjson.Value, key string, idx int, verr *ValidationError) *fastjson.Value {
	f := v.Get(key)
	if f == nil || f.Type() == fastjson.TypeNull {
		return nil
	}
	if f.Type() != fastjson.TypeObject {
		verr.add(idx, key, "not an object")
		return nil
	}
	return f
}

func timeField(v *fastjson.Value, key string, idx int, verr *ValidationError) time.Time {
	f := v.Get(key)
	if f == nil {
		return time.Time{}
	}
	return parseTimeValue(f, key, idx, verr)
}

var (
	errNotTime   = errors.New("not an ISO-8601 date")
	errDateRange = errors.New("date out of range")
)

func parseTimeValue(f *fastjson.Value, key string, idx int, verr *ValidationError) time.Time {
	if f.Type() == fastjson.TypeNull {
		return time.Time{}
	}
	if f.Type() != fastjson.TypeString {
		verr.add(idx, key, errNotTime.Error())
		return time.Time{}
	}
	t, err := ParseTime(string(f.GetStringBytes()))
	if err != nil {
		verr.add(idx, key, err.Error())
	}
	return t
}

// ParseTime parses the ISO-8601 forms SDKs send: RFC 3339 with or without
// fractional seconds, the same without a zone (taken as UTC), and a bare
// date. Years outside 1970–9999 are refused.
func ParseTime(s string) (time.Time, error) {
	for _, layout := range [...]string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05.999999999Z0700", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			// The range applies in UTC, the zone events are kept in, so
			// that every accepted time also encodes as RFC 3339.
			t = t.UTC()
			if t.Year() < 1970 || t.Year() > 9999 {
				return time.Time{}, errDateRange
			}
			return t, nil
		}
	}
	return time.Time{}, errNotTime
}

// fieldPath is the path of the value being converted, such as
// properties.products[0].price, kept as a stack of keys and indexes and
// turned into a string only when an error names it. One serves a whole
// message; toAny pushes and pops as it descends.
type fieldPath struct {
	root  string
	elems [MaxNesting + 2]pathElem
	n     int
}

type pathElem struct {
	key     []byte // object key, valid during the visit of its object
	index   int    // array index when isIndex
	isIndex bool
}

func (p *fieldPath) push(e pathElem) {
	if p.n < len(p.elems) {
		p.elems[p.n] = e
	}
	p.n++
}

func (p *fieldPath) pop() { p.n-- }

func (p *fieldPath) String() string {
	var b strings.Builder
	b.WriteString(p.root)
	for _, e := range p.elems[:min(p.n, len(p.elems))] {
		if e.isIndex {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(e.index))
			b.WriteByte(']')
		} else {
			b.WriteByte('.')
			b.Write(e.key)
		}
	}
	return b.String()
}

// fillMap copies the members of object v (at path p) into dst, converted by
// toAny.
func (m *Mapper) fillMap(dst map[string]any, v *fastjson.Value, p *fieldPath, idx int, verr *ValidationError, depth int) {
	o, _ := v.Object()
	o.Visit(func(k []byte, val *fastjson.Value) {
		p.push(pathElem{key: k})
		dst[string(k)] = m.toAny(val, p, idx, verr, depth+1)
		p.pop()
	})
}

func (m *Mapper) toMap(v *fastjson.Value, p *fieldPath, idx int, verr *ValidationError, depth int) map[string]any {
	o, _ := v.Object()
	out := make(map[string]any, o.Len())
	m.fillMap(out, v, p, idx, verr, depth)
	return out
}

// toAny converts the JSON value v at path p to Go: objects to
// map[string]any, arrays to []any, integers that fit to int64, other
// numbers to float64.
func (m *Mapper) toAny(v *fastjson.Value, p *fieldPath, idx int, verr *ValidationError, depth int) any {
	switch v.Type() {
	case fastjson.TypeString:
		return string(v.GetStringBytes())
	case fastjson.TypeNumber:
		if i, err := v.Int64(); err == nil {
			return i
		}
		f, err := v.Float64()
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			verr.add(idx, p.String(), "number out of range")
			return nil
		}
		return f
	case fastjson.TypeTrue:
		return true
	case fastjson.TypeFalse:
		return false
	case fastjson.TypeNull:
		return nil
	}
	if depth > MaxNesting {
		verr.add(idx, p.String(), fmt.Sprintf("nested deeper than %d levels", MaxNesting))
		return nil
	}
	if v.Type() == fastjson.TypeObject {
		return m.toMap(v, p, idx, verr, depth)
	}
	arr, _ := v.Array()
	out := make([]any, len(arr))
	for i, e := range arr {
		p.push(pathElem{index: i, isIndex: true})
		out[i] = m.toAny(e, p, idx, verr, depth+1)
		p.pop()
	}
	return out
}
