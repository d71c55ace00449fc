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

	paho "github.com/eclipse/paho.mqtt.golang"

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

// serve starts a broker on a free loopback port until the test ends, and
// returns it with its address.
func serve(t *testing.T, logger *slog.Logger) (*Broker, string) {
	t.Helper()
	b, err := New(Config{}, logger)
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
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return b, ln.Addr().String()
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
			_, addr := serve(t, slog.New(slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})))
			conn, err := net.Dial("tcp", addr)
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

// TestInline checks the hub's inline subscriptions: a client's message
// reaches the handler with its topic and payload, Publish reaches a
// client, Unsubscribe ends deliveries, and shared or repeated filters are
// refused.
func TestInline(t *testing.T) {
	b, addr := serve(t, testkit.Logger(t, slog.LevelDebug))

	type msg struct{ topic, payload string }
	got := make(chan msg, 16)
	handler := func(topic string, payload []byte) { got <- msg{topic, string(payload)} }
	if err := b.Subscribe("a/+/x", handler); err != nil {
		t.Fatal(err)
	}
	if err := b.Subscribe("a/+/x", handler); err == nil {
		t.Fatal("a second subscription to the same filter was accepted")
	}
	if err := b.Subscribe("$share/g/a/+/y", handler); err == nil {
		t.Fatal("a shared inline subscription was accepted")
	}
	if err := b.Subscribe("a/+/y", handler); err != nil {
		t.Fatal(err)
	}

	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("c1"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	fromHub := make(chan msg, 4)
	if tok := c.Subscribe("h/#", 1, func(_ paho.Client, m paho.Message) { fromHub <- msg{m.Topic(), string(m.Payload())} }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	publish := func(topic, payload string) {
		t.Helper()
		if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	receive := func(ch chan msg) msg {
		t.Helper()
		return testkit.Receive(t, ch, 10*time.Second, "a message")
	}

	publish("a/1/x", "one")
	if m := receive(got); m != (msg{"a/1/x", "one"}) {
		t.Fatalf("handler got %+v", m)
	}
	if err := b.Publish("h/1", []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if m := receive(fromHub); m != (msg{"h/1", "hello"}) {
		t.Fatalf("client got %+v", m)
	}
	// The handlers run on the client's goroutine in the order of its
	// messages: once the message after it arrives, one to a filter no
	// longer subscribed would have too.
	if err := b.Unsubscribe("a/+/x"); err != nil {
		t.Fatal(err)
	}
	if err := b.Unsubscribe("a/+/x"); err == nil {
		t.Fatal("unsubscribing twice was accepted")
	}
	publish("a/2/x", "two")
	publish("a/2/y", "three")
	if m := receive(got); m != (msg{"a/2/y", "three"}) {
		t.Fatalf("handler got %+v after unsubscribing, want only the other filter's message", m)
	}
}
