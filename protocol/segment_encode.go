package protocol

import (
	"bytes"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fastjson"

	"github.com/unico-cdp/unico/internal/mpack"
)

// EncodedEvent is one event in its stored form.
type EncodedEvent struct {
	// Channel is the event's Channel.
	Channel string
	// Data is the event in msgpack as MarshalEvent encodes it: it decodes
	// with UnmarshalEvent. Map keys may come in another order than
	// MarshalEvent's (which follows Go's map iteration).
	Data []byte
}

// EncodedBatch holds the events of one request as Mapper.DecodeEncoded
// writes them. Their Data share one buffer, reused by the next
// DecodeEncoded or Reset: keep an EncodedBatch per request (a sync.Pool of
// them serves a server) and copy what must outlive it. The zero value is
// ready to use; it is not safe for concurrent use.
type EncodedBatch struct {
	// Events are the request's events, in request order.
	Events []EncodedEvent

	buf  []byte
	ends []int
	st   encState
}

// Reset empties b, keeping its buffers.
func (b *EncodedBatch) Reset() {
	clear(b.Events)
	b.Events = b.Events[:0]
	b.buf = b.buf[:0]
	b.ends = b.ends[:0]
}

// maxKeptBuffer bounds the buffer an EncodedBatch keeps across Reset, so
// that one huge request does not pin its memory in a pool.
const maxKeptBuffer = 1 << 20

// DecodeEncoded is Decode followed by MarshalEvent of every event, without
// building the events: it walks the parsed JSON once to validate it exactly
// as Decode does (same field errors, in the same order, and nothing stored
// when any message is invalid) and once to write each event's msgpack into
// dst. Every event decodes with UnmarshalEvent into the Event Decode would
// have made. dst is reset first; on error it holds no events.
func (m *Mapper) DecodeEncoded(endpoint Endpoint, body []byte, dst *EncodedBatch) error {
	dst.Reset()
	if cap(dst.buf) > maxKeptBuffer {
		dst.buf = nil
	}
	verr := &ValidationError{}
	p := m.pp.Get()
	defer m.pp.Put(p)
	st := &dst.st
	st.out = dst.buf
	m.parseRequest(p, endpoint, body, verr, func(msg, batchCtx *fastjson.Value, batchSentAt time.Time, typ string, idx int, received time.Time) {
		ch, ok := m.encodeMessage(st, msg, batchCtx, batchSentAt, typ, idx, received, verr)
		if ok {
			dst.buf = st.out
			dst.ends = append(dst.ends, len(dst.buf))
			dst.Events = append(dst.Events, EncodedEvent{Channel: ch})
		}
	})
	st.release()
	if len(verr.Errors) > 0 {
		dst.Reset()
		return verr
	}
	off := 0
	for i, end := range dst.ends {
		dst.Events[i].Data = dst.buf[off:end:end]
		off = end
	}
	return nil
}

// member is one member of a parsed JSON object. Of members sharing a key,
// the last one wins, as when the object is read into a Go map; markDups
// sets skip on the others.
type member struct {
	k    []byte
	v    *fastjson.Value
	skip bool
}

// encState is the scratch space of DecodeEncoded, kept in its EncodedBatch
// between requests.
type encState struct {
	fp fieldPath
	// out is the batch buffer being written; it is handed back to the
	// EncodedBatch after every event.
	out []byte
	// Members of the merged context, top-level traits, context traits
	// and top-level properties of the current message.
	ctx, tr, ct, pr []member
	// stack holds the members of the nested objects being checked or
	// written; each level appends its own and truncates when done.
	stack   []member
	order   []int32
	ids     []Identifier
	consent []consentEntry
	num     []byte
}

type consentEntry struct {
	purpose string
	granted bool
}

