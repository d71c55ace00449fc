package main

import (
	"context"
	"fmt"
	"github.com/unico-cdp/unico/internal/procs"
	"log/slog"
	"time"
)

const (
	// settleFor is how long the hub's event count must stay unchanged, with
	// the edges' queues empty, before the suite counts.
	settleFor = 3 * time.Second
	// stallTimeout fails a drain when neither the hub's count nor the
	// queues moved for this long.
	stallTimeout = 60 * time.Second
	// progressEvery is the interval of progress lines while draining.
	progressEvery = 10 * time.Second
)

// verdict is what the verification found.
type verdict struct {
	acknowledged     int
	givenUp          int
	atHub            int64
	customersChecked int
	mismatches       int
	firstMismatch    string
	// perIdentifier is set by sensor_sigkill: acknowledged (frames) and
	// atHub (presence events) are figures, and the per-identifier checks
	// (mismatches) decide.
	perIdentifier bool
}

func (v verdict) ok() bool {
	return v.givenUp == 0 && (v.perIdentifier || v.atHub == int64(v.acknowledged)) && v.mismatches == 0
}

// drain waits until every process runs, both edges' queues are empty and
// the hub's event count has not changed for settleFor. It fails at
// timeout, when nothing moved for stallTimeout, or when a process exited.
func drain(ctx context.Context, t *topology, timeout time.Duration, logger *slog.Logger) error {
	var last, depth int64 = -1, -1
	lastMove, lastLog := time.Now(), time.Now()
	var failure error
	err := procs.WaitUntil(ctx, timeout, 200*time.Millisecond, "edges drained and the hub settled", func(ctx context.Context) bool {
		for _, p := range t.procs() {
			if !p.Running() {
				failure = fmt.Errorf("%s exited", p.Name)
				return true
			}
		}
		n, err := t.hubEvents(ctx)
		if err != nil {
			return false
		}
		d, err := t.queueDepth(ctx)
		if err != nil {
			return false
		}
		if time.Since(lastLog) >= progressEvery {
			logger.Info("draining", "hub_events", n, "queued", d)
			lastLog = time.Now()
		}
		if n != last || d != depth {
			last, depth, lastMove = n, d, time.Now()
			return false
		}
		if time.Since(lastMove) > stallTimeout && d > 0 {
			failure = fmt.Errorf("no progress for %v", stallTimeout)
			return true
		}
		return d == 0 && time.Since(lastMove) >= settleFor
	})
	if err == nil {
		err = failure
	}
	if err != nil {
		return fmt.Errorf("%w: hub holds %d events, %d still queued at the edges", err, last, depth)
	}
	return nil
}

// verify compares the hub with the ledger: the hub's event count against
// the distinct acknowledged message ids, and every customer's
// computed.orders and computed.revenue against the sums of that customer's
// acknowledged orders.
func verify(ctx context.Context, t *topology, l *ledger, customers int) (verdict, error) {
	v := verdict{acknowledged: l.ackedCount()}
	l.mu.Lock()
	v.givenUp = len(l.unacked)
	l.mu.Unlock()
	n, err := t.hubEvents(ctx)
	if err != nil {
		return v, err
	}
	v.atHub = n
	orders, revenue := l.totals(customers)
	for c := range customers {
		p, found, err := t.profile(ctx, customerID(c))
		if err != nil {
			return v, err
		}
		v.customersChecked++
		gotOrders, gotRevenue := p.Computed.Orders, p.Computed.Revenue
		if !found {
			gotOrders, gotRevenue = 0, 0
		}
		if gotOrders != orders[c] || gotRevenue != float64(revenue[c]) {
			v.mismatches++
			if v.firstMismatch == "" {
				v.firstMismatch = fmt.Sprintf("%s: hub has %d orders, revenue %v; acknowledged %d orders, revenue %d",
					customerID(c), gotOrders, gotRevenue, orders[c], revenue[c])
			}
		}
	}
	return v, nil
}
