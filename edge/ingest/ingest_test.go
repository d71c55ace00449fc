package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/unico-cdp/unico/edge/queue"
	"github.com/unico-cdp/unico/protocol"
)

const (
	trackMsg    = `{"userId":"u1","event":"Order Completed","properties":{"revenue":12.5}}`
	identifyMsg = `{"userId":"u1","traits":{"email":"a@example.com"}}`
	pageMsg     = `{"anonymousId":"a1","name":"Home"}`
	screenMsg   = `{"anonymousId":"a1","name":"Menu"}`
	groupMsg    = `{"userId":"u1","groupId":"g1"}`
	aliasMsg    = `{"userId":"u1","previousId":"a1"}`
	goodBatch   = `{"batch":[{"type":"track","userId":"u1","event":"A"},{"type":"identify","anonymousId":"a2"}]}`
	// three bad messages among two good ones.
	badBatch = `{"batch":[{"type":"track","userId":"u1","event":"A"},{"type":"track","userId":"u1"},{"type":"bogus","userId":"u1"},{"type":"identify"},{"type":"page","userId":"u1"}]}`
)

type apiErr struct {
	Error  string                `json:"error"`
	Field  string                `json:"field"`
	Errors []protocol.FieldError `json:"errors"`
}

func TestEndpoints(t *testing.T) {
	auth := map[string]string{"Authorization": basic("wk1")}
	withGzip := map[string]string{"Authorization": basic("wk1"), "Content-Encoding": "gzip"}
	bomb := gz(t, bytes.Repeat([]byte{' '}, 10<<20)) // 10 MiB of blanks in about 10 KiB
	big := `{"batch":[` + strings.Repeat(`{"type":"track","userId":"u1","event":"A"},`, 12000) + `{"type":"track","userId":"u1","event":"A"}]}`
	fat := `{"userId":"u1","event":"A","properties":{"x":"` + strings.Repeat("x", 40<<10) + `"}}`
	tests := []struct {
		name    string
		method  string
		path    string
		hdr     map[string]string
		body    string
		rawBody []byte
		// headersOnly sends the request head with the body's Content-Length
		// but not the body: a server that refuses the length must answer
		// before reading it (sending the body would race its close).
		headersOnly bool
		appendErr   error
		wantCode    int
		wantBody    string // exact, when set
		wantField   string
		wantNErrs   int // field errors listed, when set
		wantRetry   string
		wantStore   int // events stored
	}{
		{name: "batch", method: "POST", path: "/v1/batch", hdr: auth, body: goodBatch, wantCode: 200, wantBody: `{"success":true}`, wantStore: 2},
		{name: "import", method: "POST", path: "/v1/import", hdr: auth, body: goodBatch, wantCode: 200, wantStore: 2},
		{name: "track", method: "POST", path: "/v1/track", hdr: auth, body: trackMsg, wantCode: 200, wantStore: 1},
		{name: "identify", method: "POST", path: "/v1/identify", hdr: auth, body: identifyMsg, wantCode: 200, wantStore: 1},
		{name: "page", method: "POST", path: "/v1/page", hdr: auth, body: pageMsg, wantCode: 200, wantStore: 1},
		{name: "screen", method: "POST", path: "/v1/screen", hdr: auth, body: screenMsg, wantCode: 200, wantStore: 1},
		{name: "group", method: "POST", path: "/v1/group", hdr: auth, body: groupMsg, wantCode: 200, wantStore: 1},
		{name: "alias", method: "POST", path: "/v1/alias", hdr: auth, body: aliasMsg, wantCode: 200, wantStore: 1},
		{name: "second write key", method: "POST", path: "/v1/track", hdr: map[string]string{"Authorization": basic("wk2")}, body: trackMsg, wantCode: 200, wantStore: 1},
		{name: "gzip batch", method: "POST", path: "/v1/batch", hdr: withGzip, rawBody: gz(t, []byte(goodBatch)), wantCode: 200, wantStore: 2},
		{name: "gzip bomb", method: "POST", path: "/v1/batch", hdr: withGzip, rawBody: bomb, wantCode: 413},
		{name: "gzip track over message limit", method: "POST", path: "/v1/track", hdr: withGzip, rawBody: gz(t, []byte(fat)), wantCode: 413},
		{name: "broken gzip", method: "POST", path: "/v1/batch", hdr: withGzip, body: goodBatch, wantCode: 400},
		{name: "unknown encoding", method: "POST", path: "/v1/batch", hdr: map[string]string{"Authorization": basic("wk1"), "Content-Encoding": "br"}, body: goodBatch, wantCode: 400, wantField: "Content-Encoding"},
		{name: "no auth", method: "POST", path: "/v1/batch", body: goodBatch, wantCode: 401},
		{name: "wrong key", method: "POST", path: "/v1/batch", hdr: map[string]string{"Authorization": basic("nope")}, body: goodBatch, wantCode: 401},
		{name: "key as password only", method: "POST", path: "/v1/batch", hdr: map[string]string{"Authorization": "Basic " + "OndrMQ=="}, body: goodBatch, wantCode: 401},
		{name: "bearer not basic", method: "POST", path: "/v1/batch", hdr: map[string]string{"Authorization": "Bearer wk1"}, body: goodBatch, wantCode: 401},
		{name: "invalid JSON", method: "POST", path: "/v1/batch", hdr: auth, body: `{"batch":[`, wantCode: 400, wantNErrs: 1},
		{name: "batch with three bad messages stores nothing", method: "POST", path: "/v1/batch", hdr: auth, body: badBatch, wantCode: 400, wantField: "batch[1].event", wantNErrs: 3},
		{name: "track without event", method: "POST", path: "/v1/track", hdr: auth, body: `{"userId":"u1"}`, wantCode: 400, wantField: "event", wantNErrs: 1},
		{name: "message too large", method: "POST", path: "/v1/track", hdr: auth, body: fat, wantCode: 413},
		{name: "batch over body limit", method: "POST", path: "/v1/batch", hdr: auth, body: big, wantCode: 413},
		{name: "body over transport limit", method: "POST", path: "/v1/batch", hdr: auth, body: strings.Repeat(" ", 700<<10), headersOnly: true, wantCode: 413},
		{name: "batch just over decoded limit", method: "POST", path: "/v1/batch", hdr: auth, body: `{"batch":[{"type":"track","userId":"u1","event":"A"}],"pad":"` + strings.Repeat("p", 500<<10) + `"}`, wantCode: 413},
		{name: "GET on ingest", method: "GET", path: "/v1/batch", hdr: auth, wantCode: 405},
		{name: "POST on healthz", method: "POST", path: "/healthz", wantCode: 405},
		{name: "unknown path", method: "POST", path: "/v2/batch", hdr: auth, body: goodBatch, wantCode: 404},
		{name: "queue full", method: "POST", path: "/v1/batch", hdr: auth, body: goodBatch, appendErr: fmt.Errorf("append: %w", queue.ErrFull), wantCode: 429, wantRetry: "5"},
		{name: "queue closed", method: "POST", path: "/v1/batch", hdr: auth, body: goodBatch, appendErr: queue.ErrClosed, wantCode: 503, wantRetry: "5"},
		{name: "append cancelled", method: "POST", path: "/v1/track", hdr: auth, body: trackMsg, appendErr: context.Canceled, wantCode: 503, wantRetry: "5"},
		{name: "append failed", method: "POST", path: "/v1/track", hdr: auth, body: trackMsg, appendErr: errBoom, wantCode: 503, wantRetry: "5"},
		{name: "healthz", method: "GET", path: "/healthz", wantCode: 200, wantBody: "ok\n"},
		{name: "status", method: "GET", path: "/v1/status", wantCode: 200, wantBody: `{"depth":7}`},
		{name: "extra route", method: "GET", path: "/v1/profiles/lookup", wantCode: 200, wantBody: "profile"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := &memAppender{err: tt.appendErr}
			ts := startServer(t, Config{
				WriteKeys: []string{"wk1", "wk2"},
				Status:    func() any { return map[string]int{"depth": 7} },
				Extra: map[string]fasthttp.RequestHandler{
					"/v1/profiles/lookup": func(ctx *fasthttp.RequestCtx) { ctx.SetBodyString("profile") },
				},
			}, app)
			body := tt.rawBody
			if body == nil {
				body = []byte(tt.body)
			}
			var r response
			if tt.headersOnly {
				r = ts.doHead(t, tt.method, tt.path, tt.hdr, len(body))
			} else {
				r = ts.do(t, tt.method, tt.path, tt.hdr, body)
			}
			if r.code != tt.wantCode {
				t.Fatalf("code %d, want %d; body %s", r.code, tt.wantCode, r.body)
			}
			if tt.wantBody != "" && string(r.body) != tt.wantBody {
				t.Errorf("body %q, want %q", r.body, tt.wantBody)
			}
			if got := r.header.Get("Retry-After"); got != tt.wantRetry {
				t.Errorf("Retry-After %q, want %q", got, tt.wantRetry)
			}
			if got := len(app.events()); got != tt.wantStore {
				t.Errorf("stored %d events, want %d", got, tt.wantStore)
			}
			if r.code >= 400 {
				if ct := r.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("error Content-Type %q", ct)
				}
				var e apiErr
				if err := json.Unmarshal(r.body, &e); err != nil || e.Error == "" {
					t.Fatalf("error body %q is not a JSON error: %v", r.body, err)
				}
				if e.Field != tt.wantField {
					t.Errorf("field %q, want %q (body %s)", e.Field, tt.wantField, r.body)
				}
				if tt.wantNErrs != 0 && len(e.Errors) != tt.wantNErrs {
					t.Errorf("%d field errors, want %d: %s", len(e.Errors), tt.wantNErrs, r.body)
				}
			}
			if r.code == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
		})
	}
}

