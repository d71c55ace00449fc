package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/unico-cdp/unico/edge/queue"
	"github.com/unico-cdp/unico/protocol"
)

// poisonEvent is an event as an agent of another version might have
// queued it: occurred-at encoded as an RFC 3339 string instead of a msgpack
// timestamp. The agent forwards queued bytes without decoding them; the
// hub's decoder refuses the whole batch that carries it.
func poisonEvent(t *testing.T) []byte {
	t.Helper()
	e := protocol.Event{
		ID: "poison-1", Type: protocol.TypeTrack, Name: "Order Completed", Channel: protocol.ChannelPOS,
		Source:      protocol.Source{Tenant: "default", Site: "store-q", Edge: "store-q"},
		Identifiers: []protocol.Identifier{{Type: protocol.IDUserID, Value: "poison-user"}},
		OccurredAt:  time.Now().UTC(), ReceivedAt: time.Now().UTC(),
	}
	good, err := protocol.MarshalEvent(&e)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := msgpack.Unmarshal(good, &m); err != nil {
		t.Fatal(err)
	}
	m["oa"] = e.OccurredAt.Format(time.RFC3339Nano)
	bad, err := msgpack.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var back protocol.Event
	if err := protocol.UnmarshalEvent(bad, &back); err == nil {
		t.Fatal("the poison event decodes; it would not test anything")
	}
	return bad
}

type quarantineStatus struct {
	QueueDepth        int64 `json:"queue_depth"`
	QuarantinedEvents int64 `json:"quarantined_events"`
	QuarantinedBytes  int64 `json:"quarantined_bytes"`
}

type quarantineList struct {
	Events []struct {
		Seq           uint64          `json:"seq"`
		ID            string          `json:"id"`
		Channel       string          `json:"channel"`
		ReceivedAt    time.Time       `json:"received_at"`
		QuarantinedAt time.Time       `json:"quarantined_at"`
		HubError      string          `json:"hub_error"`
		Event         json.RawMessage `json:"event"`
		DecodeError   string          `json:"decode_error"`
		DataBase64    []byte          `json:"data_base64"`
	} `json:"events"`
	NextCursor        *uint64 `json:"next_cursor"`
	QuarantinedEvents int64   `json:"quarantined_events"`
}

func (e *edgeProc) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", e.http, path) }

