// Package ingest is the edge agent's HTTP front door: the Segment HTTP
// Tracking API (/v1/batch, /v1/track, …) on fasthttp, answering 200 only
// after the events are durably appended to the queue, plus /healthz,
// /metrics, /v1/status and extra GET routes the agent registers.
package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"

	"github.com/unico-cdp/unico/edge/queue"
	"github.com/unico-cdp/unico/protocol"
)

// Appender stores events durably. AppendEncoded gets the events as the
// Segment mapper writes them (protocol.Mapper.DecodeEncoded) and must
// return nil only once they are on disk; it returns an error wrapping
// queue.ErrFull when there is no room and queue.ErrClosed when the store is
// closed. The events' Data is reused once it returns. *queue.Queue
// implements it.
type Appender interface {
	AppendEncoded(ctx context.Context, events []protocol.EncodedEvent) error
}

// Defaults for Config fields left zero.
const (
	DefaultRetryAfter      = 5 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
	DefaultReadTimeout     = 30 * time.Second
	DefaultWriteTimeout    = 30 * time.Second
	DefaultIdleTimeout     = 60 * time.Second
	DefaultMaxConns        = 1024
)

// ErrConfig is wrapped by New's errors about an invalid Config.
var ErrConfig = errors.New("invalid ingest config")

// Config configures a Server. Zero fields take the documented defaults.
type Config struct {
	// WriteKeys are the accepted Segment write keys, sent as the HTTP Basic
	// user with an empty password. Empty: no authentication (New logs a
	// warning).
	WriteKeys []string
	// Map configures the Segment decoder (source stamp, channel, identifier
	// rules). Its MaxMessageBytes (default 32 KiB) bounds single-message
	// endpoints and each message of a batch; MaxBatchBytes (default 500
	// KiB) bounds a batch. Both bound the body after gzip decompression.
	Map protocol.MapOptions
	// RetryAfter is sent in Retry-After with 429 and 503. Default 5s;
	// rounded up to whole seconds.
	RetryAfter time.Duration
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after the Serve context is cancelled. Default 10s.
	ShutdownTimeout time.Duration
	// ReadTimeout, WriteTimeout and IdleTimeout are the connection
	// timeouts. Defaults 30s, 30s, 60s.
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// MaxConns bounds concurrent connections. Default 1024.
	MaxConns int
	// Registry receives the ingest metrics and is served on /metrics.
	// Default: a new registry holding only the ingest metrics.
	Registry *prometheus.Registry
	// Status renders GET /v1/status as JSON. Nil: /v1/status is 404.
	Status func() any
	// Extra adds GET routes by exact path, such as "/v1/profiles/lookup".
	// They may not shadow the built-in paths.
	Extra map[string]fasthttp.RequestHandler
	// Admin adds operator routes by exact path, such as "/v1/quarantine".
	// They take every method (the handler answers 405 itself) and are
	// protected: with AdminToken set they need "Authorization: Bearer
	// <AdminToken>", without it they answer only loopback clients (403
	// otherwise). They may not shadow other routes.
	Admin map[string]fasthttp.RequestHandler
	// AdminToken protects the Admin routes; see Admin.
	AdminToken string
}

// Server is the HTTP ingest server.
type Server struct {
	cfg        Config
	log        *slog.Logger
	mapper     *protocol.Mapper
	app        Appender
	keys       [][]byte
	retryAfter string
	maxBody    int
	metrics    *metrics
	promH      fasthttp.RequestHandler

	draining atomic.Bool
	// appendCtx is passed to Append; it is cancelled only when the
	// shutdown timeout has passed, so in-flight appends may finish.
	appendCtx    context.Context
	appendCancel context.CancelFunc
	served       atomic.Bool
	bufs         sync.Pool
	// batches recycles the *protocol.EncodedBatch each request decodes
	// into.
	batches sync.Pool
}

// route names used as metric labels.
var ingestPaths = map[string]protocol.Endpoint{
	"/v1/batch":    protocol.EndpointBatch,
	"/v1/import":   protocol.EndpointBatch,
	"/v1/track":    protocol.TypeTrack,
	"/v1/identify": protocol.TypeIdentify,
	"/v1/page":     protocol.TypePage,
	"/v1/screen":   protocol.TypeScreen,
	"/v1/group":    protocol.TypeGroup,
	"/v1/alias":    protocol.TypeAlias,
}

