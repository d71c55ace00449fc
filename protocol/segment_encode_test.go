package protocol

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"pgregory.net/rapid"
)

// diffMapper is the mapper of the differential tests: the golden options
// plus identifier rules into every part of a message that Decode changes
// (merged traits, converted e-commerce numbers, a page's category, the
// context minus its lifted traits and consent).
func diffMapper(t testing.TB) *Mapper {
	t.Helper()
	now := func() time.Time { return goldenNow }
	m, err := NewMapper(MapOptions{
		Source:             Source{Tenant: "acme", Site: "store-12", Edge: "edge-1"},
		DefaultChannel:     ChannelPOS,
		DefaultCountryCode: "39",
		IDs:                NewIDGen(now),
		Now:                now,
		Rules: []IdentifierRule{
			{Path: "traits.crm_id", Type: "crm_id"},
			{Path: "traits.alt_phone", Type: IDPhone},
			{Path: "properties.alt_email", Type: IDEmail},
			{Path: "properties.price", Type: "price"},
			{Path: "properties.category", Type: "category"},
			{Path: "properties.category.id", Type: "category_id"},
			{Path: "properties.card.number", Type: "card"},
			{Path: "properties.products.price", Type: "products"},
			{Path: "context.kiosk.badge", Type: "badge"},
			{Path: "context.traits.email", Type: "ctx_email"},
			{Path: "context.consent", Type: "consent"},
			{Path: "context.device.id", Type: "device"},
			{Path: "context.channel", Type: "channel"},
			{Path: "traits", Type: "whole"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// diffDecode decodes body with Decode plus MarshalEvent and with
// DecodeEncoded, and fails unless both give the same error, or events that
// decode with UnmarshalEvent to equal events of the same encoded size.
func diffDecode(t fataler, m *Mapper, ep Endpoint, body []byte, eb *EncodedBatch) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	evs, errOld := m.Decode(ep, body, nil)
	errNew := m.DecodeEncoded(ep, body, eb)
	if (errOld == nil) != (errNew == nil) {
		t.Fatalf("Decode error %v, DecodeEncoded error %v", errOld, errNew)
	}
	if errOld != nil {
		if a, b := formatValidationError(errOld), formatValidationError(errNew); a != b {
			t.Fatalf("errors differ:\nDecode:\n%s\nDecodeEncoded:\n%s", a, b)
		}
		if len(eb.Events) != 0 {
			t.Fatalf("DecodeEncoded returned %d events with an error", len(eb.Events))
		}
		return
	}
	if len(evs) != len(eb.Events) {
		t.Fatalf("Decode made %d events, DecodeEncoded %d", len(evs), len(eb.Events))
	}
	for i := range evs {
		old, err := MarshalEvent(&evs[i])
		if err != nil {
			t.Fatalf("MarshalEvent: %v", err)
		}
		got := eb.Events[i]
		if got.Channel != evs[i].Channel {
			t.Fatalf("event %d: channel %q, Decode's %q", i, got.Channel, evs[i].Channel)
		}
		// Equal up to map order, so equal in length: a different header
		// form or number type would show here even where it decodes alike.
		if len(got.Data) != len(old) {
			t.Fatalf("event %d: %d bytes, MarshalEvent's %d\n got %x\nwant %x", i, len(got.Data), len(old), got.Data, old)
		}
		var want, have Event
		if err := UnmarshalEvent(old, &want); err != nil {
			t.Fatalf("event %d: UnmarshalEvent(MarshalEvent): %v", i, err)
		}
		if err := UnmarshalEvent(got.Data, &have); err != nil {
			t.Fatalf("event %d: UnmarshalEvent(DecodeEncoded): %v\n%x", i, err, got.Data)
		}
		if want.ID != have.ID {
			// Both generated: each call draws its own.
			if _, ok := IDTime(want.ID); !ok {
				t.Fatalf("event %d: ids %q and %q", i, want.ID, have.ID)
			}
			if ts, ok := IDTime(have.ID); !ok || !ts.Equal(goldenNow.Truncate(time.Millisecond)) {
				t.Fatalf("event %d: generated id %q: IDTime %v %t", i, have.ID, ts, ok)
			}
			have.ID = want.ID
		}
		if diff := cmp.Diff(want, have); diff != "" {
			t.Fatalf("event %d differs (-Decode +DecodeEncoded):\n%s", i, diff)
		}
		if same, diff := sameOnWire(&want, &have); !same {
			t.Fatalf("event %d differs on the wire:\n%s", i, diff)
		}
	}
}

func TestDecodeEncodedGolden(t *testing.T) {
	var eb EncodedBatch // reused across cases, as a server reuses it
	for _, tc := range goldenCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			diffDecode(t, goldenMapper(t, tc.dir), tc.endpoint, tc.input, &eb)
			diffDecode(t, diffMapper(t), tc.endpoint, tc.input, &eb)
		})
	}
}

func TestDecodeEncodedCases(t *testing.T) {
	deep := func(n int, open, close string) string {
		return `{"type":"track","userId":"u","event":"e","properties":{"x":` + strings.Repeat(open, n) + `1` + strings.Repeat(close, n) + `}}`
	}
	tests := []struct {
		name string
		ep   Endpoint
		body string
	}{
		{"duplicate keys everywhere", EndpointBatch, `{"context":{"channel":"web","a":1,"a":2,"device":{"id":"d1","id":" d2 "}},"batch":[
			{"type":"identify","userId":"u","userId":"v","traits":{"email":"A@B.CO","email":"c@d.eu","x":{"y":1,"y":[1,2]}},
			 "context":{"traits":{"email":"ctx@x.io","crm_id":7,"crm_id":8},"a":3,"channel":"KIOSK","channel":"Mobile"}}]}`},
		{"many duplicate keys", TypeTrack, func() string {
			var b strings.Builder
			b.WriteString(`{"userId":"u","event":"e","properties":{`)
			for i := range 60 {
				fmt.Fprintf(&b, `"k%d":%d,`, i%23, i)
			}
			b.WriteString(`"price":"  7.5 ","price":" 8.25"}}`)
			return b.String()
		}()},
		{"numbers", TypeTrack, `{"userId":"u","event":"e","properties":{"a":9223372036854775807,"b":9223372036854775808,"c":-9223372036854775808,
			"d":-0,"e":0.0,"f":1e308,"g":-1.5E-3,"h":12345678901234567890,"i":1E2,"j":[0,-1,2.5,1e5],"revenue":"0x1p-2","tax":" 3 "}}`},
		{"number out of range", TypeTrack, `{"userId":"u","event":"e","properties":{"a":1e400,"price":-1e999}}`},
		{"nan and inf", TypeTrack, `{"userId":"u","event":"e","properties":{"a":NaN,"b":-Inf}}`},
		{"unicode escapes", TypeIdentify, `{"userId":"\u00fcser","traits":{"n\u00e4me":"\ud83d\ude00 \u2028 \n \"q\"","bad":"\ud800","email":"\u00c9MILE@EXAMPLE.FR"},"context":{"channel":"\u212Aiosk"}}`},
		{"nulls", TypeTrack, `{"userId":"u","anonymousId":null,"messageId":null,"event":"e","properties":{"price":null,"x":null,"products":[null,{"price":null}]},"context":null,"timestamp":null}`},
		{"nesting at the limit", TypeTrack, deep(15, `{"a":`, `}`)},
		{"nesting over the limit", TypeTrack, deep(16, `{"a":`, `}`)},
		{"arrays at the limit", TypeTrack, deep(15, `[`, `]`)},
		{"arrays over the limit", TypeTrack, deep(16, `[`, `]`)},
		{"products", TypeTrack, `{"userId":"u","event":"Order","properties":{"products":[{"price":"1.5","quantity":"2","sku":"s","price":"3"},"x",[{"price":"not nested"}],{"price":true}]}}`},
		{"products bad", TypeTrack, `{"userId":"u","event":"Order","properties":{"products":[{"price":"x"},{"total":[]}],"revenue":{}}}`},
		{"page category", TypePage, `{"userId":"u","name":"Home","category":"Docs","properties":{"category":{"id":5},"price":"2"}}`},
		{"page category only", TypePage, `{"userId":"u","category":"Docs"}`},
		{"page empty category", TypePage, `{"userId":"u","category":"","properties":{"category":"kept"}}`},
		{"consent", TypeTrack, `{"userId":"u","event":"e","context":{"consent":{"categoryPreferences":{"Marketing":true,"marketing":false,"ads":true,"ads":false,"b":true}},"x":1}}`},
		{"consent not boolean", TypeTrack, `{"userId":"u","event":"e","context":{"consent":{"categoryPreferences":{"z":1,"a":"yes","m":1e400,"m":true}}}}`},
		{"consent not an object", TypeTrack, `{"userId":"u","event":"e","context":{"consent":"all","traits":["x"]}}`},
		{"empty objects", TypeIdentify, `{"userId":"u","traits":{},"context":{"traits":{},"consent":{}}}`},
		{"batch context only", EndpointBatch, `{"context":{"traits":{"email":"b@c.de"},"kiosk":{"badge":" B-1 "}},"batch":[{"type":"track","anonymousId":"a","event":"e"},{"type":"alias","userId":"u","previousId":"p","context":{"traits":{"phone":3331234567}}}]}`},
		{"batch context errors repeat per message", EndpointBatch, `{"context":{"x":1e400},"batch":[{"type":"track","userId":"u","event":"e"},{"type":"track","userId":"u"}]}`},
		{"rules", TypeIdentify, `{"userId":"u","traits":{"crm_id":1.50,"alt_phone":"0039 333 123 4567"},"properties":{"price":"1"},"context":{"traits":{"email":"x@y.zz"},"kiosk":{"badge":12},"device":{"id":7}}}`},
		{"rules on properties", TypeTrack, `{"userId":"u","event":"e","properties":{"price":" 0019.990 ","alt_email":" Bob@Example.org ","card":{"number":4000123412341234},"products":[{"price":"1"}]}}`},
		{"loyalty", TypeGroup, `{"userId":"u","groupId":"g","traits":{"loyalty_id":" L1 "},"properties":{"loyalty_id":2}}`},
		{"top-level channel", TypeScreen, `{"userId":"u","name":"S","channel":"browser","context":{"channel":5}}`},
		{"times", EndpointBatch, `{"sentAt":"2026-01-02T03:04:10Z","batch":[{"type":"track","userId":"u","event":"e","originalTimestamp":"2026-01-02T03:04:00Z"},{"type":"track","userId":"u","event":"e","timestamp":"2300-01-01","sentAt":null}]}`},
		{"long strings", TypeTrack, `{"userId":"u","event":"` + strings.Repeat("é", 200) + `","properties":{"s":"` + strings.Repeat("x", 70000) + `"}}`},
		{"many keys", TypeTrack, func() string {
			var b strings.Builder
			b.WriteString(`{"userId":"u","event":"e","properties":{`)
			for i := range 70000 {
				if i > 0 {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, `"%d":0`, i)
			}
			b.WriteString(`}}`)
			return b.String()
		}()},
	}
	m := diffMapper(t)
	big, err := NewMapper(MapOptions{MaxMessageBytes: MaxMessageBytesLimit, MaxBatchBytes: 4 << 20, Rules: m.opts.Rules, Now: m.opts.Now})
	if err != nil {
		t.Fatal(err)
	}
	var eb EncodedBatch
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			diffDecode(t, m, tt.ep, []byte(tt.body), &eb)
			diffDecode(t, big, tt.ep, []byte(tt.body), &eb)
		})
	}
}

