package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unico-cdp/unico/protocol"
)

// memAppender keeps appended batches in memory and can be told to fail or
// to block.
type memAppender struct {
	mu      sync.Mutex
	batches [][]protocol.Event
	err     error
	// entered receives one value when an Append starts (if non-nil);
	// release, if non-nil, must be closed before Append returns.
	entered chan struct{}
	release chan struct{}
}

// AppendEncoded decodes the events, as the hub will, and keeps them.
func (a *memAppender) AppendEncoded(ctx context.Context, encoded []protocol.EncodedEvent) error {
	if a.entered != nil {
		a.entered <- struct{}{}
	}
	if a.release != nil {
		select {
		case <-a.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.err != nil {
		return a.err
	}
	evs := make([]protocol.Event, len(encoded))
	for i, e := range encoded {
		if err := protocol.UnmarshalEvent(e.Data, &evs[i]); err != nil {
			return fmt.Errorf("event %d: %w", i, err)
		}
		if evs[i].Channel != e.Channel {
			return fmt.Errorf("event %d: channel %q, encoded as %q", i, e.Channel, evs[i].Channel)
		}
	}
	a.batches = append(a.batches, evs)
	return nil
}

func (a *memAppender) events() []protocol.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []protocol.Event
	for _, b := range a.batches {
		out = append(out, b...)
	}
	return out
}

// testServer is a Server running on a loopback port.
type testServer struct {
	*Server
	url    string
	client *http.Client
	cancel context.CancelFunc
	done   chan error
}

func startServer(t testing.TB, cfg Config, app Appender) *testServer {
	t.Helper()
	s, err := New(cfg, nil, app)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{
		Server: s,
		url:    "http://" + ln.Addr().String(),
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}},
		cancel: cancel,
		done:   make(chan error, 1),
	}
	go func() { ts.done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { ts.stop(t) })
	return ts
}

// stop cancels Serve and waits for it to return (idempotent).
func (ts *testServer) stop(t testing.TB) {
	t.Helper()
	ts.cancel()
	ts.client.CloseIdleConnections()
	select {
	case err, ok := <-ts.done:
		if ok && err != nil {
			t.Errorf("Serve: %v", err)
		}
		if ok {
			close(ts.done)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after cancel")
	}
}

type response struct {
	code   int
	header http.Header
	body   []byte
}

func (ts *testServer) do(t testing.TB, method, path string, hdr map[string]string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

// doHead writes only the head of a request announcing a body of n bytes and
// reads the response: for limits enforced on Content-Length, where the server
// answers and closes without reading the body.
func (ts *testServer) doHead(t testing.TB, method, path string, hdr map[string]string, n int) response {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	var head strings.Builder
	fmt.Fprintf(&head, "%s %s HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n", method, path, n)
	for k, v := range hdr {
		fmt.Fprintf(&head, "%s: %s\r\n", k, v)
	}
	head.WriteString("\r\n")
	if _, err := io.WriteString(conn, head.String()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, b}
}

func basic(key string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(key+":"))
}

func gz(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

var errBoom = errors.New("disk on fire")
