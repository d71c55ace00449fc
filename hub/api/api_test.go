package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/protocol"
)

const token = "t0ken"

func setup(t *testing.T) (*httptest.Server, *store.Store) {
	t.Helper()
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	a, err := New(Config{AdminToken: token, Store: st}, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	at := time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC)
	ev := func(id string, minute int, name string, ids ...protocol.Identifier) protocol.Event {
		return protocol.Event{ID: id, Type: protocol.TypeTrack, Name: name, Channel: "pos",
			Source: protocol.Source{Tenant: "t", Site: "s1", Edge: "e1"}, Identifiers: ids,
			Properties: map[string]any{"revenue": 20.0}, OccurredAt: at.Add(time.Duration(minute) * time.Minute), ReceivedAt: at}
	}
	email := protocol.Identifier{Type: "email", Value: "ana@example.com"}
	card := protocol.Identifier{Type: "loyalty_id", Value: "L1"}
	phone := protocol.Identifier{Type: "phone", Value: "+447700900123"}
	if _, err := st.Commit(context.Background(), &protocol.Batch{Tenant: "t", EdgeID: "e1", LastSeq: 3, Events: []protocol.Event{
		ev("e1", 1, "Order Completed", email),
		ev("e2", 2, "Order Completed", card, email),
		ev("e3", 3, "Call Completed", phone, email),
	}}); err != nil {
		t.Fatal(err)
	}
	return srv, st
}

func do(t *testing.T, srv *httptest.Server, method, path, body string, auth bool) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if auth {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, m
}

func TestAPI(t *testing.T) {
	srv, _ := setup(t)
	code, p := do(t, srv, "GET", "/api/v1/profiles?identifier=email:ANA@example.com", "", true)
	if code != 200 {
		t.Fatalf("lookup: %d %v", code, p)
	}
	pid := p["id"].(string)
	tests := []struct {
		name, method, path, body string
		auth                     bool
		code                     int
		field                    string
	}{
		{"no token", "GET", "/api/v1/stats", "", false, 401, "Authorization"},
		{"stats", "GET", "/api/v1/stats", "", true, 200, ""},
		{"by id", "GET", "/api/v1/profiles/" + pid, "", true, 200, ""},
		{"unknown id", "GET", "/api/v1/profiles/p_nope", "", true, 404, ""},
		{"bad identifier", "GET", "/api/v1/profiles?identifier=nocolon", "", true, 400, "identifier"},
		{"unknown identifier", "GET", "/api/v1/profiles?identifier=email:x@y.z", "", true, 404, ""},
		{"phone with spaces", "GET", "/api/v1/profiles?identifier=phone:%2B44%207700%20900123", "", true, 200, ""},
		{"list", "GET", "/api/v1/profiles?limit=10", "", true, 200, ""},
		{"bad limit", "GET", "/api/v1/profiles?limit=0", "", true, 400, "limit"},
		{"bad cursor", "GET", "/api/v1/profiles/" + pid + "/events?cursor=%21%21", "", true, 400, "cursor"},
		{"events", "GET", "/api/v1/profiles/" + pid + "/events?limit=2", "", true, 200, ""},
		{"merges", "GET", "/api/v1/profiles/" + pid + "/merges", "", true, 200, ""},
		{"edges", "GET", "/api/v1/edges", "", true, 200, ""},
		{"identifier info", "GET", "/api/v1/identifiers?identifier=loyalty_id:L1", "", true, 200, ""},
		{"unknown endpoint", "GET", "/api/v1/nope", "", true, 404, ""},
		{"unmerge bad json", "POST", "/api/v1/profiles/" + pid + "/unmerge", "{", true, 400, "identifier"},
		{"unmerge not held", "POST", "/api/v1/profiles/" + pid + "/unmerge", `{"identifier":"email:other@x.com"}`, true, 409, "identifier"},
		{"import not an array", "POST", "/api/v1/events", `{}`, true, 400, ""},
		{"import missing id", "POST", "/api/v1/events", `[{"type":"identify","occurred_at":"2026-01-01T00:00:00Z"}]`, true, 400, "[0].id"},
		{"healthz", "GET", "/healthz", "", false, 200, ""},
		{"metrics", "GET", "/metrics", "", false, 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := do(t, srv, tt.method, tt.path, tt.body, tt.auth)
			if code != tt.code {
				t.Fatalf("code %d, want %d: %v", code, tt.code, body)
			}
			if tt.field != "" && body["field"] != tt.field {
				t.Fatalf("field %v, want %q: %v", body["field"], tt.field, body)
			}
			if code >= 400 && body != nil && body["error"] == nil {
				t.Fatalf("error body without error: %v", body)
			}
		})
	}
}

func TestEventsPaging(t *testing.T) {
	srv, _ := setup(t)
	_, p := do(t, srv, "GET", "/api/v1/profiles?identifier=email:ana@example.com", "", true)
	pid := p["id"].(string)
	var ids []string
	cursor := ""
	for range 5 {
		code, page := do(t, srv, "GET", "/api/v1/profiles/"+pid+"/events?limit=1&cursor="+url.QueryEscape(cursor), "", true)
		if code != 200 {
			t.Fatalf("page: %d", code)
		}
		for _, e := range page["events"].([]any) {
			ids = append(ids, e.(map[string]any)["id"].(string))
		}
		next, _ := page["next"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if got, want := strings.Join(ids, ","), "e3,e2,e1"; got != want {
		t.Fatalf("timeline pages %s, want %s (newest first, each once)", got, want)
	}
}

func TestUnmergeAndImport(t *testing.T) {
	srv, st := setup(t)
	_, p := do(t, srv, "GET", "/api/v1/profiles?identifier=email:ana@example.com", "", true)
	pid := p["id"].(string)
	code, res := do(t, srv, "POST", "/api/v1/profiles/"+pid+"/unmerge", `{"identifier":"phone:+447700900123"}`, true)
	if code != 200 {
		t.Fatalf("unmerge: %d %v", code, res)
	}
	split := res["split"].(map[string]any)
	if split["id"] == pid || len(split["identifiers"].([]any)) != 1 {
		t.Fatalf("split profile: %v", split)
	}
	if info, err := st.Identifier(protocol.Identifier{Type: "phone", Value: "+447700900123"}); err != nil || !info.Isolated {
		t.Fatalf("phone after unmerge: %+v %v", info, err)
	}
	evs := []protocol.Event{{ID: "imp1", Type: "identify", Identifiers: []protocol.Identifier{{Type: "email", Value: "bob@example.com"}}, OccurredAt: time.Now()}}
	body, _ := json.Marshal(evs)
	for i, want := range []float64{1, 0} { // the second import is a duplicate
		code, res = do(t, srv, "POST", "/api/v1/events", string(body), true)
		if code != 200 || res["accepted"] != want {
			t.Fatalf("import %d: %d %v", i, code, res)
		}
	}
	// Bodies over the limit are refused with 413.
	big := bytes.Repeat([]byte(" "), MaxImportBody+1)
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/events", bytes.NewReader(append([]byte("["), big...)))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 {
		t.Fatalf("big import: %d", resp.StatusCode)
	}
}