// release drops the references into the parser's memory, so that a pooled
// EncodedBatch does not keep a request's body alive.
func (st *encState) release() {
	for _, s := range [...]*[]member{&st.ctx, &st.tr, &st.ct, &st.pr, &st.stack} {
		clear(*s)
		*s = (*s)[:0]
		if cap(*s) > maxKeptMembers {
			*s = nil // one huge object must not pin its scratch in a pool
		}
	}
	if cap(st.order) > maxKeptMembers {
		st.order = nil
	}
	clear(st.ids)
	st.ids = st.ids[:0]
	clear(st.consent)
	st.consent = st.consent[:0]
	st.out = nil
	st.fp = fieldPath{}
}

// maxKeptMembers bounds each member scratch slice kept across requests.
const maxKeptMembers = 1024

// appendMembers appends the members of object v to dst in document order.
func appendMembers(dst []member, v *fastjson.Value) []member {
	o, _ := v.Object()
	o.Visit(func(k []byte, val *fastjson.Value) {
		dst = append(dst, member{k: k, v: val})
	})
	return dst
}

// markDups marks every member of ms that a later member with the same key
// overrides, and returns the number of distinct keys.
func (st *encState) markDups(ms []member) int {
	n := len(ms)
	if len(ms) <= 16 {
		for i := range ms {
			for j := i + 1; j < len(ms); j++ {
				if bytes.Equal(ms[i].k, ms[j].k) {
					ms[i].skip = true
					n--
					break
				}
			}
		}
		return n
	}
	// Sorted by key, then position: in each run of equal keys all but the
	// last are overridden.
	st.order = st.order[:0]
	for i := range ms {
		st.order = append(st.order, int32(i))
	}
	slices.SortFunc(st.order, func(a, b int32) int {
		if c := bytes.Compare(ms[a].k, ms[b].k); c != 0 {
			return c
		}
		return int(a - b)
	})
	for i := 0; i+1 < len(st.order); i++ {
		if bytes.Equal(ms[st.order[i]].k, ms[st.order[i+1]].k) {
			ms[st.order[i]].skip = true
			n--
		}
	}
	return n
}

// lookup returns the winning value of key among ms, or nil.
func lookup(ms []member, key string) *fastjson.Value {
	for i := len(ms) - 1; i >= 0; i-- {
		if string(ms[i].k) == key {
			return ms[i].v
		}
	}
	return nil
}

// objectGet returns the winning (last) value of key in object v, or nil
// when v is not an object or has no such key.
func objectGet(v *fastjson.Value, key string) *fastjson.Value {
	if v == nil || v.Type() != fastjson.TypeObject {
		return nil
	}
	o, _ := v.Object()
	var found *fastjson.Value
	o.Visit(func(k []byte, val *fastjson.Value) {
		if string(k) == key {
			found = val
		}
	})
	return found
}

// number converts JSON number v as Decode does: an int64 when it is an
// integer that fits, a float64 otherwise; ok is false for a number out of
// float64 range (Decode's "number out of range").
func (st *encState) number(v *fastjson.Value) (i int64, f float64, isInt, ok bool) {
	// Int64 fails (and allocates its error) for any text with a fraction
	// or an exponent: skip it for those.
	st.num = v.MarshalTo(st.num[:0])
	if !bytes.ContainsAny(st.num, ".eE") {
		if i, err := v.Int64(); err == nil {
			return i, 0, true, true
		}
	}
	f, err := v.Float64()
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, 0, false, false
	}
	return 0, f, false, true
}

// isNil reports whether Decode turns v, at nesting depth, into a nil: a
// null, a number out of range, or an object or array nested too deep.
func (st *encState) isNil(v *fastjson.Value, depth int) bool {
	switch v.Type() {
	case fastjson.TypeNull:
		return true
	case fastjson.TypeNumber:
		_, _, _, ok := st.number(v)
		return !ok
	case fastjson.TypeObject, fastjson.TypeArray:
		return depth > MaxNesting
	}
	return false
}

