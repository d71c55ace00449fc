package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// order is one "Order Completed" track event of the generator.
type order struct {
	id       string
	customer int
	revenue  int64
}

// generator deterministically produces client k's n-th order: a unique
// message id, a customer among customers and an integer revenue, so that
// every acknowledged event can be accounted for exactly.
type generator struct {
	prefix    string
	customers int
}

func (g generator) order(k, n int) order {
	return order{
		id:       fmt.Sprintf("%s-c%d-%d", g.prefix, k, n),
		customer: (k*7919 + n*31) % g.customers,
		revenue:  int64(1 + (n*17+k*5)%50),
	}
}

func customerID(c int) string { return fmt.Sprintf("cust-%d", c) }

// batchBody is the Segment /v1/batch body of orders.
func batchBody(orders []order) []byte {
	msgs := make([]map[string]any, len(orders))
	for i, o := range orders {
		msgs[i] = map[string]any{"type": "track", "messageId": o.id, "userId": customerID(o.customer),
			"event": "Order Completed", "properties": map[string]any{"revenue": o.revenue}}
	}
	b, _ := json.Marshal(map[string]any{"batch": msgs})
	return b
}

// ledger records every order an edge acknowledged with 200, and what the
// clients went through to get there.
type ledger struct {
	mu    sync.Mutex
	acked map[string]order
	// unacked holds the orders of requests still unanswered when the
	// clients gave up; they may or may not be at the hub.
	unacked map[string]order

	requests, retries, transportErrors, status429, status503, rejected atomic.Int64
}

func newLedger() *ledger {
	return &ledger{acked: map[string]order{}, unacked: map[string]order{}}
}

func (l *ledger) ack(orders []order) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range orders {
		l.acked[o.id] = o
	}
}

func (l *ledger) giveUp(orders []order) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, o := range orders {
		l.unacked[o.id] = o
	}
}

func (l *ledger) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// totals returns the orders and revenue per customer of the acknowledged
// events.
func (l *ledger) totals(customers int) (orders, revenue []int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	orders, revenue = make([]int64, customers), make([]int64, customers)
	for _, o := range l.acked {
		orders[o.customer]++
		revenue[o.customer] += o.revenue
	}
	return orders, revenue
}

// load is a set of clients sending orders to the edges at a paced rate.
// Like Segment's SDKs, a client retries a request that failed (transport
// error, 429, 5xx) with the same message ids until it gets 200, and only
// then sends the next batch.
type load struct {
	gen      generator
	edges    []string // base URLs
	clients  int
	perBatch int
	interval time.Duration // between one client's batches
	client   *http.Client
	ledger   *ledger

	stopping chan struct{} // closed: send no new batch
	abort    context.CancelFunc
	wg       sync.WaitGroup
	errMu    sync.Mutex
	err      error
}

// loadConfig sets the traffic's shape.
type loadConfig struct {
	clients  int
	perBatch int
	rate     float64 // events/s over all clients
}

func startLoad(ctx context.Context, gen generator, edges []string, cfg loadConfig, l *ledger) *load {
	ctx, abort := context.WithCancel(ctx)
	ld := &load{abort: abort, gen: gen, edges: edges, clients: cfg.clients, perBatch: cfg.perBatch,
		interval: time.Duration(float64(time.Second) * float64(cfg.perBatch*cfg.clients) / cfg.rate),
		client:   &http.Client{Timeout: 10 * time.Second}, ledger: l, stopping: make(chan struct{})}
	for k := range cfg.clients {
		ld.wg.Add(1)
		go ld.run(ctx, k)
	}
	return ld
}

// stop lets every client finish (get a 200 for) its current batch and
// waits for them; the ctx of startLoad bounds the wait, after which the
// unanswered batches are recorded as given up. With abort set, the clients
// give up at once.
func (ld *load) stop(abort bool) error {
	close(ld.stopping)
	if abort {
		ld.abort()
	}
	ld.wg.Wait()
	ld.abort()
	ld.errMu.Lock()
	defer ld.errMu.Unlock()
	return ld.err
}

func (ld *load) fail(err error) {
	ld.errMu.Lock()
	defer ld.errMu.Unlock()
	if ld.err == nil {
		ld.err = err
	}
}

func (ld *load) run(ctx context.Context, k int) {
	defer ld.wg.Done()
	edge := ld.edges[k%len(ld.edges)]
	tick := time.NewTicker(ld.interval)
	defer tick.Stop()
	n := 0
	for {
		select {
		case <-ld.stopping:
			return
		case <-ctx.Done():
			return
		default:
		}
		orders := make([]order, ld.perBatch)
		for i := range orders {
			orders[i] = ld.gen.order(k, n)
			n++
		}
		if err := ld.send(ctx, edge, batchBody(orders)); err != nil {
			ld.ledger.giveUp(orders)
			ld.fail(fmt.Errorf("client %d: %w", k, err))
			return
		}
		ld.ledger.ack(orders)
		select {
		case <-ld.stopping:
			return
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// send posts body until the edge answers 200, backing off from 50 ms to
// 1 s between attempts. It fails on an answer no retry can fix (400, 401,
// 413) or when ctx ends.
func (ld *load) send(ctx context.Context, edge string, body []byte) error {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			ld.ledger.retries.Add(1)
			select {
			case <-ctx.Done():
				return fmt.Errorf("gave up on an unacknowledged batch: %w", ctx.Err())
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Second)
		}
		ld.ledger.requests.Add(1)
		code, msg, err := ld.post(ctx, edge, body)
		switch {
		case err != nil:
			ld.ledger.transportErrors.Add(1)
		case code == http.StatusOK:
			return nil
		case code == http.StatusTooManyRequests:
			ld.ledger.status429.Add(1)
		case code >= 500:
			ld.ledger.status503.Add(1)
		default:
			ld.ledger.rejected.Add(1)
			return fmt.Errorf("edge answered %d: %s", code, msg)
		}
	}
}

func (ld *load) post(ctx context.Context, edge string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, edge+"/v1/batch", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.SetBasicAuth(writeKey, "")
	req.Header.Set("Content-Type", "application/json")
	resp, err := ld.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	return resp.StatusCode, string(bytes.TrimSpace(b)), nil
}
