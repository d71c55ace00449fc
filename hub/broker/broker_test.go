package broker

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/unico-cdp/unico/internal/testkit"
)

// syncBuffer is a bytes.Buffer safe for the broker's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestConnectionEndsAreNamed checks what the log says when a client's
// connection ends: a client that closes it is a debug record, one that
// sends garbage a warning, and neither has an empty message.
func TestConnectionEndsAreNamed(t *testing.T) {
	for _, tc := range []struct {
		name, send, want string
	}{
		{"closed", "", `level=DEBUG msg="client connection closed"`},
		{"garbage", "\xff\xff\xff\xff\xff", `level=WARN msg="client connection failed"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out syncBuffer
			b, err := New(Config{}, slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- b.Serve(ctx, ln) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Error(err)
				}
			}()
			conn, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			if tc.send != "" {
				if _, err := conn.Write([]byte(tc.send)); err != nil {
					t.Fatal(err)
				}
				// The broker closes a connection it cannot read: wait
				// for that before closing it as the client.
				conn.SetReadDeadline(time.Now().Add(10 * time.Second))
				_, _ = conn.Read(make([]byte, 16))
			}
			conn.Close()
			testkit.WaitFor(t, 10*time.Second, "the record "+tc.want, func() bool { return strings.Contains(out.String(), tc.want) })
			log := out.String()
			if strings.Contains(log, `msg=""`) {
				t.Fatalf("a record without message:\n%s", log)
			}
		})
	}
}
