package edgebench

import (
	"fmt"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"
)

const (
	bpQuota = 256 << 10 // --quota-bytes of the back-pressure tests
	bpBatch = 20        // events per request
)

// hubDown starts a hub and an edge agent, waits until they are connected
// and SIGKILLs the hub so that nothing drains.
func hubDown(t *testing.T, extra ...string) (*hubProc, *edgeProc) {
	t.Helper()
	binaries(t)
	hub := startHub(t, t.TempDir())
	args := append([]string{"--quota-bytes", strconv.Itoa(bpQuota), "--retry-after", "7s"}, extra...)
	edge := startEdge(t, t.TempDir(), hub.mqtt, nil, args...)
	waitFor(t, 30*time.Second, "edge connected to the hub", func() bool { return edge.status(t).HubConnected })
	hub.stop(syscall.SIGKILL)
	return hub, edge
}

// wantFull checks that r is a 429 with a usable Retry-After.
func wantFull(t *testing.T, what string, r postResult) {
	t.Helper()
	if r.code != http.StatusTooManyRequests {
		t.Fatalf("%s: status %d (%s), want 429", what, r.code, r.body)
	}
	if secs, err := strconv.Atoi(r.retryAfter); err != nil || secs != 7 {
		t.Errorf("%s: Retry-After %q, want 7 (--retry-after 7s)", what, r.retryAfter)
	}
}

// waitDrained restarts the hub and waits until the edge queue is empty and
// the hub stores want events.
func waitDrained(t *testing.T, hub *hubProc, edge *edgeProc, want int64) {
	t.Helper()
	hub.restart(t)
	var got int64
	waitFor(t, 90*time.Second, fmt.Sprintf("queue drained and %d events at the hub", want), func() bool {
		got = hub.events()
		return edge.status(t).QueueDepth == 0 && got >= want
	})
	// Nothing more may arrive: the edge queue is empty and no batch is in
	// flight once it has been acked.
	if got != want {
		t.Fatalf("hub stores %d events, want exactly the %d accepted", got, want)
	}
}

// TestBackPressure fills a 256 KiB queue while the hub is down: the agent
// answers 429 with Retry-After, loses nothing it accepted, and accepts again
// once the queue has drained to the restarted hub.
func TestBackPressure(t *testing.T) {
	hub, edge := hubDown(t)
	ctx, c := t.Context(), &http.Client{Timeout: 30 * time.Second}

	accepted := 0
	var full postResult
	for i := 0; ; i++ {
		if i > 10_000 {
			t.Fatalf("no 429 after %d accepted events into a %d-byte quota", accepted, bpQuota)
		}
		r := edge.post(ctx, c, Batch(BatchSpec{Events: bpBatch, Channel: "pos", IDPrefix: fmt.Sprintf("bp-%d", i)}))
		if r.code == http.StatusOK {
			accepted += bpBatch
			continue
		}
		full = r
		break
	}
	wantFull(t, "first refused batch", full)
	if accepted == 0 {
		t.Fatal("the first batch was refused; the quota is too small for the test")
	}
	// Still full: a retry is refused the same way, and stores nothing.
	wantFull(t, "retry while full", edge.post(ctx, c, Batch(BatchSpec{Events: bpBatch, Channel: "pos", IDPrefix: "bp-retry"})))
	st := edge.status(t)
	if st.QueueDepth != int64(accepted) {
		t.Errorf("queue_depth %d, want the %d accepted events", st.QueueDepth, accepted)
	}
	if st.QueueBytes > bpQuota || st.QueueQuotaBytes != bpQuota {
		t.Errorf("queue_bytes %d, queue_quota_bytes %d; want bytes <= quota %d", st.QueueBytes, st.QueueQuotaBytes, bpQuota)
	}
	if st.HubConnected {
		t.Error("hub_connected is true with the hub killed")
	}
	t.Logf("accepted %d events (%d bytes, %.0f bytes/event) before 429", accepted, st.QueueBytes, float64(st.QueueBytes)/float64(accepted))

	waitDrained(t, hub, edge, int64(accepted))

	r := edge.post(ctx, c, Batch(BatchSpec{Events: bpBatch, Channel: "pos", IDPrefix: "bp-after"}))
	if r.code != http.StatusOK {
		t.Fatalf("after draining: status %d (%s), want 200", r.code, r.body)
	}
	want := int64(accepted + bpBatch)
	waitFor(t, 60*time.Second, "the batch sent after draining at the hub", func() bool { return hub.events() == want })
}

