package offers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/unico-cdp/unico/hub/profile"
	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/protocol"
)

// fakeSource is an in-memory Source: profiles by id, timelines newest
// first, paged like the store.
type fakeSource struct {
	mu       sync.Mutex
	ids      []string
	events   map[string][]protocol.Event
	fail     error
	maxLimit int // largest Events limit seen
	reads    int // Events calls
}

func newFakeSource() *fakeSource { return &fakeSource{events: map[string][]protocol.Event{}} }

func (f *fakeSource) add(id string, evs ...protocol.Event) {
	if !slices.Contains(f.ids, id) {
		f.ids = append(f.ids, id)
		slices.Sort(f.ids)
	}
	all := append(f.events[id], evs...)
	slices.SortStableFunc(all, func(a, b protocol.Event) int { return b.OccurredAt.Compare(a.OccurredAt) })
	f.events[id] = all
}

func (f *fakeSource) Profiles(cursor string, limit int) ([]*store.View, store.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, store.Page{}, f.fail
	}
	i := 0
	if cursor != "" {
		var found bool
		if i, found = slices.BinarySearch(f.ids, cursor); found {
			i++
		}
	}
	var out []*store.View
	for ; i < len(f.ids) && len(out) < limit; i++ {
		// The store's own classifier computes what a real view holds
		// (orders, last purchase, recent purchases).
		v := &store.View{Profile: profile.Profile{ID: f.ids[i]}}
		cls := profile.NewClassifier(profile.DefaultRules())
		for _, e := range f.events[f.ids[i]] {
			cls.Apply(&v.Profile, &e)
		}
		out = append(out, v)
	}
	var page store.Page
	if i < len(f.ids) {
		page.Next = out[len(out)-1].ID
	}
	return out, page, nil
}

func (f *fakeSource) Events(id, cursor string, limit int) ([]protocol.Event, store.Page, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	f.maxLimit = max(f.maxLimit, limit)
	evs, ok := f.events[id]
	if !ok {
		return nil, store.Page{}, store.ErrNotFound
	}
	i := 0
	if cursor != "" {
		i, _ = strconv.Atoi(cursor)
	}
	end := min(len(evs), i+limit)
	var page store.Page
	if end < len(evs) {
		page.Next = strconv.Itoa(end)
	}
	return slices.Clone(evs[i:end]), page, nil
}

func order(at time.Time, products ...map[string]any) protocol.Event {
	list := make([]any, len(products))
	for i, p := range products {
		list[i] = p
	}
	return protocol.Event{Type: protocol.TypeTrack, Name: "Order Completed", OccurredAt: at,
		Properties: map[string]any{"order_id": "o", "products": list}}
}

func prod(id, name string) map[string]any {
	return map[string]any{"product_id": id, "sku": "SKU-" + id, "name": name, "price": 12.5, "quantity": int64(1)}
}

// pillowSource holds the pillow population as store timelines, with page
// views between the orders.
func pillowSource() *fakeSource {
	f := newFakeSource()
	for i, h := range pillowPopulation(400) {
		id := fmt.Sprintf("prof-%04d", i)
		for _, p := range h {
			f.add(id, order(p.At, prod(p.Product, p.Name)),
				protocol.Event{Type: protocol.TypePage, Name: "home", OccurredAt: p.At.Add(-time.Minute)})
		}
	}
	return f
}

func TestRefreshAndForProfile(t *testing.T) {
	now := day(100)
	src := pillowSource()
	src.add("zz-shopper", order(now.Add(-time.Hour), prod("P-001", "pillows")))
	src.add("zz-browser", protocol.Event{Type: protocol.TypePage, Name: "pillows", OccurredAt: now.Add(-time.Hour)})
	e := newEngine(t, Config{Now: func() time.Time { return now }, PageSize: 7})
	if err := e.Refresh(t.Context(), src); err != nil {
		t.Fatalf("Refresh: %v", err)
	}
	// The model from the store equals the model from the same purchases.
	want := newEngine(t, Config{}).Build(seqOf(append(pillowPopulation(400), buy(now.Add(-time.Hour), "P-001"))))
	if diff := cmp.Diff(want.Top(100), e.Model().Top(100)); diff != "" {
		t.Errorf("rules from the store differ (-build +refresh):\n%s", diff)
	}
	got, err := e.ForProfile(t.Context(), src, "zz-shopper", now)
	if err != nil {
		t.Fatalf("ForProfile: %v", err)
	}
	if len(got) == 0 || got[0].Product != "P-002" || got[0].Reason != "bought pillows (P-001)" {
		t.Errorf("ForProfile = %+v, want pillow covers for pillows", got)
	}
	hook := e.Hook(src)
	views, _, _ := src.Profiles("zz-browser", 10)
	if diff := cmp.Diff(got, hook(views[0])); diff != "" {
		t.Errorf("Hook differs from ForProfile (-for +hook):\n%s", diff)
	}
	reads := src.reads
	browser, _, _ := src.Profiles("zz-a", 1)
	if got := hook(browser[0]); got != nil || src.reads != reads {
		t.Errorf("Hook for a profile without orders = %+v after %d reads, want nothing, unread", got, src.reads-reads)
	}
	if got := hook(nil); got != nil {
		t.Errorf("Hook(nil) = %v", got)
	}
	if _, err := e.ForProfile(t.Context(), src, "missing", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("ForProfile(missing) error = %v, want ErrNotFound", err)
	}
}