// call sends an operator request and decodes a 200 answer into v.
func (e *edgeProc) call(t *testing.T, method, path string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(method, e.url(path), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}

func (e *edgeProc) quarantineStatus(t *testing.T) quarantineStatus {
	t.Helper()
	var s quarantineStatus
	getJSON(t, e.url("/v1/status"), &s)
	return s
}

// metric returns the value of an unlabelled metric from /metrics.
func (e *edgeProc) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := http.Get(e.url("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

func tracks(prefix string, n int) []map[string]any {
	msgs := make([]map[string]any, n)
	for i := range msgs {
		msgs[i] = map[string]any{"type": "track", "event": "Product Viewed", "userId": fmt.Sprintf("%s-%d", prefix, i),
			"messageId": fmt.Sprintf("%s-msg-%d", prefix, i)}
	}
	return msgs
}

// TestQuarantinePoisonEvent: a queued event the real hub refuses no longer
// blocks the edge. The events before and after it reach the hub, the poison
// is quarantined and listed, a retry re-queues it (and the hub, unchanged,
// refuses it again), and a discard removes it.
func TestQuarantinePoisonEvent(t *testing.T) {
	binaries(t)
	dir := t.TempDir()
	hub := startHub(t, filepath.Join(dir, "hub"))
	edgeDir := filepath.Join(dir, "edge")
	edge := startEdge(t, edgeDir, "store-q", hub.mqtt, "--quarantine-after", "2")

	edge.mustPost(t, tracks("before", 20)...)
	waitFor(t, 60*time.Second, "20 events at the hub", func() bool { return hub.events(t) == 20 })

	// Put the poison into the agent's queue while it is stopped, as an
	// agent of another version would have left it.
	edge.stop(syscall.SIGTERM)
	q, err := queue.Open(queue.Options{Dir: filepath.Join(edgeDir, "queue")})
	if err != nil {
		t.Fatal(err)
	}
	poison := poisonEvent(t)
	if err := q.AppendEncoded(context.Background(), []protocol.EncodedEvent{{Channel: protocol.ChannelPOS, Data: poison}}); err != nil {
		t.Fatal(err)
	}
	poisonSeq := q.Stats().NextSeq - 1
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	edge.restart()
	edge.waitReady(t)
	edge.mustPost(t, tracks("after", 20)...)

	waitFor(t, 60*time.Second, "the events after the poison at the hub and the poison quarantined", func() bool {
		s := edge.quarantineStatus(t)
		return hub.events(t) == 40 && s.QuarantinedEvents == 1 && s.QueueDepth == 0
	})
	if s := edge.quarantineStatus(t); s.QuarantinedBytes <= int64(len(poison)) {
		t.Errorf("quarantined_bytes %d, want more than the event's %d", s.QuarantinedBytes, len(poison))
	}
	var list quarantineList
	if code := edge.call(t, http.MethodGet, "/v1/quarantine?limit=10", &list); code != 200 {
		t.Fatalf("GET /v1/quarantine: %d", code)
	}
	if len(list.Events) != 1 || list.QuarantinedEvents != 1 || list.NextCursor != nil {
		t.Fatalf("quarantine list %+v, want the poison alone", list)
	}
	got := list.Events[0]
	if got.Seq != poisonSeq || got.Channel != protocol.ChannelPOS || !strings.Contains(got.HubError, "decode") ||
		got.DecodeError == "" || !bytes.Equal(got.DataBase64, poison) || got.QuarantinedAt.IsZero() || got.ReceivedAt.IsZero() {
		t.Errorf("quarantined %+v, want seq %d of channel pos with the hub's decode error and the bytes in base64", got, poisonSeq)
	}
	if v := edge.metric(t, "unico_edge_events_quarantined_total"); v != "1" {
		t.Errorf("unico_edge_events_quarantined_total = %q, want 1", v)
	}
	if v := edge.metric(t, "unico_edge_quarantined_events"); v != "1" {
		t.Errorf("unico_edge_quarantined_events = %q, want 1", v)
	}
	if !strings.Contains(edge.logs(), "event quarantined") {
		t.Errorf("no quarantine in the agent's log:\n%s", edge.logs())
	}

	// The hub was not changed: a retry sends the poison again under a new
	// seq, and it comes back.
	var retried struct {
		Requeued int    `json:"requeued"`
		FirstSeq uint64 `json:"first_seq"`
	}
	if code := edge.call(t, http.MethodPost, "/v1/quarantine/retry", &retried); code != 200 || retried.Requeued != 1 || retried.FirstSeq <= poisonSeq {
		t.Fatalf("POST /v1/quarantine/retry: %d %+v, want 1 requeued under a new seq", code, retried)
	}
	waitFor(t, 60*time.Second, "the poison quarantined again", func() bool {
		return edge.metric(t, "unico_edge_events_quarantined_total") == "2" && edge.quarantineStatus(t).QuarantinedEvents == 1
	})
	list = quarantineList{}
	edge.call(t, http.MethodGet, "/v1/quarantine", &list)
	if len(list.Events) != 1 || list.Events[0].Seq != retried.FirstSeq {
		t.Fatalf("quarantine list %+v, want the poison under seq %d", list, retried.FirstSeq)
	}

	// Bad requests name the parameter; a wrong seq is 404.
	for _, tt := range []struct {
		method, path string
		code         int
	}{
		{http.MethodDelete, "/v1/quarantine", 400},
		{http.MethodDelete, "/v1/quarantine?seq=x", 400},
		{http.MethodDelete, "/v1/quarantine?seq=" + fmt.Sprint(poisonSeq), 404},
		{http.MethodPost, "/v1/quarantine/retry?seq=999999", 404},
		{http.MethodGet, "/v1/quarantine?limit=100000", 400},
		{http.MethodPut, "/v1/quarantine", 405},
	} {
		if code := edge.call(t, tt.method, tt.path, nil); code != tt.code {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, code, tt.code)
		}
	}

	if code := edge.call(t, http.MethodDelete, fmt.Sprintf("/v1/quarantine?seq=%d", retried.FirstSeq), nil); code != 200 {
		t.Fatalf("DELETE /v1/quarantine: %d", code)
	}
	if s := edge.quarantineStatus(t); s.QuarantinedEvents != 0 || s.QuarantinedBytes != 0 || s.QueueDepth != 0 {
		t.Errorf("status after the discard %+v, want nothing quarantined or queued", s)
	}
	if v := edge.metric(t, "unico_edge_events_discarded_total"); v != "1" {
		t.Errorf("unico_edge_events_discarded_total = %q, want 1", v)
	}
	edge.mustPost(t, tracks("last", 5)...)
	waitFor(t, 60*time.Second, "45 events at the hub", func() bool { return hub.events(t) == 45 })
}
