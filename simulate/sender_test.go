package simulate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/unico-cdp/unico/protocol"
)

// edgeServer is an httptest edge: it checks the write key, decodes every
// batch with the real mapper and answers from script (one status per
// request, then 200).
type edgeServer struct {
	*httptest.Server
	mapper   *protocol.Mapper
	mu       sync.Mutex
	script   []int
	requests int
	events   []protocol.Event
}

func newEdge(t *testing.T, cc string, script ...int) *edgeServer {
	t.Helper()
	mp, err := protocol.NewMapper(protocol.MapOptions{DefaultCountryCode: cc})
	if err != nil {
		t.Fatal(err)
	}
	e := &edgeServer{mapper: mp, script: script}
	e.Server = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.Close)
	return e
}

func (e *edgeServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.requests++
	if user, _, ok := r.BasicAuth(); !ok || user != "wk" || r.URL.Path != "/v1/batch" || r.Method != http.MethodPost {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	if len(e.script) > 0 {
		st := e.script[0]
		e.script = e.script[1:]
		if st != http.StatusOK {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(st)
			return
		}
	}
	evs, err := e.mapper.Decode(protocol.EndpointBatch, body, nil)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"error":"` + err.Error() + `"}`))
		return
	}
	e.events = append(e.events, evs...)
}

func newTestSender(t *testing.T, key string) (*Sender, *[]time.Duration) {
	t.Helper()
	s, err := NewSender(SenderConfig{WriteKey: key, MaxAttempts: 3}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var waits []time.Duration
	SetSleep(s, func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		waits = append(waits, d)
		mu.Unlock()
		return ctx.Err()
	})
	return s, &waits
}

func TestSend(t *testing.T) {
	g := newGen(t, 1, 100, "44", GeneratorConfig{})
	var b Batch
	g.Fill(&b, 20)
	tests := []struct {
		name      string
		key       string
		script    []int
		body      []byte
		wantErr   error
		wantAtt   int
		wantWaits []time.Duration
		wantEvs   int
	}{
		{name: "accepted", key: "wk", wantAtt: 1, wantEvs: 20},
		{name: "429 with Retry-After once", key: "wk", script: []int{429}, wantAtt: 2, wantWaits: []time.Duration{time.Second}, wantEvs: 20},
		{name: "503 with Retry-After once", key: "wk", script: []int{503}, wantAtt: 2, wantWaits: []time.Duration{time.Second}, wantEvs: 20},
		{name: "500 backs off", key: "wk", script: []int{500, 502}, wantAtt: 3, wantWaits: []time.Duration{DefaultMinBackoff, 2 * DefaultMinBackoff}, wantEvs: 20},
		{name: "gives up", key: "wk", script: []int{429, 429, 429}, wantAtt: 3, wantWaits: []time.Duration{time.Second, time.Second}, wantErr: ErrGaveUp},
		{name: "bad write key", key: "nope", wantAtt: 1, wantErr: ErrRejected},
		{name: "400 is a generator bug", key: "wk", body: []byte(`{"batch":[{"type":"track"}]}`), wantAtt: 1, wantErr: ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			edge := newEdge(t, "44", tt.script...)
			s, waits := newTestSender(t, tt.key)
			body := tt.body
			if body == nil {
				body = b.Body()
			}
			res, err := s.Send(t.Context(), edge.URL, body)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if res.Attempts != tt.wantAtt || edge.requests != tt.wantAtt {
				t.Errorf("attempts %d, server saw %d, want %d", res.Attempts, edge.requests, tt.wantAtt)
			}
			if d := cmp.Diff(tt.wantWaits, *waits); d != "" {
				t.Errorf("waits (-want +got):\n%s", d)
			}
			if len(edge.events) != tt.wantEvs {
				t.Errorf("edge stored %d events, want %d", len(edge.events), tt.wantEvs)
			}
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 6, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"3", 3 * time.Second, true},
		{" 0 ", 0, true},
		{"Mon, 06 Jan 2025 09:00:07 GMT", 7 * time.Second, true},
		{"Mon, 06 Jan 2025 08:00:00 GMT", 0, true},
		{"", 0, false},
		{"-1", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseRetryAfter(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("%q: %v %v, want %v %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

func TestRun(t *testing.T) {
	const cc = "44"
	// The first edge asks once to come back later; each edge checks its
	// batches with the real mapper.
	edges := []*edgeServer{newEdge(t, cc, 429), newEdge(t, cc)}
	g := newGen(t, 9, 800, cc, GeneratorConfig{})
	s, waits := newTestSender(t, "wk")
	truth := NewTruth(g.pop)
	var progress atomic.Int64
	sum, err := Run(t.Context(), g, RunConfig{
		Edges:  []string{edges[0].URL, edges[1].URL},
		Sender: s, Events: 3001, Batch: 25, Concurrency: 3, Truth: truth,
		Progress: time.Millisecond,
		OnProgress: func(p Progress) {
			if p.Accepted > p.Sent || p.Rejected > p.Sent {
				t.Errorf("progress %+v: more accepted or rejected than sent", p)
			}
			progress.Add(1)
		},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := Summary{Sent: 3001, Accepted: 3001, Retries: 1, Edges: 2}
	got := sum
	got.Batches, got.Elapsed, got.Rate, got.P50, got.P99 = 0, 0, 0, 0, 0
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("summary (-want +got):\n%s", d)
	}
	if len(*waits) != 1 || (*waits)[0] != time.Second {
		t.Errorf("waits %v, want one of 1s (the Retry-After)", *waits)
	}
	if sum.P50 <= 0 || sum.P99 < sum.P50 {
		t.Errorf("latencies p50 %v p99 %v", sum.P50, sum.P99)
	}
	// Events of a store reach that store's edge, each exactly once.
	seen := map[string]bool{}
	var orders int64
	var revenue Cents
	for i, e := range edges {
		for _, ev := range e.events {
			if seen[ev.ID] {
				t.Fatalf("event %s stored twice", ev.ID)
			}
			seen[ev.ID] = true
			var idx int
			if _, err := fmtSscan(ev.Properties["store_id"], &idx); err != nil || (idx-1)%2 != i {
				t.Fatalf("event of store %v at edge %d", ev.Properties["store_id"], i)
			}
			if ev.Name == "Order Completed" {
				orders++
				revenue += Cents(ev.Properties["revenue"].(float64)*100 + 0.5)
			}
		}
	}
	if len(seen) != 3001 {
		t.Errorf("edges stored %d events, want 3001", len(seen))
	}
	var tOrders, tEvents int64
	var tRevenue Cents
	for _, r := range truth.Records() {
		tOrders += r.Orders
		tRevenue += r.Revenue
		tEvents += r.Events
	}
	if tOrders != orders || tRevenue != revenue || tEvents != 3001 {
		t.Errorf("truth: %d events, %d orders, revenue %v; edges: %d orders, revenue %v", tEvents, tOrders, tRevenue, orders, revenue)
	}
}

func TestRunStopsOnBadRequest(t *testing.T) {
	// The edge answers 400 to the first batch.
	edge := newEdge(t, "44", http.StatusBadRequest)
	g := newGen(t, 1, 100, "44", GeneratorConfig{})
	s, _ := newTestSender(t, "wk")
	sum, err := Run(t.Context(), g, RunConfig{Edges: []string{edge.URL}, Sender: s, Concurrency: 1, Batch: 10}, nil)
	if !errors.Is(err, ErrBadRequest) {
		t.Fatalf("err = %v, want ErrBadRequest", err)
	}
	if sum.BadRequests != 1 || sum.Rejected < 10 || sum.Accepted+sum.Rejected != sum.Sent {
		t.Errorf("summary %+v", sum)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	edge := newEdge(t, "44")
	g := newGen(t, 1, 100, "44", GeneratorConfig{})
	s, _ := newTestSender(t, "wk")
	ctx, cancel := context.WithCancel(t.Context())
	var once sync.Once
	sum, err := Run(ctx, g, RunConfig{Edges: []string{edge.URL}, Sender: s, Rate: 5000,
		Progress: time.Millisecond, OnProgress: func(p Progress) {
			if p.Accepted > 0 {
				once.Do(cancel)
			}
		}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if sum.Accepted == 0 || sum.Accepted != sum.Sent || int64(len(edge.events)) != sum.Accepted {
		t.Errorf("summary %+v, edge stored %d", sum, len(edge.events))
	}
}

// fmtSscan reads the number of a store id such as "S002".
func fmtSscan(v any, n *int) (int, error) {
	s, _ := v.(string)
	return fmt.Sscanf(s, "S%d", n)
}

// BenchmarkRun measures the whole pipeline (generation, batching, HTTP
// sends with the default client) against an in-process edge that reads and
// discards the body.
func BenchmarkRun(b *testing.B) {
	for _, bs := range []int{20, 100} {
		b.Run(fmt.Sprintf("batch=%d", bs), func(b *testing.B) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
			}))
			defer srv.Close()
			g := newGen(b, 1, 100000, "44", GeneratorConfig{})
			s, err := NewSender(SenderConfig{WriteKey: "wk"}, nil)
			if err != nil {
				b.Fatal(err)
			}
			var events int64
			for b.Loop() {
				sum, err := Run(b.Context(), g, RunConfig{Edges: []string{srv.URL}, Sender: s, Events: 20000, Batch: bs, Concurrency: 4}, nil)
				if err != nil || sum.Accepted != 20000 {
					b.Fatalf("%+v %v", sum, err)
				}
				events += sum.Accepted
			}
			b.ReportMetric(float64(events)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
