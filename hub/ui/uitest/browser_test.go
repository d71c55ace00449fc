// Package uitest tests the hub's web UI in headless Chromium against the
// real hub binary: it builds cmd/hub, starts it on free ports, feeds it
// events through POST /api/v1/events and loads the page with a URL fragment
// that opens a profile, then checks the DOM Chromium dumps.
package uitest

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

const chromium = "/usr/bin/chromium"

const token = "ui-test-token"

var screenshots = flag.String("screenshots", "", "also write the test's screenshots to this `directory`")

// hub is a running hub binary.
type hub struct {
	url string // http://127.0.0.1:port
	log *bytes.Buffer
}

func skipUnlessBrowser(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIP: browser test under -short")
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("SKIP: chromium not installed (" + chromium + ")")
	}
}

// moduleRoot is the directory of go.mod, three levels above this package.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found at %s: %v", root, err)
	}
	return root
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// startHub builds and starts the hub binary and waits until it is ready.
func startHub(t *testing.T) *hub {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "hub")
	build := exec.CommandContext(t.Context(), "go", "build", "-o", bin, "./cmd/hub")
	build.Dir = moduleRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/hub: %v\n%s", err, out)
	}
	httpAddr, mqttAddr := freeAddr(t), freeAddr(t)
	h := &hub{url: "http://" + httpAddr, log: &bytes.Buffer{}}
	cmd := exec.Command(bin,
		"--data-dir", filepath.Join(dir, "data"),
		"--http-addr", httpAddr,
		"--mqtt-addr", mqttAddr,
		"--admin-token", token)
	cmd.Env = cleanEnv()
	cmd.Stdout, cmd.Stderr = h.log, h.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("hub log:\n%s", h.log)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get(h.url + "/healthz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return h
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("hub exited before it was ready: %v\n%s", err, h.log)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub not ready after 30s: %v\n%s", err, h.log)
		}
		time.Sleep(50 * time.Millisecond) // poll interval, not a wait for an outcome
	}
}

// cleanEnv is the environment without UNICO_ settings that could change
// the hub's configuration.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "UNICO_") {
			env = append(env, kv)
		}
	}
	return env
}

func (h *hub) post(t *testing.T, path string, body any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, h.url+path, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(res.Body)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", path, res.StatusCode, out.String())
	}
}

// Customer data fed to the hub.
const (
	anonID    = "anon-7f3c9a"
	email     = "ana.silva@example.com"
	loyaltyID = "LOY-000451"
	identify  = "evt-identify-0001"
	order     = "evt-pos-order-0001"
	pageView  = "evt-web-page-0001"
	contact   = "evt-call-0001"
	conflict  = "evt-kiosk-visit-0001"
	// A second customer presents two loyalty cards: one link is refused.
	otherEmail = "bruno@example.com"
	otherCard  = "LOY-000999"
	thirdCard  = "LOY-000998"
)

