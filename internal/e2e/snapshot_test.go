package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"syscall"
	"testing"
	"time"
)

type lookupJSON struct {
	ProfileID   string `json:"profile_id"`
	Identifiers []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"identifiers"`
	Computed map[string]any `json:"computed"`
	Offers   []struct {
		Product string  `json:"product"`
		Score   float64 `json:"score"`
		Reason  string  `json:"reason"`
	} `json:"offers"`
}

// lookup asks an edge's local profile cache; it returns the HTTP status.
func (e *edgeProc) lookup(t testing.TB, typ, value string) (int, lookupJSON) {
	t.Helper()
	var l lookupJSON
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/profiles/lookup?type=%s&value=%s", e.http, url.QueryEscape(typ), url.QueryEscape(value)))
	if err != nil {
		return 0, l
	}
	defer resp.Body.Close()
	if resp.StatusCode == 200 {
		if err := json.NewDecoder(resp.Body).Decode(&l); err != nil {
			t.Fatalf("lookup: %v", err)
		}
	}
	return resp.StatusCode, l
}

func order(id, user string, at time.Time, loyalty string, products ...string) map[string]any {
	var ps []any
	for _, p := range products {
		ps = append(ps, map[string]any{"product_id": p, "name": p, "price": 20, "quantity": 1})
	}
	m := map[string]any{"type": "track", "messageId": id, "event": "Order Completed", "timestamp": at.UTC().Format(time.RFC3339Nano),
		"properties": map[string]any{"revenue": 20 * len(products), "products": ps}}
	if loyalty != "" {
		m["properties"].(map[string]any)["loyalty_id"] = loyalty
	}
	if user != "" {
		m["userId"] = user
	} else {
		m["anonymousId"] = "till-1"
	}
	return m
}

// TestPillowScenario is the offline personalization story end to end with
// real binaries: a customer browses pillows on the web, identifies with her
// e-mail, buys pillows at store B with a loyalty card linked to that
// e-mail; seconds later the kiosk at store A looks her up by card and is
// offered pillow covers, not pillows. Store A's link to the hub is then
// cut: it keeps answering from its cache, and on reconnect it catches up
// with what it missed, including a tombstone for a profile merged away.
func TestPillowScenario(t *testing.T) {
	binaries(t)
	dir := t.TempDir()
	salt := "tenant-salt"
	hub := startHub(t, dir+"/hub", "--snapshot-scope", "region", "--snapshot-regions", "store-a=north,store-b=north",
		"--snapshot-hash-salt", salt, "--offers-refresh", "300ms")
	link := newLinkProxy(t, fmt.Sprintf("127.0.0.1:%d", hub.mqtt))
	storeA := startEdge(t, dir+"/a", "store-a", hub.mqtt, "--hub-url", "mqtt://"+link.addr, "--snapshot-hash-salt", salt)
	storeB := startEdge(t, dir+"/b", "store-b", hub.mqtt, "--snapshot-hash-salt", salt)

	now := time.Now()
	// Other customers teach the hub that pillow buyers buy covers later.
	for i := range 6 {
		u := fmt.Sprintf("trainer-%d", i)
		storeB.mustPost(t,
			order(u+"-1", u, now.Add(-20*24*time.Hour), "", "P-PILLOW"),
			order(u+"-2", u, now.Add(-12*24*time.Hour), "", "P-PILLOW-COVER"),
		)
	}
	var probe profileJSON
	waitFor(t, 60*time.Second, "the hub to hold the trainers", func() bool {
		return hub.get(t, "/api/v1/profiles?identifier=user_id:trainer-0", &probe) == 200
	})
	// Wait until the offers model has learnt the rule (a pillow-only buyer
	// is offered covers).
	storeB.mustPost(t, order("probe-1", "probe", now.Add(-time.Hour), "", "P-PILLOW"))
	waitFor(t, 60*time.Second, "offers learnt", func() bool {
		var p profileJSON
		if hub.get(t, "/api/v1/profiles?identifier=user_id:probe", &p) != 200 {
			return false
		}
		var o struct {
			Offers []struct{ Product string } `json:"offers"`
		}
		return hub.get(t, "/api/v1/profiles/"+p.ID+"/offers", &o) == 200 && len(o.Offers) > 0 && o.Offers[0].Product == "P-PILLOW-COVER"
	})

	// Ana: browses pillows anonymously, identifies with her e-mail, buys
	// pillows at store B with her loyalty card and e-mail.
	storeB.mustPost(t,
		map[string]any{"type": "page", "messageId": "ana-page", "anonymousId": "anon-ana", "name": "Pillows", "context": map[string]any{"channel": "browser"}},
		map[string]any{"type": "identify", "messageId": "ana-ident", "anonymousId": "anon-ana", "traits": map[string]any{"email": "Ana@Example.com", "first_name": "Ana"}, "context": map[string]any{"channel": "browser"}},
	)
	storeB.mustPost(t, func() map[string]any {
		m := order("ana-pos", "", now, "L-ANA", "P-PILLOW")
		m["context"] = map[string]any{"traits": map[string]any{"email": "ana@example.com"}}
		return m
	}())
	// Bob exists as two profiles for now: his card and his e-mail.
	storeB.mustPost(t, order("bob-pos", "", now, "L-BOB", "P-DUVET"),
		map[string]any{"type": "identify", "messageId": "bob-web", "anonymousId": "anon-bob", "traits": map[string]any{"email": "bob@example.com"}})

	var ana lookupJSON
	waitFor(t, 60*time.Second, "store A to offer Ana pillow covers", func() bool {
		code, l := storeA.lookup(t, "loyalty_id", "L-ANA")
		ana = l
		return code == 200 && len(l.Offers) > 0
	})
	if ana.Offers[0].Product != "P-PILLOW-COVER" {
		t.Fatalf("Ana's first offer at store A: %+v", ana.Offers)
	}
	for _, o := range ana.Offers {
		if o.Product == "P-PILLOW" {
			t.Fatalf("Ana is offered pillows again: %+v", ana.Offers)
		}
	}
	if code, byMail := storeA.lookup(t, "email", " ANA@example.com"); code != 200 || byMail.ProfileID != ana.ProfileID {
		t.Fatalf("lookup by e-mail at store A: %d %+v", code, byMail)
	}
	var bobCard lookupJSON
	waitFor(t, 60*time.Second, "Bob's two profiles at store A", func() bool {
		c1, l := storeA.lookup(t, "loyalty_id", "L-BOB")
		c2, _ := storeA.lookup(t, "email", "bob@example.com")
		bobCard = l
		return c1 == 200 && c2 == 200
	})
	_, bobMail := storeA.lookup(t, "email", "bob@example.com")
	if bobMail.ProfileID == bobCard.ProfileID {
		t.Fatalf("Bob's card and e-mail should still be two profiles")
	}

	// Store A's WAN goes down.
	link.cut()
	waitFor(t, 30*time.Second, "store A to notice", func() bool { s, ok := storeA.status(t); return ok && !s.HubConnected })
	if code, l := storeA.lookup(t, "loyalty_id", "L-ANA"); code != 200 || l.ProfileID != ana.ProfileID {
		t.Fatalf("offline lookup at store A: %d %+v", code, l)
	}
	// Meanwhile at store B: Ana buys again; Bob links his card and e-mail,
	// so one of his two profiles is merged away.
	storeB.mustPost(t, order("ana-pos-2", "", now.Add(time.Minute), "L-ANA", "P-DUVET"))
	storeB.mustPost(t, map[string]any{"type": "identify", "messageId": "bob-kiosk", "anonymousId": "kiosk-1",
		"traits": map[string]any{"email": "bob@example.com", "loyalty_id": "L-BOB"}, "context": map[string]any{"channel": "kiosk"}})
	var bob profileJSON
	waitFor(t, 60*time.Second, "the hub to merge Bob", func() bool {
		return hub.get(t, "/api/v1/profiles?identifier=loyalty_id:L-BOB", &bob) == 200 && len(bob.Identifiers) >= 3
	})
	// Store A still answers with what it had.
	if code, l := storeA.lookup(t, "loyalty_id", "L-ANA"); code != 200 || l.Computed["orders"] != float64(1) {
		t.Fatalf("offline lookup should still show the old snapshot: %d %+v", code, l.Computed)
	}

	// The link comes back: store A catches up.
	link.restore()
	waitFor(t, 90*time.Second, "store A to catch up", func() bool {
		c1, a := storeA.lookup(t, "loyalty_id", "L-ANA")
		c2, b1 := storeA.lookup(t, "loyalty_id", "L-BOB")
		c3, b2 := storeA.lookup(t, "email", "bob@example.com")
		return c1 == 200 && a.Computed["orders"] == float64(2) && c2 == 200 && c3 == 200 && b1.ProfileID == bob.ID && b2.ProfileID == bob.ID
	})
	// The profile merged away is gone from store A (a tombstone).
	gone := bobCard.ProfileID
	if gone == bob.ID {
		gone = bobMail.ProfileID
	}
	for _, x := range [][2]string{{"loyalty_id", "L-BOB"}, {"email", "bob@example.com"}} {
		if _, l := storeA.lookup(t, x[0], x[1]); l.ProfileID == gone {
			t.Fatalf("store A still resolves %s to the merged-away profile %s", x, gone)
		}
	}
	var ids []string
	_, b := storeA.lookup(t, "loyalty_id", "L-BOB")
	for _, x := range b.Identifiers {
		ids = append(ids, x.Type)
	}
	if !slices.Contains(ids, "email") || !slices.Contains(ids, "loyalty_id") {
		t.Fatalf("Bob at store A after catching up: %+v", b)
	}
}

// TestFullSyncSurvivesSIGKILL kills an edge agent with SIGKILL in the
// middle of its first full sync; after restarting it holds exactly the
// hub's set of profiles.
func TestFullSyncSurvivesSIGKILL(t *testing.T) {
	binaries(t)
	dir := t.TempDir()
	hub := startHub(t, dir+"/hub", "--snapshot-scope", "all")
	// Enough profiles that the sync takes a while even on a fast machine.
	const profiles, perRequest = 20000, 5000
	for start := 0; start < profiles; start += perRequest {
		var evs []map[string]any
		for i := start; i < start+perRequest; i++ {
			evs = append(evs, map[string]any{"id": fmt.Sprintf("imp-%d", i), "type": "identify", "channel": "import",
				"identifiers": []map[string]string{{"type": "loyalty_id", "value": fmt.Sprintf("C%05d", i)}},
				"traits":      map[string]any{"first_name": fmt.Sprint("N", i)}, "occurred_at": time.Now().UTC().Format(time.RFC3339Nano)})
		}
		body, _ := json.Marshal(evs)
		req, _ := http.NewRequest(http.MethodPost, hub.url("/api/v1/events"), bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+adminToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("import: %v %v", err, resp)
		}
		resp.Body.Close()
	}

	edge := startEdge(t, dir+"/a", "store-a", hub.mqtt)
	var s cacheStatus
	waitFor(t, 60*time.Second, "the full sync to start", func() bool {
		var ok bool
		s, ok = edge.cacheStatus(t)
		return ok && s.ProfilesCached > 0
	})
	if s.ProfilesCached >= profiles {
		t.Fatalf("the full sync finished before the kill (%d profiles): nothing was interrupted", s.ProfilesCached)
	}
	edge.stop(syscall.SIGKILL)
	t.Logf("killed at %d profiles", s.ProfilesCached)
	edge.restart()
	edge.waitReady(t)
	t0 := time.Now()
	last := int64(-1)
	waitFor(t, 120*time.Second, "the edge to hold every profile", func() bool {
		s, ok := edge.cacheStatus(t)
		if ok && s.ProfilesCached != last {
			t.Logf("%v: %d profiles, seq %d", time.Since(t0).Round(time.Millisecond), s.ProfilesCached, s.AppliedSeq)
			last = s.ProfilesCached
		}
		return ok && s.ProfilesCached == profiles
	})
	for _, i := range []int{0, 1, profiles / 2, profiles - 1} {
		if code, l := edge.lookup(t, "loyalty_id", fmt.Sprintf("C%05d", i)); code != 200 || len(l.Identifiers) != 1 {
			t.Fatalf("lookup C%05d: %d %+v", i, code, l)
		}
	}
	// Nothing more arrives: the count stays exact.
	if s, _ := edge.cacheStatus(t); s.ProfilesCached != profiles {
		t.Fatalf("edge holds %d profiles, the hub %d", s.ProfilesCached, profiles)
	}
}

type cacheStatus struct {
	ProfilesCached int64  `json:"profiles_cached"`
	AppliedSeq     uint64 `json:"snapshot_applied_seq"`
}

func (e *edgeProc) cacheStatus(t testing.TB) (cacheStatus, bool) {
	var s cacheStatus
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/v1/status", e.http))
	if err != nil {
		return s, false
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s) == nil
}
