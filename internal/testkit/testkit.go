// Package testkit holds the few helpers Unico's tests share: polling a
// condition or receiving from a channel with a deadline (tests never
// sleep a fixed time to wait) and a logger that writes to the test's
// output under -v.
package testkit

import (
	"log/slog"
	"strings"
	"testing"
	"time"
)

// WaitFor polls cond every 5 ms until it holds, and fails the test when
// timeout passes first.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Receive returns the next value from ch, and fails the test when timeout
// passes first.
func Receive[T any](t testing.TB, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
		var zero T
		return zero
	}
}

// Logger logs at level to the test's output when -v is given; otherwise it
// returns nil, which Unico's constructors take as a discarding logger.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	if !testing.Verbose() {
		return nil
	}
	return slog.New(slog.NewTextHandler(writer{t}, &slog.HandlerOptions{Level: level}))
}

type writer struct{ t testing.TB }

func (w writer) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