var builtinGets = map[string]bool{"/healthz": true, "/metrics": true, "/v1/status": true}

// New validates cfg and returns a Server that appends accepted events to
// app. A nil logger discards logs.
func New(cfg Config, logger *slog.Logger, app Appender) (*Server, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "ingest")
	if app == nil {
		return nil, fmt.Errorf("%w: nil Appender", ErrConfig)
	}
	for name, d := range map[string]*time.Duration{
		"RetryAfter": &cfg.RetryAfter, "ShutdownTimeout": &cfg.ShutdownTimeout,
		"ReadTimeout": &cfg.ReadTimeout, "WriteTimeout": &cfg.WriteTimeout, "IdleTimeout": &cfg.IdleTimeout,
	} {
		if *d < 0 {
			return nil, fmt.Errorf("%w: %s %v is negative", ErrConfig, name, *d)
		}
	}
	setDefault(&cfg.RetryAfter, DefaultRetryAfter)
	setDefault(&cfg.ShutdownTimeout, DefaultShutdownTimeout)
	setDefault(&cfg.ReadTimeout, DefaultReadTimeout)
	setDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	setDefault(&cfg.IdleTimeout, DefaultIdleTimeout)
	if cfg.MaxConns < 0 {
		return nil, fmt.Errorf("%w: MaxConns %d is negative", ErrConfig, cfg.MaxConns)
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Map.MaxMessageBytes < 0 || cfg.Map.MaxBatchBytes < 0 {
		return nil, fmt.Errorf("%w: Map.MaxMessageBytes and Map.MaxBatchBytes must not be negative", ErrConfig)
	}
	mapper, err := protocol.NewMapper(cfg.Map)
	if err != nil {
		return nil, fmt.Errorf("%w: Map: %w", ErrConfig, err)
	}
	cfg.Map = mapper.Options()
	for p := range cfg.Extra {
		if _, ok := ingestPaths[p]; ok || builtinGets[p] {
			return nil, fmt.Errorf("%w: Extra path %q shadows a built-in route", ErrConfig, p)
		}
		if cfg.Extra[p] == nil {
			return nil, fmt.Errorf("%w: Extra path %q has a nil handler", ErrConfig, p)
		}
	}
	for p, h := range cfg.Admin {
		if _, ok := ingestPaths[p]; ok || builtinGets[p] || cfg.Extra[p] != nil {
			return nil, fmt.Errorf("%w: Admin path %q shadows another route", ErrConfig, p)
		}
		if h == nil {
			return nil, fmt.Errorf("%w: Admin path %q has a nil handler", ErrConfig, p)
		}
	}
	s := &Server{
		cfg:        cfg,
		log:        logger,
		mapper:     mapper,
		app:        app,
		retryAfter: strconv.Itoa(int((cfg.RetryAfter + time.Second - 1) / time.Second)),
		maxBody:    max(cfg.Map.MaxBatchBytes, cfg.Map.MaxMessageBytes),
	}
	for i, k := range cfg.WriteKeys {
		if k == "" {
			return nil, fmt.Errorf("%w: WriteKeys[%d] is empty", ErrConfig, i)
		}
		s.keys = append(s.keys, []byte(k))
	}
	if len(s.keys) == 0 {
		logger.Warn("no write keys configured: ingest accepts unauthenticated requests")
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if s.metrics, err = newMetrics(reg); err != nil {
		return nil, fmt.Errorf("%w: Registry: %w", ErrConfig, err)
	}
	s.promH = fasthttpadaptor.NewFastHTTPHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.appendCtx, s.appendCancel = context.WithCancel(context.Background())
	return s, nil
}

func setDefault(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

// Handler returns the request handler, for embedding in another fasthttp
// server or for in-process tests. Serve uses it.
func (s *Server) Handler() fasthttp.RequestHandler { return s.handle }

// Serve answers requests on ln until ctx is cancelled, then shuts down
// gracefully: it closes ln, answers 503 to requests that arrive on open
// connections, lets in-flight requests finish their Append for up to
// ShutdownTimeout, and returns. After that timeout, the context given to
// Append is cancelled. Serve may be called once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.served.CompareAndSwap(false, true) {
		return errors.New("ingest: Serve called twice")
	}
	defer s.appendCancel()
	// The raw body may be a little larger than the decoded limit when it is
	// gzip-compressed incompressible data.
	rawLimit := s.maxBody + s.maxBody/16 + 1024
	srv := &fasthttp.Server{
		Handler:                       s.handle,
		ErrorHandler:                  s.errorHandler,
		Name:                          "unico-edge",
		MaxRequestBodySize:            rawLimit,
		ReadTimeout:                   s.cfg.ReadTimeout,
		WriteTimeout:                  s.cfg.WriteTimeout,
		IdleTimeout:                   s.cfg.IdleTimeout,
		Concurrency:                   s.cfg.MaxConns,
		CloseOnShutdown:               true,
		DisableHeaderNamesNormalizing: false,
		NoDefaultServerHeader:         false,
		Logger:                        fasthttpLogger{s.log},
	}
	s.log.Info("serving", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		s.draining.Store(true)
		// Serve failed on its own: make sure no connection outlives us.
		sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer cancel()
		_ = srv.ShutdownWithContext(sctx)
		if err != nil {
			return fmt.Errorf("ingest: serve: %w", err)
		}
		return nil
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("shutting down", "timeout", s.cfg.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	err := srv.ShutdownWithContext(sctx)
	if err != nil {
		// Give appends still running a cancelled context, then wait for
		// their handlers to answer (503) and the connections to close.
		s.appendCancel()
		s.log.Warn("shutdown timeout passed with requests in flight", "err", err)
		wctx, wcancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
		defer wcancel()
		if err2 := srv.ShutdownWithContext(wctx); err2 != nil {
			return fmt.Errorf("ingest: shutdown: %w", err2)
		}
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("ingest: serve: %w", err)
	}
	return nil
}

type fasthttpLogger struct{ log *slog.Logger }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.Debug("fasthttp", "msg", fmt.Sprintf(format, args...))
}

// errorHandler answers requests fasthttp could not read.
func (s *Server) errorHandler(ctx *fasthttp.RequestCtx, err error) {
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		s.metrics.rejected.WithLabelValues(reasonTooLarge).Inc()
		s.fail(ctx, "other", fasthttp.StatusRequestEntityTooLarge, apiError{Error: fmt.Sprintf("request body exceeds the limit of %d bytes", s.maxBody)})
		return
	}
	s.fail(ctx, "other", fasthttp.StatusBadRequest, apiError{Error: "malformed HTTP request"})
}

