package cache

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttputil"

	"github.com/unico-cdp/unico/protocol"
)

// serveInmem serves h on an in-memory listener and returns a client for it.
func serveInmem(t *testing.T, h fasthttp.RequestHandler) *http.Client {
	t.Helper()
	ln := fasthttputil.NewInmemoryListener()
	srv := &fasthttp.Server{Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Shutdown()
		<-done
	})
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return ln.Dial() }}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func TestLookupHandler(t *testing.T) {
	clk := &fixedClock{t: t0}
	c := openTest(t, "", func(o *Options) { o.Now = clk.Now; o.HashSalt, o.HashTypes = "s", nil; o.DefaultCountryCode = "44" })
	p := prof("p1", "loyalty_id:L1", "email:"+protocol.HashIdentifier("s", "ana@example.com"))
	p.Offers = []protocol.Offer{{Product: "pillow-cover", Score: 0.9, Reason: "bought pillow"}}
	p.Consent = map[string]bool{"marketing": true}
	if _, err := c.Apply(batch(1, p, protocol.ProfileSnapshot{ProfileID: "bare", Identifiers: []protocol.Identifier{{Type: "loyalty_id", Value: "B"}}})); err != nil {
		t.Fatal(err)
	}
	clk.t = t0.Add(90 * time.Second)
	cl := serveInmem(t, c.LookupHandler())

	tests := []struct {
		name   string
		query  url.Values
		code   int
		want   map[string]any // fields compared when set
		errFld string
	}{
		{name: "by loyalty id", query: url.Values{"type": {"loyalty_id"}, "value": {"L1"}}, code: 200, want: map[string]any{
			"profile_id": "p1", "segments": []any{"s1"}, "consent": map[string]any{"marketing": true},
			"offers":               []any{map[string]any{"product": "pillow-cover", "score": 0.9, "reason": "bought pillow"}},
			"traits":               map[string]any{"name": "n-p1"},
			"computed":             map[string]any{},
			"updated_at":           "2025-03-01T09:59:00Z",
			"received_at":          "2025-03-01T10:00:00Z",
			"snapshot_age_seconds": 90.0,
		}},
		{name: "by hashed email", query: url.Values{"type": {"email"}, "value": {" ANA@example.com"}}, code: 200, want: map[string]any{"profile_id": "p1"}},
		{name: "empty fields are empty, not null", query: url.Values{"type": {"loyalty_id"}, "value": {"B"}}, code: 200, want: map[string]any{
			"profile_id": "bare", "segments": []any{}, "offers": []any{}, "traits": map[string]any{}, "consent": map[string]any{},
		}},
		{name: "unknown identifier", query: url.Values{"type": {"loyalty_id"}, "value": {"nope"}}, code: 404},
		{name: "missing type", query: url.Values{"value": {"L1"}}, code: 400, errFld: "type"},
		{name: "bad type", query: url.Values{"type": {"no such/type"}, "value": {"L1"}}, code: 400, errFld: "type"},
		{name: "missing value", query: url.Values{"type": {"email"}}, code: 400, errFld: "value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := cl.Get("http://cache" + LookupPath + "?" + tt.query.Encode())
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.code {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.code, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			var got map[string]any
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %s: %v", body, err)
			}
			if tt.code != 200 {
				if got["error"] == "" || got["error"] == nil {
					t.Errorf("no error message: %s", body)
				}
				if fld, _ := got["field"].(string); fld != tt.errFld {
					t.Errorf("field = %q, want %q", fld, tt.errFld)
				}
				return
			}
			for k, w := range tt.want {
				if diff := cmp.Diff(w, got[k]); diff != "" {
					t.Errorf("%s (-want +got):\n%s", k, diff)
				}
			}
		})
	}
}