func TestBadBatchListsEveryError(t *testing.T) {
	app := &memAppender{}
	ts := startServer(t, Config{}, app)
	r := ts.do(t, "POST", "/v1/batch", nil, []byte(badBatch))
	if r.code != 400 {
		t.Fatalf("code %d: %s", r.code, r.body)
	}
	var e apiErr
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, fe := range e.Errors {
		got = append(got, fe.Path())
	}
	want := []string{"batch[1].event", "batch[2].type", "batch[3].userId"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("field errors (-want +got):\n%s\nbody %s", diff, r.body)
	}
	if n := len(app.events()); n != 0 {
		t.Errorf("stored %d events of a rejected batch", n)
	}
}

func TestPanicInExtraHandler(t *testing.T) {
	ts := startServer(t, Config{Extra: map[string]fasthttp.RequestHandler{
		"/v1/boom": func(*fasthttp.RequestCtx) { panic("boom") },
	}}, &memAppender{})
	if r := ts.do(t, "GET", "/v1/boom", nil, nil); r.code != 500 {
		t.Fatalf("code %d: %s", r.code, r.body)
	}
	if r := ts.do(t, "GET", "/healthz", nil, nil); r.code != 200 {
		t.Fatalf("healthz after a panic: %d", r.code)
	}
}