// Rejection reasons, the values of the reason label.
const (
	reasonInvalid      = "invalid"
	reasonTooLarge     = "too_large"
	reasonUnauthorized = "unauthorized"
	reasonFull         = "full"
	reasonUnavailable  = "unavailable"
)

type apiError struct {
	Error  string                `json:"error"`
	Field  string                `json:"field,omitempty"`
	Errors []protocol.FieldError `json:"errors,omitempty"`
}

var okBody = []byte(`{"success":true}`)

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	// fasthttp does not recover panics; one in a handler (an Extra route,
	// the Status function) must not take the agent and its queue down.
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("handler panic", "path", string(ctx.Path()), "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			ctx.ResetBody()
			ctx.Response.Header.Del("Retry-After")
			writeJSON(ctx, fasthttp.StatusInternalServerError, apiError{Error: "internal error"})
		}
	}()
	start := time.Now()
	path := string(ctx.Path())
	if ep, ok := ingestPaths[path]; ok {
		label := path[len("/v1/"):]
		s.ingest(ctx, ep, label)
		s.metrics.duration.Observe(time.Since(start).Seconds())
		return
	}
	label := "other"
	var h fasthttp.RequestHandler
	switch path {
	case "/healthz":
		label, h = "healthz", s.healthz
	case "/metrics":
		label, h = "metrics", s.promH
	case "/v1/status":
		if s.cfg.Status != nil {
			label, h = "status", s.status
		}
	default:
		if e, ok := s.cfg.Extra[path]; ok {
			label, h = "extra", e
		} else if a, ok := s.cfg.Admin[path]; ok {
			s.admin(ctx, a)
			s.metrics.requests.WithLabelValues("admin", strconv.Itoa(ctx.Response.StatusCode())).Inc()
			return
		}
	}
	if h == nil {
		s.fail(ctx, label, fasthttp.StatusNotFound, apiError{Error: "no such endpoint: " + path})
		return
	}
	if !ctx.IsGet() && !ctx.IsHead() {
		ctx.Response.Header.Set("Allow", "GET, HEAD")
		s.fail(ctx, label, fasthttp.StatusMethodNotAllowed, apiError{Error: "method not allowed; use GET"})
		return
	}
	h(ctx)
	s.metrics.requests.WithLabelValues(label, strconv.Itoa(ctx.Response.StatusCode())).Inc()
}

