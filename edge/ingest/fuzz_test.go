package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/valyala/fasthttp/fasthttputil"
)

// FuzzIngest posts arbitrary bodies to every ingest endpoint of a server
// running on an in-memory listener, plain and gzip-compressed, and checks
// that it answers every one without a 5xx other than 503.
func FuzzIngest(f *testing.F) {
	for _, b := range []string{goodBatch, badBatch, trackMsg, identifyMsg, pageMsg, screenMsg, groupMsg, aliasMsg,
		`{}`, `[]`, `{"batch":[]}`, `{"batch":[1,"x",null]}`, `{"userId":"u","event":"e","properties":{"revenue":"12"}}`} {
		for ep := range byte(8) {
			f.Add(ep, false, []byte(b))
		}
	}
	f.Add(byte(0), true, []byte(goodBatch))

	app := &memAppender{}
	s, err := New(Config{WriteKeys: []string{"k"}}, nil, app)
	if err != nil {
		f.Fatal(err)
	}
	ln := fasthttputil.NewInmemoryListener()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	// net/http rather than fasthttp.Client: its goroutines end with
	// CloseIdleConnections, so goleak stays meaningful.
	tr := &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) { return ln.Dial() }}
	client := &http.Client{Transport: tr}
	f.Cleanup(func() {
		cancel()
		client.CloseIdleConnections()
		if err := <-done; err != nil {
			f.Errorf("Serve: %v", err)
		}
	})
	paths := []string{"/v1/batch", "/v1/import", "/v1/track", "/v1/identify", "/v1/page", "/v1/screen", "/v1/group", "/v1/alias"}

	f.Fuzz(func(t *testing.T, ep byte, compress bool, body []byte) {
		payload := body
		gzipped := compress || ep&0x80 != 0 // the latter claims gzip for a body that is probably not
		if compress {
			var buf bytes.Buffer
			w := gzip.NewWriter(&buf)
			w.Write(body)
			w.Close()
			payload = buf.Bytes()
		}
		req, err := http.NewRequest("POST", "http://edge"+paths[int(ep)%len(paths)], bytes.NewReader(payload))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", basic("k"))
		if gzipped {
			req.Header.Set("Content-Encoding", "gzip")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("Do: %v", err)
		}
		defer resp.Body.Close()
		rb, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		switch resp.StatusCode {
		case 200, 400, 413:
		default:
			t.Fatalf("status %d for %q: %s", resp.StatusCode, body, rb)
		}
		if resp.StatusCode != 200 && !bytes.HasPrefix(rb, []byte(`{"error":`)) {
			t.Fatalf("error body %q", rb)
		}
	})
}

// FuzzBasicUser checks the Authorization parser on arbitrary headers.
func FuzzBasicUser(f *testing.F) {
	f.Add([]byte(basic("k")))
	f.Add([]byte("Basic"))
	f.Add([]byte("basic =="))
	f.Fuzz(func(t *testing.T, h []byte) {
		user, ok := basicUser(h)
		if ok && len(user) == 0 {
			t.Fatal("empty user accepted")
		}
	})
}