// seed sends an anonymous web visit, an identify that links the anonymous
// id with an e-mail, a store order that links a loyalty card with the same
// e-mail and a call: one profile with three identifiers and two merges.
// A second customer shows two loyalty cards, so one link is refused.
func seed(t *testing.T, h *hub) {
	t.Helper()
	base := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	src := func(site, edge string) map[string]string {
		return map[string]string{"tenant": "default", "site": site, "edge": edge}
	}
	ids := func(kv ...string) []map[string]string {
		var out []map[string]string
		for i := 0; i < len(kv); i += 2 {
			out = append(out, map[string]string{"type": kv[i], "value": kv[i+1]})
		}
		return out
	}
	at := func(d time.Duration) string { return base.Add(d).Format(time.RFC3339) }
	events := []map[string]any{
		{
			"id": pageView, "type": "page", "name": "Summer sale", "channel": "web",
			"source":      src("web", "web-1"),
			"identifiers": ids("anonymous_id", anonID),
			"properties":  map[string]any{"url": "https://shop.example.com/sale", "path": "/sale"},
			"occurred_at": at(0), "received_at": at(time.Second),
		},
		{
			"id": identify, "type": "identify", "channel": "web",
			"source":      src("web", "web-1"),
			"identifiers": ids("anonymous_id", anonID, "email", email),
			"traits":      map[string]any{"first_name": "Ana", "last_name": "Silva", "city": "Lisbon <b>bold</b>"},
			"consent":     map[string]bool{"email_marketing": true, "sms_marketing": false},
			"occurred_at": at(10 * time.Minute), "received_at": at(10*time.Minute + time.Second),
		},
		{
			"id": order, "type": "track", "name": "Order Completed", "channel": "pos",
			"source":      src("lisbon-chiado", "store-12"),
			"identifiers": ids("loyalty_id", loyaltyID, "email", email),
			"properties": map[string]any{
				"order_id": "POS-12-8812", "revenue": 129.9, "currency": "EUR",
				"products": []map[string]any{{"sku": "TSHIRT-01", "price": 29.9}, {"sku": "JEANS-07", "price": 100}},
			},
			"occurred_at": at(2 * time.Hour), "received_at": at(2*time.Hour + time.Second),
		},
		{
			"id": contact, "type": "track", "name": "contact.call", "channel": "contact_center",
			"source":      src("cc-porto", "cc-1"),
			"identifiers": ids("email", email),
			"properties":  map[string]any{"reason": "delivery_delay", "duration_s": 240},
			"occurred_at": at(150 * time.Minute), "received_at": at(150*time.Minute + time.Second),
		},
		{
			"id": "evt-kiosk-visit-0000", "type": "track", "name": "Store Visit", "channel": "kiosk",
			"source":      src("lisbon-chiado", "store-12"),
			"identifiers": ids("loyalty_id", thirdCard, "email", otherEmail),
			"occurred_at": at(155 * time.Minute), "received_at": at(155*time.Minute + time.Second),
		},
		{
			"id": conflict, "type": "track", "name": "Store Visit", "channel": "kiosk",
			"source":      src("lisbon-chiado", "store-12"),
			"identifiers": ids("loyalty_id", otherCard, "email", otherEmail),
			"occurred_at": at(160 * time.Minute), "received_at": at(160*time.Minute + time.Second),
		},
	}
	h.post(t, "/api/v1/events", events)
}

// browser runs headless Chromium with args and the page URL, returning
// its standard output.
func browser(t *testing.T, url string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	all := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(),
		"--virtual-time-budget=5000",
	}, args...)
	all = append(all, url)
	cmd := exec.CommandContext(ctx, chromium, all...)
	cmd.Env = append(cleanEnv(), "HOME="+t.TempDir())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return stdout.String()
}

// section returns the dumped HTML of the element with id up to the next
// element with one of the ids in until (or the end).
func section(t *testing.T, dom, id string, until ...string) string {
	t.Helper()
	i := strings.Index(dom, `id="`+id+`"`)
	if i < 0 {
		t.Fatalf("DOM has no element #%s:\n%s", id, dom)
	}
	s := dom[i:]
	for _, u := range until {
		if j := strings.Index(s, `id="`+u+`"`); j >= 0 {
			s = s[:j]
		}
	}
	return s
}

var tags = regexp.MustCompile(`<[^>]*>`)

// text strips tags so that assertions read like what the user sees.
func text(html string) string {
	return strings.Join(strings.Fields(tags.ReplaceAllString(html, " ")), " ")
}