// admin runs an Admin route's handler for an authorized client.
func (s *Server) admin(ctx *fasthttp.RequestCtx, h fasthttp.RequestHandler) {
	if tok := s.cfg.AdminToken; tok != "" {
		got, ok := bytes.CutPrefix(ctx.Request.Header.Peek("Authorization"), []byte("Bearer "))
		if !ok || subtle.ConstantTimeCompare(got, []byte(tok)) != 1 {
			ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="unico-edge"`)
			writeJSON(ctx, fasthttp.StatusUnauthorized, apiError{Error: "missing or wrong admin token (send Authorization: Bearer <admin-token>)"})
			return
		}
	} else if ip, ok := ctx.RemoteAddr().(*net.TCPAddr); !ok || !ip.IP.IsLoopback() {
		writeJSON(ctx, fasthttp.StatusForbidden, apiError{Error: "operator endpoints answer only local clients unless an admin token is configured"})
		return
	}
	h(ctx)
}

func (s *Server) healthz(ctx *fasthttp.RequestCtx) {
	ctx.SetContentType("text/plain; charset=utf-8")
	if s.draining.Load() {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString("shutting down\n")
		return
	}
	ctx.SetBodyString("ok\n")
}

func (s *Server) status(ctx *fasthttp.RequestCtx) {
	b, err := json.Marshal(s.cfg.Status())
	if err != nil {
		s.log.Error("render status", "err", err)
		writeJSON(ctx, fasthttp.StatusInternalServerError, apiError{Error: "cannot render status"})
		return
	}
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

func (s *Server) ingest(ctx *fasthttp.RequestCtx, ep protocol.Endpoint, label string) {
	if !ctx.IsPost() {
		ctx.Response.Header.Set("Allow", "POST")
		s.fail(ctx, label, fasthttp.StatusMethodNotAllowed, apiError{Error: "method not allowed; use POST"})
		return
	}
	if s.draining.Load() {
		s.unavailable(ctx, label, "shutting down", 1)
		return
	}
	if !s.authorized(ctx) {
		s.metrics.rejected.WithLabelValues(reasonUnauthorized).Inc()
		ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="unico"`)
		s.fail(ctx, label, fasthttp.StatusUnauthorized, apiError{Error: "missing or unknown write key (send it as the HTTP Basic user)"})
		return
	}
	limit := s.cfg.Map.MaxMessageBytes
	if ep == protocol.EndpointBatch {
		limit = s.cfg.Map.MaxBatchBytes
	}
	body := ctx.PostBody()
	var buf *bytes.Buffer
	switch enc := string(bytes.ToLower(bytes.TrimSpace(ctx.Request.Header.ContentEncoding()))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		buf = s.getBuf()
		defer s.bufs.Put(buf)
		tooLarge, err := gunzip(buf, body, limit)
		if tooLarge {
			s.metrics.rejected.WithLabelValues(reasonTooLarge).Inc()
			s.fail(ctx, label, fasthttp.StatusRequestEntityTooLarge, apiError{Error: fmt.Sprintf("decompressed body exceeds the limit of %d bytes", limit)})
			return
		}
		if err != nil {
			s.metrics.rejected.WithLabelValues(reasonInvalid).Inc()
			s.fail(ctx, label, fasthttp.StatusBadRequest, apiError{Error: "invalid gzip body: " + err.Error()})
			return
		}
		body = buf.Bytes()
	default:
		s.metrics.rejected.WithLabelValues(reasonInvalid).Inc()
		s.fail(ctx, label, fasthttp.StatusBadRequest, apiError{Field: "Content-Encoding", Error: fmt.Sprintf("unsupported Content-Encoding %q; use gzip or none", enc)})
		return
	}
	eb, _ := s.batches.Get().(*protocol.EncodedBatch)
	if eb == nil {
		eb = new(protocol.EncodedBatch)
	}
	defer s.batches.Put(eb)
	if err := s.mapper.DecodeEncoded(ep, body, eb); err != nil {
		var verr *protocol.ValidationError
		if !errors.As(err, &verr) {
			s.metrics.rejected.WithLabelValues(reasonInvalid).Inc()
			s.fail(ctx, label, fasthttp.StatusBadRequest, apiError{Error: err.Error()})
			return
		}
		code, reason := fasthttp.StatusBadRequest, reasonInvalid
		if verr.TooLarge {
			code, reason = fasthttp.StatusRequestEntityTooLarge, reasonTooLarge
		}
		s.metrics.rejected.WithLabelValues(reason).Inc()
		e := apiError{Error: verr.Error(), Errors: verr.Errors}
		if len(verr.Errors) > 0 {
			e.Field = verr.Errors[0].Path()
		}
		s.fail(ctx, label, code, e)
		return
	}
	evs := eb.Events
	err := s.app.AppendEncoded(s.appendCtx, evs)
	switch {
	case err == nil:
		s.countAccepted(evs)
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("application/json")
		ctx.SetBody(okBody)
		s.metrics.requests.WithLabelValues(label, "200").Inc()
	case errors.Is(err, queue.ErrFull):
		s.metrics.rejected.WithLabelValues(reasonFull).Add(float64(len(evs)))
		ctx.Response.Header.Set("Retry-After", s.retryAfter)
		s.fail(ctx, label, fasthttp.StatusTooManyRequests, apiError{Error: "buffer full, retry later"})
	case errors.Is(err, queue.ErrClosed), errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		s.unavailable(ctx, label, "shutting down", len(evs))
	default:
		s.log.Error("append events", "err", err, "events", len(evs))
		s.unavailable(ctx, label, "cannot store events", len(evs))
	}
}

