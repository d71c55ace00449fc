package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
)

// connLog wraps the broker's log handler. The broker's listeners log the
// error that ended each client connection at warn level with no message,
// io.EOF included, which is how every client that simply closes its
// connection ends. connLog names those records: a connection closed by
// its client (io.EOF, net.ErrClosed) at debug level, like the broker's own
// "client disconnected", and any other error at warn level.
type connLog struct{ slog.Handler }

func (h connLog) Handle(ctx context.Context, r slog.Record) error {
	if r.Message != "" {
		return h.Handler.Handle(ctx, r)
	}
	var err error
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "error" {
			err, _ = a.Value.Any().(error)
			return false
		}
		return true
	})
	level, msg := slog.LevelWarn, "client connection failed"
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		level, msg = slog.LevelDebug, "client connection closed"
	}
	if !h.Handler.Enabled(ctx, level) {
		return nil
	}
	named := slog.NewRecord(r.Time, level, msg, r.PC)
	r.Attrs(func(a slog.Attr) bool {
		named.AddAttrs(a)
		return true
	})
	return h.Handler.Handle(ctx, named)
}

func (h connLog) WithAttrs(attrs []slog.Attr) slog.Handler {
	return connLog{h.Handler.WithAttrs(attrs)}
}

func (h connLog) WithGroup(name string) slog.Handler {
	return connLog{h.Handler.WithGroup(name)}
}
