package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
)

type profileJSON struct {
	ID          string `json:"id"`
	Identifiers []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"identifiers"`
	Computed struct {
		Orders  int64   `json:"orders"`
		Revenue float64 `json:"revenue"`
	} `json:"computed"`
}

// customerEvents returns the events of customer i, spread over channels:
// anonymous web browsing, an identify with e-mail, POS sales with a loyalty
// card, a kiosk identification with phone, a contact-center call, and (for
// the first ten) a sale on the store's generic card.
func customerEvents(run string, i int) []map[string]any {
	id := func(k string) string { return fmt.Sprintf("%s-%d-%s", run, i, k) }
	email := fmt.Sprintf("  Cust%d@Example.COM ", i)
	loyalty := fmt.Sprintf("L%05d", i)
	phone := fmt.Sprintf("07700 9%05d", i)
	evs := []map[string]any{
		{"type": "page", "messageId": id("page"), "anonymousId": "web-" + fmt.Sprint(i), "name": "Pillows", "context": map[string]any{"channel": "browser"}},
		{"type": "identify", "messageId": id("ident"), "anonymousId": "web-" + fmt.Sprint(i), "traits": map[string]any{"email": email, "first_name": fmt.Sprint("C", i)}, "context": map[string]any{"channel": "browser"}},
		{"type": "track", "messageId": id("pos1"), "anonymousId": "till-7", "event": "Order Completed", "properties": map[string]any{"revenue": 10 + i, "loyalty_id": loyalty}, "context": map[string]any{"traits": map[string]any{"email": email}}},
		{"type": "track", "messageId": id("pos2"), "anonymousId": "till-8", "event": "Order Completed", "properties": map[string]any{"revenue": "5.25", "loyalty_id": loyalty}},
		{"type": "identify", "messageId": id("kiosk"), "anonymousId": "kiosk-" + fmt.Sprint(i), "traits": map[string]any{"loyalty_id": loyalty, "phone": phone}, "context": map[string]any{"channel": "kiosk"}},
		{"type": "track", "messageId": id("call"), "anonymousId": "cc-" + fmt.Sprint(i), "event": "Call Completed", "properties": map[string]any{"reason": "delivery"}, "context": map[string]any{"channel": "contact_center", "traits": map[string]any{"phone": phone}}},
	}
	if i < 10 {
		evs = append(evs, map[string]any{"type": "track", "messageId": id("generic"), "anonymousId": "till-9", "event": "Order Completed",
			"properties": map[string]any{"revenue": 1, "loyalty_id": "STORE-GENERIC"}, "context": map[string]any{"traits": map[string]any{"email": email}}})
	}
	return evs
}

func TestIdentityAcrossChannelsAndEdges(t *testing.T) {
	binaries(t)
	dir := t.TempDir()
	hub := startHub(t, dir+"/hub")
	edges := []*edgeProc{startEdge(t, dir+"/a", "store-a", hub.mqtt), startEdge(t, dir+"/b", "store-b", hub.mqtt)}

	const customers = 30
	var all []map[string]any
	for i := range customers {
		all = append(all, customerEvents("id", i)...)
	}
	// Every event goes to a random edge, in a random order, some twice.
	rng := rand.New(rand.NewPCG(1, 2))
	rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	sent := 0
	for len(all) > 0 {
		n := min(len(all), 1+rng.IntN(7))
		edges[rng.IntN(2)].mustPost(t, all[:n]...)
		if rng.IntN(5) == 0 {
			edges[rng.IntN(2)].mustPost(t, all[:n]...) // a client retry
		}
		sent += n
		all = all[n:]
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("%d events at the hub", sent), func() bool { return hub.events(t) == int64(sent) })

	for i := range customers {
		var p profileJSON
		if code := hub.get(t, fmt.Sprintf("/api/v1/profiles?identifier=email:cust%d@example.com", i), &p); code != 200 {
			t.Fatalf("customer %d: lookup by e-mail: %d", i, code)
		}
		var got []string
		for _, x := range p.Identifiers {
			got = append(got, x.Type+":"+x.Value)
		}
		want := []string{
			fmt.Sprintf("anonymous_id:cc-%d", i), fmt.Sprintf("anonymous_id:kiosk-%d", i), fmt.Sprintf("anonymous_id:web-%d", i),
			fmt.Sprintf("email:cust%d@example.com", i), fmt.Sprintf("loyalty_id:L%05d", i), fmt.Sprintf("phone:+4477009%05d", i),
		}
		if !slices.Equal(got, want) {
			t.Errorf("customer %d: identifiers\n got %v\nwant %v", i, got, want)
		}
		wantOrders, wantRevenue := int64(2), float64(10+i)+5.25
		if i < 10 {
			wantOrders, wantRevenue = 3, wantRevenue+1
		}
		if p.Computed.Orders != wantOrders || p.Computed.Revenue != wantRevenue {
			t.Errorf("customer %d: orders %d revenue %v, want %d and %v", i, p.Computed.Orders, p.Computed.Revenue, wantOrders, wantRevenue)
		}
		// The phone and the loyalty card resolve to the same profile.
		var byPhone profileJSON
		hub.get(t, fmt.Sprintf("/api/v1/profiles?identifier=phone:%%2B4477009%05d", i), &byPhone)
		if byPhone.ID != p.ID {
			t.Errorf("customer %d: phone resolves to %q, e-mail to %q", i, byPhone.ID, p.ID)
		}
	}
	// The store's generic card is shared: it links nobody.
	var info struct {
		Shared    bool   `json:"shared"`
		ProfileID string `json:"profile_id"`
	}
	if code := hub.get(t, "/api/v1/identifiers?identifier=loyalty_id:STORE-GENERIC", &info); code != 200 || !info.Shared || info.ProfileID != "" {
		t.Errorf("generic card: code %d, %+v; want shared and in no profile", code, info)
	}
	// The merge history names the events that linked customer 3.
	var p profileJSON
	hub.get(t, "/api/v1/profiles?identifier=email:cust3@example.com", &p)
	var merges struct {
		Merges []struct {
			Links []struct {
				EventID string `json:"event_id"`
				Linked  bool   `json:"linked"`
			} `json:"links"`
		} `json:"merges"`
	}
	hub.get(t, "/api/v1/profiles/"+p.ID+"/merges", &merges)
	linked := map[string]bool{}
	for _, m := range merges.Merges {
		for _, l := range m.Links {
			if l.Linked {
				linked[l.EventID] = true
			}
		}
	}
	for _, ev := range []string{"id-3-ident", "id-3-pos1", "id-3-kiosk"} {
		if !linked[ev] {
			t.Errorf("merge history of customer 3 does not name %s: %v", ev, linked)
		}
	}
}

// TestNoAckedEventLost sends orders through an edge agent that is killed
// with SIGKILL several times, while the hub (and with it the broker) is
// killed and restarted too. Clients retry failed requests with the same
// message ids, as Segment SDKs do. Afterwards the hub holds every event
// exactly once: per customer, the order count and revenue match.
func TestNoAckedEventLost(t *testing.T) {
	binaries(t)
	dir := t.TempDir()
	hub := startHub(t, dir+"/hub")
	edge := startEdge(t, dir+"/edge", "store-k", hub.mqtt)

	const (
		batches   = 600
		perBatch  = 40
		customers = 50
	)
	type batch struct {
		msgs []map[string]any
	}
	var want [customers]int64
	var all []batch
	n := 0
	for b := range batches {
		var msgs []map[string]any
		for range perBatch {
			c := n % customers
			want[c]++
			msgs = append(msgs, map[string]any{"type": "track", "messageId": fmt.Sprintf("k-%d", n), "userId": fmt.Sprintf("cust-%d", c),
				"event": "Order Completed", "properties": map[string]any{"revenue": 1}})
			n++
		}
		_ = b
		all = append(all, batch{msgs})
	}

	var mu sync.Mutex
	acked := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		for _, b := range all {
			for ctx.Err() == nil {
				if edge.post(ctx, b.msgs) == 200 {
					break
				}
				time.Sleep(10 * time.Millisecond) // the agent is restarting: retry
			}
			mu.Lock()
			acked++
			mu.Unlock()
			// Pace the traffic so that the faults below land in its middle.
			time.Sleep(3 * time.Millisecond)
		}
	}()
	ackedAtLeast := func(k int) func() bool {
		return func() bool { mu.Lock(); defer mu.Unlock(); return acked >= k }
	}
	midTraffic := func() {
		t.Helper()
		mu.Lock()
		defer mu.Unlock()
		if acked >= batches {
			t.Fatal("the sender finished before the fault was injected")
		}
	}
	// Kill the edge three times mid-traffic.
	for _, at := range []int{50, 120, 200} {
		waitFor(t, 60*time.Second, fmt.Sprintf("%d batches acked", at), ackedAtLeast(at))
		midTraffic()
		edge.stop(syscall.SIGKILL)
		edge.restart()
		edge.waitReady(t)
	}
	// Kill the hub (and the embedded broker) while traffic goes on; the
	// edge queues meanwhile.
	waitFor(t, 60*time.Second, "280 batches acked", ackedAtLeast(280))
	midTraffic()
	hub.stop(syscall.SIGKILL)
	waitFor(t, 60*time.Second, "380 batches acked while the hub is down", ackedAtLeast(380))
	midTraffic()
	if s, ok := edge.status(t); !ok || s.QueueDepth == 0 {
		t.Errorf("edge queue should hold events while the hub is down: %+v", s)
	}
	hub.restart()
	hub.waitReady(t)
	// One more edge kill as soon as the hub is back.
	midTraffic()
	edge.stop(syscall.SIGKILL)
	edge.restart()
	edge.waitReady(t)
	select {
	case <-sendDone:
	case <-time.After(120 * time.Second):
		t.Fatal("sender did not finish")
	}
	total := int64(batches * perBatch)
	// Once the edge's queue is empty, the hub has acked everything: it
	// must hold every event by then.
	waitFor(t, 120*time.Second, "edge queue drained", func() bool { s, ok := edge.status(t); return ok && s.QueueDepth == 0 })
	if got := hub.events(t); got != total {
		t.Fatalf("hub holds %d events, want exactly %d", got, total)
	}
	for c := range customers {
		var p profileJSON
		if code := hub.get(t, fmt.Sprintf("/api/v1/profiles?identifier=user_id:cust-%d", c), &p); code != 200 {
			t.Fatalf("customer %d: %d", c, code)
		}
		if p.Computed.Orders != want[c] || p.Computed.Revenue != float64(want[c]) {
			t.Errorf("customer %d: %d orders, revenue %v; want %d of each", c, p.Computed.Orders, p.Computed.Revenue, want[c])
		}
	}
}