// countAccepted adds evs to the accepted counter, one labelled Add per run
// of equal channels instead of a label lookup per event (a batch usually
// carries one channel).
func (s *Server) countAccepted(evs []protocol.EncodedEvent) {
	for i := 0; i < len(evs); {
		j := i + 1
		for j < len(evs) && evs[j].Channel == evs[i].Channel {
			j++
		}
		s.metrics.accepted.WithLabelValues(evs[i].Channel).Add(float64(j - i))
		i = j
	}
}

func (s *Server) unavailable(ctx *fasthttp.RequestCtx, label, msg string, events int) {
	s.metrics.rejected.WithLabelValues(reasonUnavailable).Add(float64(events))
	ctx.Response.Header.Set("Retry-After", s.retryAfter)
	s.fail(ctx, label, fasthttp.StatusServiceUnavailable, apiError{Error: msg + ", retry later"})
}

func (s *Server) fail(ctx *fasthttp.RequestCtx, label string, code int, e apiError) {
	writeJSON(ctx, code, e)
	s.metrics.requests.WithLabelValues(label, strconv.Itoa(code)).Inc()
}

func writeJSON(ctx *fasthttp.RequestCtx, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(`{"error":"internal error"}`)
		code = fasthttp.StatusInternalServerError
	}
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// authorized checks the HTTP Basic user against the write keys, in
// constant time per key.
func (s *Server) authorized(ctx *fasthttp.RequestCtx) bool {
	if len(s.keys) == 0 {
		return true
	}
	user, ok := basicUser(ctx.Request.Header.Peek("Authorization"))
	if !ok {
		return false
	}
	found := 0
	for _, k := range s.keys {
		found |= subtle.ConstantTimeCompare(user, k)
	}
	return found == 1
}

// basicUser returns the user of an HTTP Basic Authorization header value.
func basicUser(h []byte) ([]byte, bool) {
	const prefix = "basic "
	if len(h) < len(prefix) || !bytes.EqualFold(h[:len(prefix)], []byte(prefix)) {
		return nil, false
	}
	enc := bytes.TrimSpace(h[len(prefix):])
	dec := make([]byte, base64.StdEncoding.DecodedLen(len(enc)))
	n, err := base64.StdEncoding.Decode(dec, enc)
	if err != nil {
		return nil, false
	}
	user, _, _ := bytes.Cut(dec[:n], []byte(":"))
	return user, len(user) > 0
}

func (s *Server) getBuf() *bytes.Buffer {
	if b, ok := s.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

// gunzip decompresses src into dst, reading at most limit+1 bytes of output
// so that a small body cannot expand without bound. Concatenated gzip
// members are read as one stream.
func gunzip(dst *bytes.Buffer, src []byte, limit int) (tooLarge bool, err error) {
	zr, err := gzip.NewReader(bytes.NewReader(src))
	if err != nil {
		return false, err
	}
	defer zr.Close()
	n, err := dst.ReadFrom(io.LimitReader(zr, int64(limit)+1))
	if n > int64(limit) {
		return true, nil
	}
	return false, err
}