// check reports the problems Decode's conversion of v (at path st.fp and
// nesting depth) reports, in the same order.
func (st *encState) check(v *fastjson.Value, idx int, verr *ValidationError, depth int) {
	switch v.Type() {
	case fastjson.TypeNumber:
		if _, _, _, ok := st.number(v); !ok {
			verr.add(idx, st.fp.String(), "number out of range")
		}
		return
	case fastjson.TypeObject, fastjson.TypeArray:
	default:
		return
	}
	if depth > MaxNesting {
		verr.add(idx, st.fp.String(), "nested deeper than "+strconv.Itoa(MaxNesting)+" levels")
		return
	}
	if v.Type() == fastjson.TypeObject {
		st.checkMembers(v, idx, verr, depth)
		return
	}
	arr, _ := v.Array()
	for i, e := range arr {
		st.fp.push(pathElem{index: i, isIndex: true})
		st.check(e, idx, verr, depth+1)
		st.fp.pop()
	}
}

// checkMembers checks the members of object v at depth.
func (st *encState) checkMembers(v *fastjson.Value, idx int, verr *ValidationError, depth int) {
	o, _ := v.Object()
	o.Visit(func(k []byte, val *fastjson.Value) {
		st.fp.push(pathElem{key: k})
		st.check(val, idx, verr, depth+1)
		st.fp.pop()
	})
}

// isEcommerceNumber reports whether key is one of ecommerceNumbers.
func isEcommerceNumber[S ~string | ~[]byte](key S) bool {
	switch string(key) {
	case "revenue", "value", "total", "subtotal", "price", "quantity", "tax", "shipping", "discount":
		return true
	}
	return false
}

// numericString parses a number sent as a string, as checkNumbers accepts
// it.
func numericString(b []byte) (float64, bool) {
	b = bytes.TrimSpace(b)
	// ParseFloat keeps its argument only in the error, which is dropped.
	f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(b), len(b)), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, false
	}
	return f, true
}

// checkNumbers is checkNumbers of segment.go over the winning members of ms
// (values at nesting depth): the e-commerce properties must be numbers or
// numeric strings. The field is prefix, or properties.products[product]
// when product >= 0.
func (st *encState) checkNumbers(ms []member, prefix string, product int, idx int, verr *ValidationError, depth int) {
	for _, k := range ecommerceNumbers {
		val := lookup(ms, k)
		if val == nil || st.isNil(val, depth) {
			continue
		}
		switch val.Type() {
		case fastjson.TypeNumber:
			continue
		case fastjson.TypeString:
			if _, ok := numericString(val.GetStringBytes()); ok {
				continue
			}
		}
		field := prefix
		if product >= 0 {
			field = "properties.products[" + strconv.Itoa(product) + "]"
		}
		verr.add(idx, field+"."+k, "not a number")
	}
}