// TestDecodeEncodedMatchesBytes checks that with maps of at most one key,
// whose order cannot differ, the direct encoding is MarshalEvent's byte for
// byte.
func TestDecodeEncodedMatchesBytes(t *testing.T) {
	m := diffMapper(t)
	body := []byte(`{"batch":[{"type":"identify","messageId":"m1","userId":"u","traits":{"email":"A@b.co"},"context":{"channel":"kiosk"},"timestamp":"2026-01-02T03:04:05.5Z"},
		{"type":"track","messageId":"m2","anonymousId":"a","event":"E","properties":{"price":"2.5"},"context":{"device":{"id":"d"}}}]}`)
	evs, err := m.Decode(EndpointBatch, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	var eb EncodedBatch
	if err := m.DecodeEncoded(EndpointBatch, body, &eb); err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		want, err := MarshalEvent(&evs[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(eb.Events[i].Data, want) {
			t.Errorf("event %d:\n got %x\nwant %x", i, eb.Events[i].Data, want)
		}
	}
}

// TestDecodeEncodedResetsOnError checks that a failing request leaves no
// events behind, also when an earlier request filled the batch.
func TestDecodeEncodedResetsOnError(t *testing.T) {
	m := diffMapper(t)
	var eb EncodedBatch
	if err := m.DecodeEncoded(EndpointBatch, []byte(`{"batch":[{"type":"track","userId":"u","event":"e"}]}`), &eb); err != nil || len(eb.Events) != 1 {
		t.Fatalf("good batch: %d events, %v", len(eb.Events), err)
	}
	err := m.DecodeEncoded(EndpointBatch, []byte(`{"batch":[{"type":"track","userId":"u","event":"e"},{"type":"track","userId":"u"}]}`), &eb)
	if err == nil || len(eb.Events) != 0 {
		t.Fatalf("bad batch: %d events, %v", len(eb.Events), err)
	}
	if got, want := err.Error(), "batch[1].event: missing"; got != want {
		t.Fatalf("error %q, want %q", got, want)
	}
}

// genSegmentJSON draws the JSON text of Segment-like requests: known and
// random keys (sometimes repeated), strings with escapes, integers at the
// int64 boundaries, floats, numbers as strings, nulls, and nesting around
// MaxNesting.
func genSegmentJSON(t *rapid.T) string {
	var b strings.Builder
	g := &jsonGen{t: t, b: &b}
	if rapid.Bool().Draw(t, "batch") {
		b.WriteString(`{`)
		if rapid.IntRange(0, 3).Draw(t, "batch ctx") == 0 {
			b.WriteString(`"context":`)
			g.object(2, "context")
			b.WriteByte(',')
		}
		if rapid.IntRange(0, 4).Draw(t, "batch sentAt") == 0 {
			b.WriteString(`"sentAt":`)
			g.scalarFor("sentAt")
			b.WriteByte(',')
		}
		b.WriteString(`"batch":[`)
		for i := range rapid.IntRange(1, 6).Draw(t, "messages") {
			if i > 0 {
				b.WriteByte(',')
			}
			g.message()
		}
		b.WriteString(`]}`)
	} else {
		g.message()
	}
	return b.String()
}

type jsonGen struct {
	t *rapid.T
	b *strings.Builder
}

var (
	genTypes       = []string{TypeTrack, TypeIdentify, TypePage, TypeScreen, TypeGroup, TypeAlias}
	genMessageKeys = []string{"userId", "anonymousId", "messageId", "event", "name", "category", "groupId", "previousId",
		"traits", "properties", "context", "timestamp", "originalTimestamp", "sentAt", "channel"}
	genObjectKeys = []string{"email", "phone", "loyalty_id", "crm_id", "alt_phone", "alt_email", "traits", "consent",
		"categoryPreferences", "Marketing", "marketing", "analytics", "device", "id", "channel", "products", "price", "revenue",
		"quantity", "total", "category", "card", "number", "kiosk", "badge", "a", "b", "n\\u00e4me", "\\u0061"}
	genStrings = []string{"", " ", "track", "Web", "BROWSER", "mobile", "server", "kiosk", "iot", "Import", "contact_center", "pos", "APP", "fax", "19.99", " 12 ", "1e400",
		"abc", " Ana@Example.COM ", "x@y", "+39 333 1234567", "0039 02 1234 5678", "3331234567", "2026-01-02T03:04:05Z",
		"2026-01-02", "1969-12-31", "\\u00e9\\u00e8", "\\ud83d\\ude00", "\\ud800", "tab\\tnew\\nline", "q\\\"uote"}
	genNumbers = []string{"0", "-0", "1", "-1", "42", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
		"-9223372036854775809", "1.5", "-2.25", "1e3", "1E-7", "0.1", "123456789012345678901234567890", "1.0", "3331234567"}
)

func (g *jsonGen) str(label string) {
	if rapid.IntRange(0, 4).Draw(g.t, label+" kind") == 0 {
		// Arbitrary text, escaped by strconv (valid JSON for ASCII-only
		// escapes; invalid UTF-8 passes through as bytes).
		s := rapid.String().Draw(g.t, label)
		g.b.WriteString(strconv.QuoteToASCII(s))
		return
	}
	g.b.WriteByte('"')
	g.b.WriteString(rapid.SampledFrom(genStrings).Draw(g.t, label))
	g.b.WriteByte('"')
}

func (g *jsonGen) scalar(label string) {
	switch rapid.IntRange(0, 9).Draw(g.t, label+" scalar") {
	case 0, 1, 2, 3:
		g.str(label)
	case 4, 5, 6:
		g.b.WriteString(rapid.SampledFrom(genNumbers).Draw(g.t, label+" number"))
	case 7:
		g.b.WriteString(rapid.SampledFrom([]string{"true", "false"}).Draw(g.t, label+" bool"))
	case 8:
		g.b.WriteString("null")
	case 9:
		// Rare trouble: out-of-range numbers.
		g.b.WriteString(rapid.SampledFrom([]string{"1e400", "-1e309", "1"}).Draw(g.t, label+" big"))
	}
}

// scalarFor writes a value fit for a top-level message field, mostly valid.
func (g *jsonGen) scalarFor(key string) {
	switch key {
	case "timestamp", "originalTimestamp", "sentAt":
		g.b.WriteString(rapid.SampledFrom([]string{`"2026-01-02T03:04:05Z"`, `"2026-01-02T03:04:05.123+02:00"`, `"2026-01-02"`, `null`, `"2025-12-31 23:59:59"`, `"bad"`}).Draw(g.t, key))
	case "userId", "anonymousId", "messageId", "groupId", "previousId":
		g.b.WriteString(rapid.SampledFrom([]string{`"u-1"`, `" u-2 "`, `"u-1"`, `17`, `1.5`, `""`, `null`, `"m-` + strconv.Itoa(rapid.IntRange(0, 9).Draw(g.t, "id")) + `"`}).Draw(g.t, key))
	case "event", "name":
		g.b.WriteString(rapid.SampledFrom([]string{`"Order Completed"`, `" Viewed "`, `""`, `"\u00e9v"`}).Draw(g.t, key))
	default:
		g.scalar(key)
	}
}

func (g *jsonGen) key(label string) {
	if rapid.IntRange(0, 9).Draw(g.t, label+" random key") == 0 {
		g.b.WriteString(strconv.QuoteToASCII(rapid.StringN(0, 6, -1).Draw(g.t, label)))
		return
	}
	g.b.WriteByte('"')
	g.b.WriteString(rapid.SampledFrom(genObjectKeys).Draw(g.t, label))
	g.b.WriteByte('"')
}

func (g *jsonGen) value(depth int, label string) {
	if depth <= 0 {
		g.scalar(label)
		return
	}
	switch rapid.IntRange(0, 9).Draw(g.t, label+" value") {
	case 0, 1:
		g.object(depth-1, label)
	case 2:
		g.array(depth-1, label)
	case 3:
		// Occasionally a deep chain, around MaxNesting.
		if rapid.IntRange(0, 5).Draw(g.t, label+" deep?") == 0 {
			n := rapid.IntRange(MaxNesting-3, MaxNesting+1).Draw(g.t, label+" deep")
			g.b.WriteString(strings.Repeat(`{"a":[`, n/2) + "1" + strings.Repeat(`]}`, n/2))
			return
		}
		g.scalar(label)
	default:
		g.scalar(label)
	}
}

func (g *jsonGen) object(depth int, label string) {
	g.b.WriteByte('{')
	for i := range rapid.IntRange(0, 6).Draw(g.t, label+" members") {
		if i > 0 {
			g.b.WriteByte(',')
		}
		g.key(label + " key")
		g.b.WriteByte(':')
		g.value(depth, label)
	}
	g.b.WriteByte('}')
}

func (g *jsonGen) array(depth int, label string) {
	g.b.WriteByte('[')
	for i := range rapid.IntRange(0, 4).Draw(g.t, label+" elems") {
		if i > 0 {
			g.b.WriteByte(',')
		}
		g.value(depth, label)
	}
	g.b.WriteByte(']')
}

func (g *jsonGen) message() {
	g.b.WriteString(`{"type":"` + rapid.SampledFrom(genTypes).Draw(g.t, "type") + `","userId":"u"`)
	for range rapid.IntRange(0, 8).Draw(g.t, "fields") {
		k := rapid.SampledFrom(genMessageKeys).Draw(g.t, "field")
		g.b.WriteString(`,"` + k + `":`)
		switch k {
		case "traits", "properties", "context":
			g.object(3, k)
		default:
			g.scalarFor(k)
		}
	}
	g.b.WriteByte('}')
}

// TestRapidDecodeEncoded checks DecodeEncoded against Decode on generated
// Segment requests sent to every endpoint.
func TestRapidDecodeEncoded(t *testing.T) {
	m := diffMapper(t)
	var eb EncodedBatch
	valid := 0
	rapid.Check(t, func(t *rapid.T) {
		body := genSegmentJSON(t)
		ep := EndpointBatch
		if !strings.HasPrefix(body, `{"batch"`) && !strings.HasPrefix(body, `{"context"`) && !strings.HasPrefix(body, `{"sentAt"`) {
			ep = rapid.SampledFrom(fuzzEndpoints[1:]).Draw(t, "endpoint")
		}
		diffDecode(t, m, ep, []byte(body), &eb)
		if len(eb.Events) > 0 {
			valid++
		}
	})
	// The generator must reach the success path, not only errors.
	if valid == 0 {
		t.Fatal("no generated request was valid")
	}
	t.Logf("%d valid requests", valid)
}

// FuzzDecodeEncoded checks DecodeEncoded against Decode on arbitrary
// bodies.
func FuzzDecodeEncoded(f *testing.F) {
	for _, tc := range goldenCases(f) {
		f.Add(tc.input, endpointByte(tc.endpoint))
	}
	f.Add([]byte(`{"context":{"traits":{"email":"b@c.de"},"consent":{"categoryPreferences":{"A":true,"a":false}}},"batch":[{"type":"page","userId":1,"category":"c","properties":{"category":1,"products":[{"price":"2"}]},"context":{"channel":"Browser"}}]}`), byte(0))
	m := diffMapper(f)
	var eb EncodedBatch
	f.Fuzz(func(t *testing.T, body []byte, epb byte) {
		diffDecode(t, m, fuzzEndpoints[int(epb)%len(fuzzEndpoints)], body, &eb)
	})
}

// TestDecodeEncodedAllocs bounds the allocations of the direct path for a
// batch of 100 typical track messages: per event only the strings an event
// needs as Go strings (ids, identifiers), none for maps.
func TestDecodeEncodedAllocs(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts differ under coverage and the race detector")
	}
	m := goldenMapper(t, "")
	body := edgeBatch(100)
	var eb EncodedBatch
	if err := m.DecodeEncoded(EndpointBatch, body, &eb); err != nil {
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(20, func() {
		if err := m.DecodeEncoded(EndpointBatch, body, &eb); err != nil || len(eb.Events) != 100 {
			t.Fatalf("%d events, %v", len(eb.Events), err)
		}
	})
	// Measured: 4 per event (generated id, user id, event name, device
	// id) and one per request.
	t.Logf("%.2f allocations per event", allocs/100)
	if perEvent := allocs / 100; perEvent > 5 {
		t.Errorf("%.1f allocations per event, want at most 5", perEvent)
	}
}
