package simulate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Errors of Sender.Send.
var (
	// ErrBadRequest is returned when an edge answered 400: it refused a
	// message the generator wrote, which is a generator bug.
	ErrBadRequest = errors.New("edge answered 400 Bad Request")
	// ErrRejected is returned for other answers that retrying cannot fix
	// (401, 413 and other 4xx).
	ErrRejected = errors.New("edge rejected the batch")
	// ErrGaveUp is returned when every attempt failed with a retryable
	// answer or a network error.
	ErrGaveUp = errors.New("gave up after retries")
)

// Defaults of SenderConfig.
const (
	DefaultMaxAttempts   = 10
	DefaultMaxRetryAfter = 30 * time.Second
	DefaultMinBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff    = 5 * time.Second
	DefaultHTTPTimeout   = 30 * time.Second
)

// SenderConfig configures NewSender. Zero fields take the documented
// defaults.
type SenderConfig struct {
	// WriteKey is sent as the HTTP Basic user.
	WriteKey string
	// Client sends the requests; default a client with DefaultHTTPTimeout
	// and MaxConns idle connections per host.
	Client *http.Client
	// MaxConns sizes the default client's connection pool (default 16).
	MaxConns int
	// MaxAttempts bounds the attempts per batch (default
	// DefaultMaxAttempts).
	MaxAttempts int
	// MaxRetryAfter caps the wait an edge asks for with Retry-After
	// (default DefaultMaxRetryAfter).
	MaxRetryAfter time.Duration
	// MinBackoff and MaxBackoff bound the exponential backoff after network
	// errors and 5xx answers without Retry-After (defaults DefaultMinBackoff,
	// DefaultMaxBackoff).
	MinBackoff, MaxBackoff time.Duration
}

// SendResult describes a finished Send.
type SendResult struct {
	// Status is the last HTTP status received (0 if none).
	Status int
	// Attempts is the number of requests made.
	Attempts int
	// Latency is the duration of the last request.
	Latency time.Duration
}

// Sender posts batches to edges' /v1/batch, retrying on 429 and 503 (after
// the Retry-After the edge asks for), other 5xx answers and network errors.
// A batch counts as accepted only on 200. It is safe for concurrent use.
type Sender struct {
	cfg    SenderConfig
	auth   string
	logger *slog.Logger
	sleep  func(ctx context.Context, d time.Duration) error
}

// NewSender returns a Sender. A nil logger discards logs.
func NewSender(cfg SenderConfig, logger *slog.Logger) (*Sender, error) {
	if cfg.MaxAttempts < 0 || cfg.MaxRetryAfter < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 || cfg.MaxConns < 0 {
		return nil, fmt.Errorf("sender: negative limit: %w", ErrInvalidConfig)
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = DefaultMaxAttempts
	}
	if cfg.MaxRetryAfter == 0 {
		cfg.MaxRetryAfter = DefaultMaxRetryAfter
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = 16
	}
	if cfg.Client == nil {
		tr := &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        cfg.MaxConns * 4,
			MaxIdleConnsPerHost: cfg.MaxConns,
			IdleConnTimeout:     90 * time.Second,
		}
		cfg.Client = &http.Client{Transport: tr, Timeout: DefaultHTTPTimeout}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	req, _ := http.NewRequest(http.MethodPost, "http://x/", nil)
	req.SetBasicAuth(cfg.WriteKey, "")
	return &Sender{cfg: cfg, auth: req.Header.Get("Authorization"), logger: logger.With("component", "sender"), sleep: sleepCtx}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Send posts body to edge (a base URL such as http://127.0.0.1:8080) at
// /v1/batch until it is accepted, rejected, attempts run out or ctx ends.
func (s *Sender) Send(ctx context.Context, edge string, body []byte) (SendResult, error) {
	url := strings.TrimSuffix(edge, "/") + "/v1/batch"
	var res SendResult
	backoff := s.cfg.MinBackoff
	for {
		res.Attempts++
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return res, fmt.Errorf("send to %s: %w", edge, err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", s.auth)
		start := time.Now()
		resp, err := s.cfg.Client.Do(req)
		res.Latency = time.Since(start)
		wait := backoff
		if err != nil {
			if ctx.Err() != nil {
				return res, fmt.Errorf("send to %s: %w", edge, ctx.Err())
			}
			s.logger.Debug("request failed", "edge", edge, "err", err)
		} else {
			res.Status = resp.StatusCode
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusOK:
				return res, nil
			case resp.StatusCode == http.StatusBadRequest:
				return res, fmt.Errorf("edge %s: %s: %w", edge, bytes.TrimSpace(msg), ErrBadRequest)
			case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable:
				if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()); ok {
					wait = min(d, s.cfg.MaxRetryAfter)
				}
			case resp.StatusCode >= 500:
			default:
				return res, fmt.Errorf("edge %s: status %d: %s: %w", edge, resp.StatusCode, bytes.TrimSpace(msg), ErrRejected)
			}
			s.logger.Debug("edge asked to retry", "edge", edge, "status", resp.StatusCode, "wait", wait)
		}
		if res.Attempts >= s.cfg.MaxAttempts {
			return res, fmt.Errorf("edge %s: %d attempts, last status %d: %w", edge, res.Attempts, res.Status, ErrGaveUp)
		}
		if err := s.sleep(ctx, wait); err != nil {
			return res, fmt.Errorf("send to %s: %w", edge, err)
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
	}
}

// parseRetryAfter reads a Retry-After value: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 {
			return 0, false
		}
		return time.Duration(min(n, 86400)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}