// scalar is scalarString of segment.go for a JSON value: a string or
// number as a string, "" otherwise.
func (st *encState) scalar(v *fastjson.Value) string {
	if v == nil {
		return ""
	}
	switch v.Type() {
	case fastjson.TypeString:
		return string(v.GetStringBytes())
	case fastjson.TypeNumber:
		i, f, isInt, ok := st.number(v)
		switch {
		case !ok:
			return ""
		case isInt:
			return strconv.FormatInt(i, 10)
		}
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return ""
}

func (st *encState) addIdentifier(t, v string) {
	if t == "" || v == "" {
		return
	}
	for _, id := range st.ids {
		if id.Type == t && id.Value == v {
			return
		}
	}
	st.ids = append(st.ids, Identifier{Type: t, Value: v})
}

// msgView is what encodeMessage learns about one message before writing
// it.
type msgView struct {
	hasCtx    bool
	ctxTraits *fastjson.Value // context.traits when it is an object
	consent   *fastjson.Value // context.consent when it is an object
	hasTraits bool
	hasProps  bool
	category  []byte // a page's category, which overrides properties.category
	typ       string
}

// traitValue returns the merged traits' value of key: the message's traits
// win over its context's.
func (st *encState) traitValue(key string) *fastjson.Value {
	if v := lookup(st.tr, key); v != nil {
		return v
	}
	return lookup(st.ct, key)
}

// encodeMessage is decodeMessage writing msgpack: it checks message v as
// decodeMessage does and, when the request is valid so far, appends the
// event to st.out. It returns the event's channel and whether it wrote it.
func (m *Mapper) encodeMessage(st *encState, v, batchCtx *fastjson.Value, batchSentAt time.Time, typ string, idx int, received time.Time, verr *ValidationError) (string, bool) {
	nerr := len(verr.Errors)
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

	var name, groupID, previousID string
	switch typ {
	case TypeTrack:
		before := len(verr.Errors)
		name = nameString(v, "event", idx, verr)
		if name == "" && len(verr.Errors) == before {
			verr.add(idx, "event", "missing")
		}
	case TypePage, TypeScreen:
		name = nameString(v, "name", idx, verr)
	case TypeGroup:
		before := len(verr.Errors)
		groupID = idString(v, "groupId", idx, verr)
		if groupID == "" && len(verr.Errors) == before {
			verr.add(idx, "groupId", "missing")
		}
	case TypeAlias:
		before := len(verr.Errors)
		previousID = idString(v, "previousId", idx, verr)
		if previousID == "" && len(verr.Errors) == before {
			verr.add(idx, "previousId", "missing")
		}
		if userID == "" && !userErr {
			verr.add(idx, "userId", "missing")
		}
	}

	mv := msgView{typ: typ}
	// Context: the batch's members, then the message's, the later winning.
	ctx := objectField(v, "context", idx, verr)
	st.ctx = st.ctx[:0]
	if ctx != nil || batchCtx != nil {
		mv.hasCtx = true
		st.fp.root = "context"
		for _, c := range [...]*fastjson.Value{batchCtx, ctx} {
			if c != nil {
				st.checkMembers(c, idx, verr, 1)
				st.ctx = appendMembers(st.ctx, c)
			}
		}
		st.markDups(st.ctx)
	}

	var traitsV *fastjson.Value
	switch typ {
	case TypeIdentify, TypeGroup:
		traitsV = objectField(v, "traits", idx, verr)
	}
	st.tr = st.tr[:0]
	if traitsV != nil {
		mv.hasTraits = true
		st.fp.root = "traits"
		st.checkMembers(traitsV, idx, verr, 1)
		st.tr = appendMembers(st.tr, traitsV)
		st.markDups(st.tr)
	}
	// context.traits describe the user on every call.
	st.ct = st.ct[:0]
	if t := lookup(st.ctx, "traits"); t != nil && t.Type() == fastjson.TypeObject {
		mv.ctxTraits = t
		mv.hasTraits = true
		st.ct = appendMembers(st.ct, t)
		st.markDups(st.ct)
	}

	st.pr = st.pr[:0]
	if pv := objectField(v, "properties", idx, verr); pv != nil {
		mv.hasProps = true
		st.fp.root = "properties"
		st.checkMembers(pv, idx, verr, 1)
		st.pr = appendMembers(st.pr, pv)
		st.markDups(st.pr)
		st.checkNumbers(st.pr, "properties", -1, idx, verr, 2)
		if products := lookup(st.pr, "products"); products != nil && products.Type() == fastjson.TypeArray {
			arr, _ := products.Array()
			for i, p := range arr {
				if p.Type() != fastjson.TypeObject {
					continue
				}
				base := len(st.stack)
				st.stack = appendMembers(st.stack, p)
				st.markDups(st.stack[base:])
				st.checkNumbers(st.stack[base:], "", i, idx, verr, 4)
				clear(st.stack[base:])
				st.stack = st.stack[:base]
			}
		}
	}
	if typ == TypePage {
		if c := v.GetStringBytes("category"); len(c) > 0 {
			mv.category = c
			mv.hasProps = true
		}
	}

	// Consent: context.consent.categoryPreferences {purpose: bool}.
	st.consent = st.consent[:0]
	if cons := lookup(st.ctx, "consent"); cons != nil && cons.Type() == fastjson.TypeObject {
		mv.consent = cons
		if prefs := objectGet(cons, "categoryPreferences"); prefs != nil && prefs.Type() == fastjson.TypeObject {
			m.checkConsent(st, prefs, idx, verr)
		}
	}

	channel := m.encChannel(st, v)
	source := m.opts.Source
	if dev := lookup(st.ctx, "device"); dev != nil && dev.Type() == fastjson.TypeObject {
		if id := objectGet(dev, "id"); id != nil && id.Type() == fastjson.TypeString {
			source.Device = strings.TrimSpace(string(id.GetStringBytes()))
		}
	}

	// Times.
	occurred := received
	ts := timeField(v, "timestamp", idx, verr)
	orig := timeField(v, "originalTimestamp", idx, verr)
	sent := batchSentAt
	if sentAtV := v.Get("sentAt"); sentAtV != nil {
		sent = parseTimeValue(sentAtV, "sentAt", idx, verr)
	}
	switch {
	case !ts.IsZero():
		occurred = ts
	case !orig.IsZero() && !sent.IsZero():
		occurred = received.Add(-sent.Sub(orig))
		if y := occurred.Year(); y < 1970 || y > 9999 {
			occurred = orig
		}
	case !orig.IsZero():
		occurred = orig
	}

	if len(verr.Errors) > 0 {
		// This message or an earlier one is invalid: nothing of the
		// request is stored, so nothing needs writing.
		return "", false
	}

	st.ids = st.ids[:0]
	st.addIdentifier(IDUserID, userID)
	st.addIdentifier(IDAnonymousID, anonID)
	m.encIdentifiers(st, &mv, source.Device)

	b := st.out
	fields := 7 // id, ty, ch, src, ids, oa, ra
	nTraits, nProps, nCtx := st.traitCount(), st.propCount(&mv), st.ctxCount(&mv)
	for _, present := range [...]bool{name != "", previousID != "", groupID != "", nTraits > 0, nProps > 0, nCtx > 0, len(st.consent) > 0} {
		if present {
			fields++
		}
	}
	if len(st.ids) == 0 {
		fields--
	}
	b = mpack.AppendMapHeader(b, fields)
	b = mpack.AppendStr(mpack.AppendStr(b, "id"), msgID)
	b = mpack.AppendStr(mpack.AppendStr(b, "ty"), typ)
	if name != "" {
		b = mpack.AppendStr(mpack.AppendStr(b, "n"), name)
	}
	b = mpack.AppendStr(mpack.AppendStr(b, "ch"), channel)
	b = appendSource(mpack.AppendStr(b, "src"), source)
	if len(st.ids) > 0 {
		b = mpack.AppendArrayHeader(mpack.AppendStr(b, "ids"), len(st.ids))
		for _, id := range st.ids {
			b = mpack.AppendMapHeader(b, 2)
			b = mpack.AppendStr(mpack.AppendStr(b, "t"), id.Type)
			b = mpack.AppendStr(mpack.AppendStr(b, "v"), id.Value)
		}
	}
	if previousID != "" {
		b = mpack.AppendStr(mpack.AppendStr(b, "pid"), previousID)
	}
	if groupID != "" {
		b = mpack.AppendStr(mpack.AppendStr(b, "gid"), groupID)
	}
	st.out = b
	if nTraits > 0 {
		st.out = mpack.AppendMapHeader(mpack.AppendStr(st.out, "tr"), nTraits)
		for i := range st.tr {
			if !st.tr[i].skip {
				st.out = mpack.AppendStr(st.out, st.tr[i].k)
				st.writeValue(st.tr[i].v)
			}
		}
		for i := range st.ct {
			if !st.ct[i].skip && lookup(st.tr, string(st.ct[i].k)) == nil {
				st.out = mpack.AppendStr(st.out, st.ct[i].k)
				st.writeValue(st.ct[i].v)
			}
		}
	}
	if nProps > 0 {
		st.writeProperties(&mv, nProps)
	}
	if nCtx > 0 {
		st.out = mpack.AppendMapHeader(mpack.AppendStr(st.out, "cx"), nCtx)
		for i := range st.ctx {
			if m := &st.ctx[i]; !m.skip && !mv.liftedFromContext(m) {
				st.out = mpack.AppendStr(st.out, m.k)
				st.writeValue(m.v)
			}
		}
	}
	if len(st.consent) > 0 {
		st.out = mpack.AppendMapHeader(mpack.AppendStr(st.out, "cs"), len(st.consent))
		for _, c := range st.consent {
			st.out = mpack.AppendBool(mpack.AppendStr(st.out, c.purpose), c.granted)
		}
	}
	st.out = mpack.AppendTime(mpack.AppendStr(st.out, "oa"), occurred)
	st.out = mpack.AppendTime(mpack.AppendStr(st.out, "ra"), received)
	return channel, true
}

// liftedFromContext reports whether context member m became a field of its
// own (traits, consent) and is left out of the event's context.
func (mv *msgView) liftedFromContext(m *member) bool {
	return mv.ctxTraits != nil && m.v == mv.ctxTraits || mv.consent != nil && m.v == mv.consent
}

// checkConsent checks and collects the purposes of categoryPreferences
// object prefs, in sorted key order as decodeMessage does.
func (m *Mapper) checkConsent(st *encState, prefs *fastjson.Value, idx int, verr *ValidationError) {
	base := len(st.stack)
	st.stack = appendMembers(st.stack, prefs)
	st.markDups(st.stack[base:])
	ms := st.stack[base:]
	// Of equal keys only the winner is used: their order does not matter.
	slices.SortFunc(ms, func(a, b member) int { return bytes.Compare(a.k, b.k) })
	for i := range ms {
		p := &ms[i]
		if p.skip {
			continue
		}
		t := p.v.Type()
		if t != fastjson.TypeTrue && t != fastjson.TypeFalse {
			verr.add(idx, "context.consent.categoryPreferences."+string(p.k), "not a boolean")
			continue
		}
		granted := t == fastjson.TypeTrue
		// Purposes differing only in case are one purpose; a denial
		// among them wins.
		purpose := strings.ToLower(string(p.k))
		seen := false
		for j := range st.consent {
			if st.consent[j].purpose == purpose {
				st.consent[j].granted = st.consent[j].granted && granted
				seen = true
				break
			}
		}
		if !seen {
			st.consent = append(st.consent, consentEntry{purpose, granted})
		}
	}
	clear(st.stack[base:])
	st.stack = st.stack[:base]
}

// encChannel is Mapper.channel for the merged context st.ctx and message v.
func (m *Mapper) encChannel(st *encState, v *fastjson.Value) string {
	var c []byte
	ok := false
	if cv := lookup(st.ctx, "channel"); cv != nil && cv.Type() == fastjson.TypeString {
		c, ok = cv.GetStringBytes(), true
	} else if b := v.GetStringBytes("channel"); b != nil {
		c, ok = b, true
	}
	if !ok {
		return m.opts.DefaultChannel
	}
	var lower string
	var buf [16]byte
	if ascii := len(c) <= len(buf) && isASCII(c); ascii {
		for i, x := range c {
			if 'A' <= x && x <= 'Z' {
				x += 'a' - 'A'
			}
			buf[i] = x
		}
		lower = unsafe.String(&buf[0], len(c))
	} else {
		lower = strings.ToLower(string(c))
	}
	switch lower {
	case "browser":
		return ChannelWeb
	case "mobile":
		return ChannelApp
	case ChannelServer:
		return m.opts.DefaultChannel
	case ChannelPOS:
		return ChannelPOS
	case ChannelKiosk:
		return ChannelKiosk
	case ChannelWeb:
		return ChannelWeb
	case ChannelApp:
		return ChannelApp
	case ChannelContactCenter:
		return ChannelContactCenter
	case ChannelIoT:
		return ChannelIoT
	case ChannelImport:
		return ChannelImport
	}
	return m.opts.DefaultChannel
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// encIdentifiers is extractIdentifiers over the parsed message.
func (m *Mapper) encIdentifiers(st *encState, mv *msgView, device string) {
	if e := st.traitValue("email"); e != nil && e.Type() == fastjson.TypeString {
		if s, valid := NormalizeEmail(string(e.GetStringBytes())); valid && len(s) <= MaxIdentifierLen {
			st.addIdentifier(IDEmail, s)
		}
	}
	if s := st.scalar(st.traitValue("phone")); s != "" {
		if p, _ := NormalizePhone(s, m.opts.DefaultCountryCode); len(p) >= 5 && len(p) <= MaxIdentifierLen {
			st.addIdentifier(IDPhone, p)
		}
	}
	for _, s := range [...]string{st.scalar(st.traitValue("loyalty_id")), st.propScalar(mv, "loyalty_id")} {
		if s = strings.TrimSpace(s); s != "" && len(s) <= MaxIdentifierLen {
			st.addIdentifier(IDLoyaltyID, s)
		}
	}
	if device != "" && len(device) <= MaxIdentifierLen {
		st.addIdentifier(IDDeviceID, device)
	}
	for _, r := range m.rules {
		s := strings.TrimSpace(st.ruleValue(mv, r.path))
		if s == "" || len(s) > MaxIdentifierLen {
			continue
		}
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
		st.addIdentifier(r.typ, s)
	}
}

// propScalar is scalarString of the event's properties[key], after the
// e-commerce numbers and a page's category have been applied.
func (st *encState) propScalar(mv *msgView, key string) string {
	if mv.category != nil && key == "category" {
		return string(mv.category)
	}
	v := lookup(st.pr, key)
	if v != nil && v.Type() == fastjson.TypeString && isEcommerceNumber(key) {
		f, _ := numericString(v.GetStringBytes())
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return st.scalar(v)
}

// ruleValue is the string or number an identifier rule's path leads to in
// the event Decode would make, "" if none.
func (st *encState) ruleValue(mv *msgView, path []string) string {
	if len(path) < 2 {
		return "" // the whole traits, properties or context object
	}
	key := path[1]
	var v *fastjson.Value
	switch path[0] {
	case "traits":
		v = st.traitValue(key)
	case "properties":
		if len(path) == 2 {
			return st.propScalar(mv, key)
		}
		if mv.category != nil && key == "category" {
			return "" // a string has no members
		}
		v = lookup(st.pr, key)
	case "context":
		v = lookup(st.ctx, key)
		if v != nil && (v == mv.ctxTraits || v == mv.consent) {
			return "" // lifted out of the context
		}
	}
	for _, k := range path[2:] {
		if v = objectGet(v, k); v == nil {
			return ""
		}
	}
	return st.scalar(v)
}

func (st *encState) traitCount() int {
	n := 0
	for i := range st.tr {
		if !st.tr[i].skip {
			n++
		}
	}
	for i := range st.ct {
		if !st.ct[i].skip && lookup(st.tr, string(st.ct[i].k)) == nil {
			n++
		}
	}
	return n
}

func (st *encState) propCount(mv *msgView) int {
	n := 0
	for i := range st.pr {
		if !st.pr[i].skip {
			n++
		}
	}
	if mv.category != nil && lookup(st.pr, "category") == nil {
		n++
	}
	return n
}

func (st *encState) ctxCount(mv *msgView) int {
	n := 0
	for i := range st.ctx {
		if m := &st.ctx[i]; !m.skip && !mv.liftedFromContext(m) {
			n++
		}
	}
	return n
}

func appendSource(b []byte, s Source) []byte {
	n := 0
	for _, f := range [...]string{s.Tenant, s.Site, s.Edge, s.Device} {
		if f != "" {
			n++
		}
	}
	b = mpack.AppendMapHeader(b, n)
	for i, f := range [...]string{s.Tenant, s.Site, s.Edge, s.Device} {
		if f != "" {
			b = mpack.AppendStr(mpack.AppendStr(b, [...]string{"tn", "st", "ed", "dv"}[i]), f)
		}
	}
	return b
}

// writeProperties writes the event's properties: the message's, with
// e-commerce numbers sent as strings stored as numbers (in products too)
// and a page's category.
func (st *encState) writeProperties(mv *msgView, n int) {
	st.out = mpack.AppendMapHeader(mpack.AppendStr(st.out, "pr"), n)
	for i := range st.pr {
		p := &st.pr[i]
		if p.skip {
			continue
		}
		st.out = mpack.AppendStr(st.out, p.k)
		switch {
		case mv.category != nil && string(p.k) == "category":
			st.out = mpack.AppendStr(st.out, mv.category)
		case string(p.k) == "products" && p.v.Type() == fastjson.TypeArray:
			arr, _ := p.v.Array()
			st.out = mpack.AppendArrayHeader(st.out, len(arr))
			for _, e := range arr {
				if e.Type() == fastjson.TypeObject {
					st.writeObject(e, true)
				} else {
					st.writeValue(e)
				}
			}
		default:
			st.writeMember(p.k, p.v, true)
		}
	}
	if mv.category != nil && lookup(st.pr, "category") == nil {
		st.out = mpack.AppendStr(mpack.AppendStr(st.out, "category"), mv.category)
	}
}

// writeMember writes the value of member k; with numbers, an e-commerce
// number sent as a string is written as the number.
func (st *encState) writeMember(k []byte, v *fastjson.Value, numbers bool) {
	if numbers && v.Type() == fastjson.TypeString && isEcommerceNumber(k) {
		f, _ := numericString(v.GetStringBytes())
		st.out = mpack.AppendFloat64(st.out, f)
		return
	}
	st.writeValue(v)
}

// writeValue writes v as Decode's conversion of it encodes: objects as
// maps of their winning members, integers that fit as int64, other numbers
// as float64. v has passed check.
func (st *encState) writeValue(v *fastjson.Value) {
	switch v.Type() {
	case fastjson.TypeString:
		st.out = mpack.AppendStr(st.out, v.GetStringBytes())
	case fastjson.TypeNumber:
		if i, f, isInt, _ := st.number(v); isInt {
			st.out = mpack.AppendInt64(st.out, i)
		} else {
			st.out = mpack.AppendFloat64(st.out, f)
		}
	case fastjson.TypeTrue:
		st.out = mpack.AppendBool(st.out, true)
	case fastjson.TypeFalse:
		st.out = mpack.AppendBool(st.out, false)
	case fastjson.TypeNull:
		st.out = mpack.AppendNil(st.out)
	case fastjson.TypeObject:
		st.writeObject(v, false)
	case fastjson.TypeArray:
		arr, _ := v.Array()
		st.out = mpack.AppendArrayHeader(st.out, len(arr))
		for _, e := range arr {
			st.writeValue(e)
		}
	}
}

// writeObject writes object v; with numbers, its e-commerce numbers sent
// as strings are written as numbers.
func (st *encState) writeObject(v *fastjson.Value, numbers bool) {
	base := len(st.stack)
	st.stack = appendMembers(st.stack, v)
	n := st.markDups(st.stack[base:])
	st.out = mpack.AppendMapHeader(st.out, n)
	for i := base; i < len(st.stack); i++ {
		// Re-read st.stack: nested writes may have grown it.
		if p := st.stack[i]; !p.skip {
			st.out = mpack.AppendStr(st.out, p.k)
			st.writeMember(p.k, p.v, numbers)
		}
	}
	clear(st.stack[base:])
	st.stack = st.stack[:base]
}