func TestNoAuthWhenNoKeys(t *testing.T) {
	app := &memAppender{}
	ts := startServer(t, Config{}, app)
	if r := ts.do(t, "POST", "/v1/track", nil, []byte(trackMsg)); r.code != 200 {
		t.Fatalf("code %d: %s", r.code, r.body)
	}
}

func TestStatusNotConfigured(t *testing.T) {
	ts := startServer(t, Config{}, &memAppender{})
	if r := ts.do(t, "GET", "/v1/status", nil, nil); r.code != 404 {
		t.Fatalf("code %d: %s", r.code, r.body)
	}
}

// TestNoSuccessBeforeAppend checks that a client has no answer while Append
// is still running, and gets 200 once it returns.
func TestNoSuccessBeforeAppend(t *testing.T) {
	app := &memAppender{entered: make(chan struct{}, 1), release: make(chan struct{})}
	ts := startServer(t, Config{}, app)
	got := make(chan response, 1)
	go func() { got <- ts.do(t, "POST", "/v1/batch", nil, []byte(goodBatch)) }()
	<-app.entered
	// Append is blocked: the client must have no answer yet. A handler
	// that answered before appending would have let the client return by
	// now: /healthz on another connection round-trips after it.
	if r := ts.do(t, "GET", "/healthz", nil, nil); r.code != 200 {
		t.Fatalf("healthz %d", r.code)
	}
	select {
	case r := <-got:
		t.Fatalf("answer %d %s before Append returned", r.code, r.body)
	default:
	}
	close(app.release)
	r := <-got
	if r.code != 200 {
		t.Fatalf("code %d: %s", r.code, r.body)
	}
	if n := len(app.events()); n != 2 {
		t.Fatalf("stored %d events, want 2", n)
	}
}

