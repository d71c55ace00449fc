package ingest

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func adminRoutes() map[string]fasthttp.RequestHandler {
	return map[string]fasthttp.RequestHandler{"/v1/op": func(ctx *fasthttp.RequestCtx) {
		ctx.SetBodyString(string(ctx.Method()))
	}}
}

// TestAdminToken: with a token, the admin routes take every method from a
// client with the token and answer 401 to anyone else.
func TestAdminToken(t *testing.T) {
	ts := startServer(t, Config{Admin: adminRoutes(), AdminToken: "s3cret"}, &memAppender{})
	for _, tt := range []struct {
		name, auth string
		code       int
	}{
		{"no token", "", 401},
		{"wrong token", "Bearer nope", 401},
		{"basic auth", basic("s3cret"), 401},
		{"token", "Bearer s3cret", 200},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
				hdr := map[string]string{}
				if tt.auth != "" {
					hdr["Authorization"] = tt.auth
				}
				r := ts.do(t, m, "/v1/op", hdr, nil)
				if r.code != tt.code || (tt.code == 200 && string(r.body) != m) {
					t.Errorf("%s: %d %q, want %d", m, r.code, r.body, tt.code)
				}
			}
		})
	}
}

// TestAdminLocalOnly: without a token, the admin routes answer loopback
// clients only.
func TestAdminLocalOnly(t *testing.T) {
	var ip net.IP
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			ip = n.IP
			break
		}
	}
	if ip == nil {
		t.Skip("no non-loopback IPv4 address to connect from")
	}
	s, err := New(Config{Admin: adminRoutes()}, nil, &memAppender{})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for host, want := range map[string]int{"127.0.0.1": 200, ip.String(): 403} {
		resp, err := client.Post("http://"+net.JoinHostPort(host, strconv.Itoa(port))+"/v1/op", "text/plain", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("from %s: %d, want %d", host, resp.StatusCode, want)
		}
	}
}

// TestPprofRoutes: the runtime profiles answer an operator, and only an
// operator.
func TestPprofRoutes(t *testing.T) {
	ts := startServer(t, Config{Admin: PprofRoutes(), AdminToken: "s3cret"}, &memAppender{})
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	for _, path := range []string{"/debug/pprof/cmdline", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1"} {
		if r := ts.do(t, http.MethodGet, path, auth, nil); r.code != 200 || len(r.body) == 0 {
			t.Errorf("%s: %d, %d bytes", path, r.code, len(r.body))
		}
		if r := ts.do(t, http.MethodGet, path, nil, nil); r.code != 401 {
			t.Errorf("%s without the token: %d, want 401", path, r.code)
		}
	}
	if r := ts.do(t, http.MethodGet, "/debug/pprof/profile?seconds=1", auth, nil); r.code != 200 || len(r.body) == 0 {
		t.Errorf("CPU profile: %d, %d bytes", r.code, len(r.body))
	}
}