func TestProfilePage(t *testing.T) {
	skipUnlessBrowser(t)
	h := startHub(t)
	seed(t, h)

	dom := browser(t, h.url+"/#token="+token+"&q=email:"+email, "--dump-dom")

	ids := text(section(t, dom, "identifiers", "computed"))
	for _, want := range []string{anonID, email, loyaltyID, "unmerge"} {
		if !strings.Contains(ids, want) {
			t.Errorf("identifiers section lacks %q: %s", want, ids)
		}
	}
	if !strings.Contains(dom, `<span id="metric-orders">1</span>`) {
		t.Errorf("order count 1 not shown: %s", text(section(t, dom, "computed", "traits")))
	}
	traits := text(section(t, dom, "traits", "consent"))
	for _, want := range []string{"Ana", "Silva", identify} {
		if !strings.Contains(traits, want) {
			t.Errorf("traits section lacks %q: %s", want, traits)
		}
	}
	// A trait value with markup is shown as text, not parsed.
	if strings.Contains(dom, "<b>bold</b>") || !strings.Contains(dom, "Lisbon &lt;b&gt;bold&lt;/b&gt;") {
		t.Errorf("trait value with markup not escaped: %s", traits)
	}
	consent := text(section(t, dom, "consent", "merges"))
	for _, want := range []string{"email marketing granted", "sms marketing denied"} {
		if !strings.Contains(consent, want) {
			t.Errorf("consent section lacks %q: %s", want, consent)
		}
	}
	merges := text(section(t, dom, "merges", "timeline"))
	for _, want := range []string{
		"Event " + identify + " linked",
		"Event " + order + " linked",
		"loyalty_id:" + loyaltyID,
	} {
		if !strings.Contains(merges, want) {
			t.Errorf("merge history lacks %q: %s", want, merges)
		}
	}
	timeline := text(section(t, dom, "timeline"))
	for _, want := range []string{order, identify, pageView, contact, "Order Completed", "2 products", "lisbon-chiado", "reason: delivery_delay"} {
		if !strings.Contains(timeline, want) {
			t.Errorf("timeline lacks %q: %s", want, timeline)
		}
	}
	stats := text(section(t, dom, "stats", "signout"))
	if !strings.Contains(stats, "Events 6") {
		t.Errorf("header stats lack the event count: %s", stats)
	}

	for _, shot := range []struct{ name, size, fragment string }{
		{"profile-1280.png", "1280,1600", "#token=" + token + "&q=email:" + email},
		{"profile-narrow.png", "420,2400", "#token=" + token + "&q=email:" + email},
		{"conflicted-1280.png", "1280,1100", "#token=" + token + "&q=email:" + otherEmail},
		{"signin-1280.png", "1280,600", ""},
	} {
		file := filepath.Join(t.TempDir(), shot.name)
		browser(t, h.url+"/"+shot.fragment, "--screenshot="+file, "--window-size="+shot.size)
		png, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if !bytes.HasPrefix(png, []byte("\x89PNG")) {
			t.Fatalf("screenshot %s is not a PNG", shot.name)
		}
		if *screenshots != "" {
			if err := os.WriteFile(filepath.Join(*screenshots, shot.name), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func TestSearchMessages(t *testing.T) {
	skipUnlessBrowser(t)
	h := startHub(t)
	seed(t, h)

	tests := []struct {
		name, fragment, want string
	}{
		{"bare e-mail is guessed", "#token=" + token + "&q=" + email, "Customer value and activity"},
		{"bare loyalty id is guessed", "#token=" + token + "&q=" + loyaltyID, "Customer value and activity"},
		{"conflicted profile", "#token=" + token + "&q=email:" + otherEmail, "conflicted"},
		{"refused link", "#token=" + token + "&q=email:" + otherEmail, "refused: a profile may hold only a limited number of loyalty id"},
		{"unknown e-mail", "#token=" + token + "&q=nobody@example.com", "no profile holds email:nobody@example.com"},
		{"unknown bare value", "#token=" + token + "&q=XYZ-1", "no profile holds loyalty_id:XYZ-1 or user_id:XYZ-1"},
		{"wrong token shows the form", "#token=wrong&q=" + email, "The token was refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dom := text(browser(t, h.url+"/"+tt.fragment, "--dump-dom"))
			if !strings.Contains(dom, tt.want) {
				t.Errorf("page lacks %q:\n%s", tt.want, dom)
			}
		})
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	if *screenshots != "" {
		if err := os.MkdirAll(*screenshots, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
	}
	os.Exit(m.Run())
}