// TestGracefulShutdown cancels Serve while a request is in its Append: the
// request still gets its 200, healthz turns 503, new ingest gets 503, and
// Serve returns after the in-flight request.
func TestGracefulShutdown(t *testing.T) {
	app := &memAppender{entered: make(chan struct{}, 1), release: make(chan struct{})}
	ts := startServer(t, Config{}, app)
	got := make(chan response, 1)
	go func() { got <- ts.do(t, "POST", "/v1/track", nil, []byte(trackMsg)) }()
	<-app.entered
	ts.cancel()
	waitFor(t, "draining", ts.draining.Load)

	// The listener is closed; a request reaching the handler now (as one
	// on an open keep-alive connection would) is refused with 503.
	h := ts.Handler()
	for _, c := range []struct {
		method, path string
		want         int
	}{{"POST", "/v1/track", 503}, {"GET", "/healthz", 503}} {
		var rc fasthttp.RequestCtx
		rc.Request.Header.SetMethod(c.method)
		rc.Request.SetRequestURI(c.path)
		rc.Request.SetBodyString(trackMsg)
		h(&rc)
		if rc.Response.StatusCode() != c.want {
			t.Errorf("%s %s while draining: %d, want %d", c.method, c.path, rc.Response.StatusCode(), c.want)
		}
		if c.path == "/v1/track" && string(rc.Response.Header.Peek("Retry-After")) != "5" {
			t.Errorf("503 without Retry-After 5")
		}
	}
	select {
	case err := <-ts.done:
		t.Fatalf("Serve returned %v with a request in flight", err)
	default:
	}
	close(app.release)
	if r := <-got; r.code != 200 {
		t.Fatalf("in-flight request: %d %s", r.code, r.body)
	}
	ts.stop(t)
	if n := len(app.events()); n != 1 {
		t.Fatalf("stored %d events, want 1", n)
	}
}

// TestShutdownTimeout: an Append that never finishes on its own is cancelled
// after ShutdownTimeout and its client gets 503.
func TestShutdownTimeout(t *testing.T) {
	app := &memAppender{entered: make(chan struct{}, 1), release: make(chan struct{})}
	ts := startServer(t, Config{ShutdownTimeout: 50e6}, app)
	got := make(chan response, 1)
	go func() { got <- ts.do(t, "POST", "/v1/track", nil, []byte(trackMsg)) }()
	<-app.entered
	ts.stop(t)
	r := <-got
	if r.code != 503 || r.header.Get("Retry-After") != "5" {
		t.Fatalf("got %d %q %s, want 503 with Retry-After", r.code, r.header.Get("Retry-After"), r.body)
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	app := &memAppender{}
	ts := startServer(t, Config{Registry: reg, WriteKeys: []string{"k"}}, app)
	auth := map[string]string{"Authorization": basic("k")}
	ts.do(t, "POST", "/v1/batch", auth, []byte(`{"batch":[{"type":"track","userId":"u","event":"A","context":{"channel":"pos"}},{"type":"track","userId":"u","event":"B"}]}`))
	ts.do(t, "POST", "/v1/batch", nil, []byte(goodBatch))
	ts.do(t, "POST", "/v1/batch", auth, []byte(badBatch))
	r := ts.do(t, "GET", "/metrics", nil, nil)
	if r.code != 200 {
		t.Fatalf("metrics: %d", r.code)
	}
	for _, want := range []string{
		`unico_edge_events_accepted_total{channel="pos"} 1`,
		`unico_edge_events_accepted_total{channel="server"} 1`,
		`unico_edge_events_rejected_total{reason="unauthorized"} 1`,
		`unico_edge_events_rejected_total{reason="invalid"} 1`,
		`unico_edge_requests_total{code="200",endpoint="batch"} 1`,
		`unico_edge_requests_total{code="401",endpoint="batch"} 1`,
		`unico_edge_requests_total{code="400",endpoint="batch"} 1`,
		`unico_edge_request_duration_seconds_count 3`,
	} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// A second server on the same registry is a config error.
	if _, err := New(Config{Registry: reg}, nil, app); !errors.Is(err, ErrConfig) {
		t.Errorf("New on a used registry: %v, want ErrConfig", err)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		app  Appender
		want string
	}{
		{"nil appender", Config{}, nil, "nil Appender"},
		{"negative retry", Config{RetryAfter: -1}, &memAppender{}, "RetryAfter"},
		{"negative conns", Config{MaxConns: -1}, &memAppender{}, "MaxConns"},
		{"empty key", Config{WriteKeys: []string{"a", ""}}, &memAppender{}, "WriteKeys[1]"},
		{"bad channel", Config{Map: protocol.MapOptions{DefaultChannel: "fax"}}, &memAppender{}, "Map"},
		{"shadowing extra", Config{Extra: map[string]fasthttp.RequestHandler{"/healthz": func(*fasthttp.RequestCtx) {}}}, &memAppender{}, `"/healthz"`},
		{"nil extra", Config{Extra: map[string]fasthttp.RequestHandler{"/x": nil}}, &memAppender{}, `"/x"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg, nil, tt.app)
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want ErrConfig naming %s", err, tt.want)
			}
		})
	}
}

func TestRetryAfterRounding(t *testing.T) {
	s, err := New(Config{RetryAfter: 1500e6}, nil, &memAppender{})
	if err != nil {
		t.Fatal(err)
	}
	if s.retryAfter != "2" {
		t.Fatalf("retryAfter %q, want 2", s.retryAfter)
	}
}