// TestBackPressureDropOldest fills the quota with iot events under
// --overflow iot=drop_oldest: iot keeps being accepted by dropping its own
// oldest events, counted in events_dropped, while pos gets 429; no pos event
// and no iot event newer than the dropped ones is lost.
func TestBackPressureDropOldest(t *testing.T) {
	hub, edge := hubDown(t, "--overflow", "iot=drop_oldest")
	ctx, c := t.Context(), &http.Client{Timeout: 30 * time.Second}

	const posBatches = 5
	for i := range posBatches {
		r := edge.post(ctx, c, Batch(BatchSpec{Events: bpBatch, Channel: "pos", IDPrefix: fmt.Sprintf("pos-%d", i), UserID: fmt.Sprintf("pos-%d", i)}))
		if r.code != http.StatusOK {
			t.Fatalf("pos batch %d: status %d (%s)", i, r.code, r.body)
		}
	}
	// iot batch k carries userId iot-<k>, so the hub can tell which
	// batches survived.
	iotBatches := 0
	postIoT := func() {
		t.Helper()
		k := iotBatches
		r := edge.post(ctx, c, Batch(BatchSpec{Events: bpBatch, Channel: "iot", IDPrefix: fmt.Sprintf("iot-%d", k), UserID: fmt.Sprintf("iot-%d", k)}))
		if r.code != http.StatusOK {
			t.Fatalf("iot batch %d: status %d (%s), want 200 (drop_oldest)", k, r.code, r.body)
		}
		iotBatches++
	}
	for edge.status(t).EventsDropped["iot"] == 0 {
		if iotBatches > 10_000 {
			t.Fatal("no iot event dropped after 10,000 batches")
		}
		postIoT()
	}
	// Keep going until several whole batches have been dropped.
	for edge.status(t).EventsDropped["iot"] < 3*bpBatch {
		postIoT()
	}
	wantFull(t, "pos batch with the quota full of iot", edge.post(ctx, c, Batch(BatchSpec{Events: bpBatch, Channel: "pos", IDPrefix: "pos-refused", UserID: "pos-refused"})))

	st := edge.status(t)
	dropped := int(st.EventsDropped["iot"])
	if len(st.EventsDropped) != 1 {
		t.Errorf("events_dropped %v, want only iot", st.EventsDropped)
	}
	accepted := posBatches*bpBatch + iotBatches*bpBatch
	if st.QueueDepth != int64(accepted-dropped) {
		t.Errorf("queue_depth %d, want %d accepted - %d dropped", st.QueueDepth, accepted, dropped)
	}
	t.Logf("accepted %d pos and %d iot events, dropped %d iot", posBatches*bpBatch, iotBatches*bpBatch, dropped)

	waitDrained(t, hub, edge, int64(accepted-dropped))

	exists := func(user string) bool {
		switch code := hub.get("/api/v1/identifiers?identifier=user_id:"+user, nil); code {
		case http.StatusOK:
			return true
		case http.StatusNotFound:
			return false
		default:
			t.Fatalf("GET identifier %s: status %d", user, code)
			return false
		}
	}
	for i := range posBatches {
		if !exists(fmt.Sprintf("pos-%d", i)) {
			t.Errorf("pos batch %d lost", i)
		}
	}
	if exists("pos-refused") {
		t.Error("the refused pos batch reached the hub")
	}
	// Oldest first: iot events 0..dropped-1 are gone, so batch k survives
	// exactly when its last event (k+1)*bpBatch-1 is at least dropped.
	for k := range iotBatches {
		want := (k+1)*bpBatch > dropped
		if got := exists(fmt.Sprintf("iot-%d", k)); got != want {
			t.Errorf("iot batch %d at the hub: %v, want %v (dropped %d oldest iot events)", k, got, want, dropped)
		}
	}
}
