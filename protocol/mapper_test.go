package protocol

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestDecodeFieldErrors(t *testing.T) {
	bigMessage := `{"type":"track","userId":"u","event":"E","properties":{"x":"` + strings.Repeat("x", DefaultMaxMessageBytes) + `"}}`
	tests := []struct {
		name     string
		endpoint Endpoint
		body     string
		want     []FieldError
		tooLarge bool
	}{
		{
			name:     "several bad messages in a batch",
			endpoint: EndpointBatch,
			body: `{"batch":[
				{"type":"track","userId":"ok","event":"Fine"},
				{"type":"track","anonymousId":"a"},
				{"type":"group","userId":"u"},
				{"type":"alias","userId":"u"},
				{"type":"identify"},
				{"type":"page","userId":"u","timestamp":"tomorrow"},
				{"type":"identify","userId":"u","traits":7},
				{"type":"track","userId":"u","event":"E","properties":{"revenue":"abc","products":[{"price":"x"}]}},
				{"type":"fly","userId":"u"},
				"str",
				{"type":"track","userId":"u","event":"E","context":{"consent":{"categoryPreferences":{"ads":"yes"}}}}
			]}`,
			want: []FieldError{
				{1, "event", "missing"},
				{2, "groupId", "missing"},
				{3, "previousId", "missing"},
				{4, "userId", "userId or anonymousId is required"},
				{5, "timestamp", "not an ISO-8601 date"},
				{6, "traits", "not an object"},
				{7, "properties.revenue", "not a number"},
				{7, "properties.products[0].price", "not a number"},
				{8, "type", `unknown type "fly"`},
				{9, "", "not an object"},
				{10, "context.consent.categoryPreferences.ads", "not a boolean"},
			},
		},
		{
			name:     "single message with every problem",
			endpoint: TypeTrack,
			body:     `{"userId":7.5e400,"event":"","properties":{"revenue":"abc"},"timestamp":"x","originalTimestamp":3}`,
			want: []FieldError{
				{-1, "event", "missing"},
				{-1, "properties.revenue", "not a number"},
				{-1, "timestamp", "not an ISO-8601 date"},
				{-1, "originalTimestamp", "not an ISO-8601 date"},
			},
		},
		{
			name:     "alias missing both ids",
			endpoint: TypeAlias,
			body:     `{"anonymousId":"a"}`,
			want:     []FieldError{{-1, "previousId", "missing"}, {-1, "userId", "missing"}},
		},
		{
			name:     "oversized message among good ones",
			endpoint: EndpointBatch,
			body:     `{"batch":[{"type":"track","userId":"u","event":"E"},` + bigMessage + `,{"type":"track"}]}`,
			want: []FieldError{
				{1, "", fmt.Sprintf("message of %d bytes exceeds the limit of %d", len(bigMessage), DefaultMaxMessageBytes)},
				{2, "userId", "userId or anonymousId is required"},
				{2, "event", "missing"},
			},
			tooLarge: true,
		},
		{
			name:     "too many messages",
			endpoint: EndpointBatch,
			body:     `{"batch":[` + strings.Repeat(`0,`, MaxBatchEvents) + `0]}`,
			want:     []FieldError{{-1, "batch", fmt.Sprintf("%d messages exceed the limit of %d", MaxBatchEvents+1, MaxBatchEvents)}},
			tooLarge: true,
		},
	}
	m := goldenMapper(t, "")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := []Event{{ID: "kept"}}
			evs, err := m.Decode(tt.endpoint, []byte(tt.body), dst)
			var verr *ValidationError
			if !errors.As(err, &verr) {
				t.Fatalf("err = %v, want *ValidationError", err)
			}
			if diff := cmp.Diff(tt.want, verr.Errors); diff != "" {
				t.Errorf("field errors (-want +got):\n%s", diff)
			}
			if verr.TooLarge != tt.tooLarge {
				t.Errorf("TooLarge = %t, want %t", verr.TooLarge, tt.tooLarge)
			}
			if len(evs) != 1 || evs[0].ID != "kept" {
				t.Errorf("dst changed on error: %v", evs)
			}
		})
	}
}