func TestPurchasesBounded(t *testing.T) {
	now := day(10)
	src := newFakeSource()
	for i := range 50 {
		src.add("p", order(now.Add(-time.Duration(i)*time.Minute), prod(fmt.Sprint("x", i), "")))
	}
	// An event older than the window stops the read.
	src.add("p", order(now.Add(-40*24*time.Hour), prod("old", "")))
	tests := []struct {
		name string
		cfg  Config
		want int
	}{
		{"max events", Config{MaxEventsPerProfile: 12, PageSize: 5}, 12},
		{"window", Config{PageSize: 5}, 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEngine(t, tt.cfg)
			got, err := e.purchases(t.Context(), src, "p", now.Add(-e.Config().Window))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tt.want || !slices.IsSortedFunc(got, func(a, b Purchase) int { return a.At.Compare(b.At) }) {
				t.Errorf("read %d purchases (sorted %v), want %d oldest first", len(got), slices.IsSortedFunc(got, func(a, b Purchase) int { return a.At.Compare(b.At) }), tt.want)
			}
			if src.maxLimit > e.Config().PageSize {
				t.Errorf("asked for %d events at once", src.maxLimit)
			}
		})
	}
}

func TestAppendProducts(t *testing.T) {
	e := newEngine(t, Config{OrderEvents: []string{"pos.*"}})
	at := day(0)
	tests := []struct {
		name string
		ev   protocol.Event
		want []Purchase
	}{
		{"list", protocol.Event{Type: protocol.TypeTrack, Name: "pos.sale", OccurredAt: at, Properties: map[string]any{
			"products": []any{map[string]any{"product_id": int64(42), "name": "mug"}, map[string]any{"sku": "S-1"}, "junk", map[string]any{"name": "no id"}},
		}}, []Purchase{{Product: "42", Name: "mug", At: at}, {Product: "S-1", At: at}}},
		{"single product", protocol.Event{Type: protocol.TypeTrack, Name: "pos.return", OccurredAt: at, Properties: map[string]any{
			"sku": 7.0, "name": "towel"}}, []Purchase{{Product: "7", Name: "towel", At: at}}},
		{"not an order", protocol.Event{Type: protocol.TypeTrack, Name: "Order Completed", OccurredAt: at, Properties: map[string]any{
			"sku": "x"}}, nil},
		{"not a track", protocol.Event{Type: protocol.TypePage, Name: "pos.sale", OccurredAt: at, Properties: map[string]any{
			"sku": "x"}}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, e.appendProducts(nil, &tt.ev)); diff != "" {
				t.Errorf("purchases (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRefreshFailureKeepsModel(t *testing.T) {
	src := pillowSource()
	e := newEngine(t, Config{Now: func() time.Time { return day(100) }})
	if err := e.Refresh(t.Context(), src); err != nil {
		t.Fatal(err)
	}
	before := e.Model()
	src.fail = errors.New("disk on fire")
	if err := e.Refresh(t.Context(), src); err == nil || !errors.Is(err, src.fail) {
		t.Fatalf("Refresh error = %v", err)
	}
	if e.Model() != before {
		t.Error("a failed refresh replaced the model")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	src.fail = nil
	if err := e.Refresh(ctx, src); !errors.Is(err, context.Canceled) {
		t.Errorf("Refresh on a cancelled context = %v", err)
	}
}

func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newFakeSource()
		e, err := New(Config{Now: time.Now}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Run(t.Context(), src, 0); !errors.Is(err, ErrConfig) {
			t.Errorf("Run with no interval = %v", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- e.Run(ctx, src, time.Hour) }()
		synctest.Wait()
		first := e.Model()
		if first.Stats().Profiles != 0 {
			t.Fatalf("first model has %d profiles", first.Stats().Profiles)
		}
		now := time.Now()
		src.mu.Lock()
		src.add("a", order(now, prod("A", "")), order(now, prod("B", "")))
		src.add("b", order(now, prod("A", ""), prod("B", "")))
		src.mu.Unlock()
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := e.Model().Stats().Profiles; got != 2 {
			t.Errorf("after one interval the model has %d profiles, want 2", got)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
	})
}
