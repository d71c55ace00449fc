package offers

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/protocol"
)

// Source is what the engine reads from the profile store; *store.Store
// satisfies it.
type Source interface {
	// Profiles pages through all profiles.
	Profiles(cursor string, limit int) ([]*store.View, store.Page, error)
	// Events pages through a profile's timeline, newest first.
	Events(profileID, cursor string, limit int) ([]protocol.Event, store.Page, error)
}

// Refresh rebuilds the model from every profile of src and installs it.
// It reads each profile's timeline newest first, back to Horizon before
// now and at most MaxEventsPerProfile events; unless ReadAllTimelines is
// set, profiles with no computed orders are skipped unread. A profile that
// disappears while paging (merged or erased) is skipped. The current model
// stays in place when Refresh fails.
func (e *Engine) Refresh(ctx context.Context, src Source) error {
	e.refreshMu.Lock()
	defer e.refreshMu.Unlock()
	start := e.cfg.Now()
	since := start.Add(-e.cfg.Horizon)
	var (
		read    int
		readErr error
	)
	// The store is read as Build consumes it, so only Build's compact copy
	// of the purchases is held in memory.
	m := e.Build(func(yield func([]Purchase) bool) {
		cursor := ""
		for {
			if readErr = ctx.Err(); readErr != nil {
				return
			}
			views, page, err := src.Profiles(cursor, e.cfg.PageSize)
			if err != nil {
				readErr = fmt.Errorf("offers: list profiles: %w", err)
				return
			}
			for _, v := range views {
				read++
				if !e.cfg.ReadAllTimelines && v.Computed.Orders == 0 {
					continue
				}
				h, err := e.purchases(ctx, src, v.ID, since)
				if errors.Is(err, store.ErrNotFound) {
					continue
				}
				if err != nil {
					readErr = err
					return
				}
				if len(h) > 0 && !yield(h) {
					return
				}
			}
			if page.Next == "" || len(views) == 0 {
				return
			}
			cursor = page.Next
		}
	})
	if readErr != nil {
		return readErr
	}
	e.Install(m)
	st := m.Stats()
	e.log.Info("model refreshed", "profiles_read", read, "buyers", st.Profiles, "products", st.Products,
		"tracked", st.Tracked, "pairs", st.Pairs, "rules", st.Rules, "pairs_dropped", st.PairsDropped,
		"took", e.cfg.Now().Sub(start))
	if st.PairsDropped > 0 {
		e.log.Warn("pair counters dropped at max_pairs", "dropped", st.PairsDropped, "max_pairs", e.cfg.MaxPairs)
	}
	return nil
}