func TestDecodeErrorCap(t *testing.T) {
	m := goldenMapper(t, "")
	body := `{"batch":[` + strings.Repeat(`{"type":"track"},`, 300) + `{"type":"track"}]}`
	_, err := m.Decode(EndpointBatch, []byte(body), nil)
	var verr *ValidationError
	if !errors.As(err, &verr) || len(verr.Errors) != maxReportedErrors {
		t.Fatalf("err = %v; want %d field errors", err, maxReportedErrors)
	}
	if want := "batch[0].userId: userId or anonymousId is required (and 99 more)"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
}

func TestValidationErrorText(t *testing.T) {
	tests := []struct {
		err  *ValidationError
		want string
	}{
		{&ValidationError{}, "invalid request"},
		{&ValidationError{Errors: []FieldError{{-1, "", "body must be a JSON object"}}}, "body must be a JSON object"},
		{&ValidationError{Errors: []FieldError{{-1, "properties.revenue", "not a number"}}}, "properties.revenue: not a number"},
		{&ValidationError{Errors: []FieldError{{3, "", "not an object"}}}, "batch[3]: not an object"},
		{&ValidationError{Errors: []FieldError{{3, "type", "missing"}, {4, "event", "missing"}}}, "batch[3].type: missing (and 1 more)"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	if p := (FieldError{Index: 2, Field: "traits.email"}).Path(); p != "batch[2].traits.email" {
		t.Errorf("Path() = %q", p)
	}
	if p := (FieldError{Index: -1, Field: "traits.email"}).Path(); p != "traits.email" {
		t.Errorf("Path() = %q", p)
	}
}

func TestDecodeValueTypes(t *testing.T) {
	m := goldenMapper(t, "")
	body := `{"userId":"u","event":"E","properties":{"revenue":"12.50","total":13,"tax":0.5,"n":-3,"f":1.25,"big":1e20,"s":"x","b":true,"z":null,"a":[1,"2",{"k":false}],"o":{"p":2}}}`
	evs, err := m.Decode(TypeTrack, []byte(body), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"revenue": 12.5, "total": int64(13), "tax": 0.5, "n": int64(-3), "f": 1.25, "big": 1e20,
		"s": "x", "b": true, "z": nil, "a": []any{int64(1), "2", map[string]any{"k": false}}, "o": map[string]any{"p": int64(2)},
	}
	if diff := cmp.Diff(want, evs[0].Properties); diff != "" {
		t.Errorf("properties (-want +got):\n%s", diff)
	}
}

func TestDecodeAppendsToDst(t *testing.T) {
	m := goldenMapper(t, "")
	dst := make([]Event, 1, 8)
	dst[0].ID = "first"
	evs, err := m.Decode(EndpointBatch, []byte(`{"batch":[{"type":"track","userId":"u","event":"A"},{"type":"track","userId":"u","event":"B"}]}`), dst)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[0].ID != "first" || evs[1].Name != "A" || evs[2].Name != "B" {
		t.Fatalf("got %+v", evs)
	}
	// A failing request leaves no half-filled events behind dst's length.
	evs, err = m.Decode(EndpointBatch, []byte(`{"batch":[{"type":"track","userId":"u","event":"A"},{"type":"track"}]}`), evs[:1])
	if err == nil || len(evs) != 1 {
		t.Fatalf("len = %d, err = %v", len(evs), err)
	}
	if full := evs[:cap(evs)]; full[1].Name != "" || full[1].Traits != nil {
		t.Errorf("event slot not cleared after a failed request: %+v", full[1])
	}
}

func TestNewMapperOptions(t *testing.T) {
	m, err := NewMapper(MapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	o := m.Options()
	if o.DefaultChannel != ChannelServer || o.MaxMessageBytes != DefaultMaxMessageBytes || o.MaxBatchBytes != DefaultMaxBatchBytes || o.IDs == nil || o.Now == nil {
		t.Errorf("defaults not applied: %+v", o)
	}
	bad := []struct {
		opts MapOptions
		want string
	}{
		{MapOptions{DefaultChannel: "fax"}, `default channel "fax": unknown channel`},
		{MapOptions{Rules: []IdentifierRule{{Path: "", Type: "x"}}}, "identifier rule 0: need a path and a type of [A-Za-z0-9._-]"},
		{MapOptions{Rules: []IdentifierRule{{Path: "traits.a", Type: ""}}}, "identifier rule 0: need a path and a type of [A-Za-z0-9._-]"},
		{MapOptions{Rules: []IdentifierRule{{Path: "traits.a", Type: "a"}, {Path: "traits.b", Type: "b/c"}}}, "identifier rule 1: need a path and a type of [A-Za-z0-9._-]"},
		{MapOptions{Rules: []IdentifierRule{{Path: "userId", Type: "u"}}}, `identifier rule 0: path "userId" must start with traits, properties or context`},
		{MapOptions{MaxMessageBytes: MaxMessageBytesLimit + 1}, fmt.Sprintf("max message bytes %d: above the limit of %d", MaxMessageBytesLimit+1, MaxMessageBytesLimit)},
	}
	for _, tt := range bad {
		if _, err := NewMapper(tt.opts); err == nil || err.Error() != tt.want {
			t.Errorf("NewMapper(%+v) = %v, want %q", tt.opts, err, tt.want)
		}
	}
}

func TestMapperConcurrentUse(t *testing.T) {
	m := goldenMapper(t, "")
	cases := goldenCases(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				tc := cases[(w*50+i)%len(cases)]
				evs, err := m.Decode(tc.endpoint, tc.input, nil)
				if err == nil && len(evs) == 0 {
					t.Errorf("%s: no events and no error", tc.name)
				}
			}
		})
	}
	wg.Wait()
}

// TestLargestEventFitsMaxEventBytes builds the event that grows most from
// JSON to msgpack, a message and a batch context each at the size limit
// full of small integers, at the largest MaxMessageBytes, and checks that
// the edge can read back what it stored.
func TestLargestEventFitsMaxEventBytes(t *testing.T) {
	m, err := NewMapper(MapOptions{MaxMessageBytes: MaxMessageBytesLimit, MaxBatchBytes: 4 * MaxMessageBytesLimit})
	if err != nil {
		t.Fatal(err)
	}
	ints := func(n int) string { return "[" + strings.Repeat("0,", n/2-2) + "0]" }
	head := `{"type":"track","userId":"u","event":"E","properties":{"a":`
	msg := head + ints(MaxMessageBytesLimit-len(head)-2) + `}}`
	ctx := `{"a":` + ints(MaxMessageBytesLimit-6) + `}`
	if len(msg) > MaxMessageBytesLimit || len(ctx) > MaxMessageBytesLimit {
		t.Fatalf("fixture too large: %d, %d", len(msg), len(ctx))
	}
	body := `{"batch":[` + msg + `],"context":` + ctx + `}`
	evs, err := m.Decode(EndpointBatch, []byte(body), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalEvent(&evs[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes of JSON became %d bytes of msgpack", len(msg)+len(ctx), len(b))
	var e Event
	if err := UnmarshalEvent(b, &e); err != nil {
		t.Fatalf("UnmarshalEvent of a mapped event: %v", err)
	}

	// One byte more of batch context is refused.
	big := `{"a":` + ints(MaxMessageBytesLimit-6) + `,"b":1}`
	_, err = m.Decode(EndpointBatch, []byte(`{"batch":[`+msg+`],"context":`+big+`}`), nil)
	var verr *ValidationError
	if !errors.As(err, &verr) || !verr.TooLarge || verr.Errors[0].Field != "context" {
		t.Fatalf("oversized batch context: err = %v", err)
	}
}

func TestRuleOnContextTraits(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	m, err := NewMapper(MapOptions{Rules: []IdentifierRule{{Path: "context.traits.crm_id", Type: "crm_id"}}, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(`{"messageId":"m1","userId":"u1","event":"Viewed","context":{"traits":{"crm_id":" C-42 "}}}`)
	evs, err := m.Decode(TypeTrack, body, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !evs[0].HasIdentifier("crm_id", "C-42") {
		t.Fatalf("identifiers %v: want crm_id C-42 from context.traits", evs[0].Identifiers)
	}
	var eb EncodedBatch
	diffDecode(t, m, TypeTrack, body, &eb)
}