// Run refreshes the model from src at once and then every interval until
// ctx is cancelled, when it returns nil. A failed refresh is logged and
// retried at the next tick.
func (e *Engine) Run(ctx context.Context, src Source, every time.Duration) error {
	if every <= 0 {
		return fmt.Errorf("%w: refresh interval %v is not positive", ErrConfig, every)
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := e.Refresh(ctx, src); err != nil && ctx.Err() == nil {
			e.log.Error("refresh failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ForProfile returns the offers for profile id at now, reading its orders
// of the last Window from src (at most MaxEventsPerProfile events).
func (e *Engine) ForProfile(ctx context.Context, src Source, id string, now time.Time) ([]protocol.Offer, error) {
	h, err := e.purchases(ctx, src, id, now.Add(-e.cfg.Window))
	if err != nil {
		return nil, err
	}
	return e.Recommend(h, now), nil
}

// Hook adapts ForProfile to the snapshot manager's offers hook, at the
// engine's clock. Unless ReadAllTimelines is set, a profile whose last
// purchase is older than Window gets no offers without a read. Errors are
// logged and give no offers.
func (e *Engine) Hook(src Source) func(*store.View) []protocol.Offer {
	return func(v *store.View) []protocol.Offer {
		if v == nil {
			return nil
		}
		now := e.cfg.Now()
		if !e.cfg.ReadAllTimelines && v.Computed.LastPurchaseAt.Before(now.Add(-e.cfg.Window)) {
			return nil
		}
		// The profile keeps its recent purchases: no timeline read. Only
		// with ReadAllTimelines (order events the store does not count)
		// is the timeline read.
		if !e.cfg.ReadAllTimelines {
			hist := make([]Purchase, 0, len(v.Computed.Purchases))
			for i := len(v.Computed.Purchases) - 1; i >= 0; i-- { // oldest first
				p := v.Computed.Purchases[i]
				hist = append(hist, Purchase{Product: p.Product, Name: p.Name, At: p.At})
			}
			return e.Recommend(hist, now)
		}
		offers, err := e.ForProfile(context.Background(), src, v.ID, now)
		if err != nil {
			e.log.Warn("offers for profile", "profile", v.ID, "err", err)
			return nil
		}
		return offers
	}
}

// purchases reads the purchases of profile id that happened at or after
// since, oldest first.
func (e *Engine) purchases(ctx context.Context, src Source, id string, since time.Time) ([]Purchase, error) {
	var (
		out    []Purchase
		cursor string
		read   int
	)
	for read < e.cfg.MaxEventsPerProfile {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		evs, page, err := src.Events(id, cursor, min(e.cfg.PageSize, e.cfg.MaxEventsPerProfile-read))
		if err != nil {
			return nil, fmt.Errorf("offers: timeline of %s: %w", id, err)
		}
		for i := range evs {
			ev := &evs[i]
			if ev.OccurredAt.Before(since) {
				return reverse(out), nil
			}
			out = e.appendProducts(out, ev)
		}
		read += len(evs)
		if page.Next == "" || len(evs) == 0 {
			break
		}
		cursor = page.Next
	}
	return reverse(out), nil
}

func reverse(p []Purchase) []Purchase {
	for i, j := 0, len(p)-1; i < j; i, j = i+1, j-1 {
		p[i], p[j] = p[j], p[i]
	}
	return p
}

// isOrder reports whether ev is a purchase by the configured names.
func (e *Engine) isOrder(ev *protocol.Event) bool {
	if ev.Type != protocol.TypeTrack {
		return false
	}
	for _, p := range e.cfg.OrderEvents {
		if strings.HasSuffix(p, "*") {
			if strings.HasPrefix(ev.Name, p[:len(p)-1]) {
				return true
			}
		} else if p == ev.Name {
			return true
		}
	}
	return false
}

// appendProducts appends the products of order event ev to out.
func (e *Engine) appendProducts(out []Purchase, ev *protocol.Event) []Purchase {
	if !e.isOrder(ev) {
		return out
	}
	list, ok := ev.Properties[e.cfg.ProductsProperty].([]any)
	if !ok {
		if id := e.productID(ev.Properties); id != "" {
			out = append(out, Purchase{Product: id, Name: str(ev.Properties[e.cfg.NameKey]), At: ev.OccurredAt})
		}
		return out
	}
	for _, x := range list {
		obj, ok := x.(map[string]any)
		if !ok {
			continue
		}
		if id := e.productID(obj); id != "" {
			out = append(out, Purchase{Product: id, Name: str(obj[e.cfg.NameKey]), At: ev.OccurredAt})
		}
	}
	return out
}

func (e *Engine) productID(obj map[string]any) string {
	for _, k := range e.cfg.ProductKeys {
		if s := str(obj[k]); s != "" {
			return s
		}
	}
	return ""
}

// str renders a decoded JSON or msgpack scalar as a product id or name.
func str(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case int64:
		return strconv.FormatInt(v, 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case int:
		return strconv.Itoa(v)
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return strconv.FormatInt(int64(v), 10)
		}
		return strconv.FormatFloat(v, 'g', -1, 64)
	}
	return ""
}

var _ Source = (*store.Store)(nil)
