// Package offers is the hub's next-best-offer engine. It learns product
// associations of the form "customers who bought X buy Y at the same time or
// within a window after" from the order events in profile timelines, and
// turns them into ranked offers for one profile, leaving out what the
// profile bought recently.
//
// A Model is immutable and built in one go from a set of purchase histories
// (Build); the Engine holds the current model, rebuilds it from the profile
// store on a schedule (Refresh, Run) and answers Recommend, ForProfile and
// the snapshot hook (Hook) from it. The same input set always gives the same
// model, whatever the order of the histories, and ties are broken by product
// id, so offers are deterministic.
package offers

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/unico-cdp/unico/hub/profile"
)

// Metrics a rule can be ranked by.
const (
	// MetricLift ranks by lift: confidence divided by the consequent's share
	// of buyers, favouring products that X's buyers buy more than others.
	MetricLift = "lift"
	// MetricConfidence ranks by confidence: the share of X's buyers who buy Y.
	MetricConfidence = "confidence"
)

// Defaults of Config.
const (
	DefaultWindow                 = 30 * 24 * time.Hour
	DefaultHorizon                = 365 * 24 * time.Hour
	DefaultTopN                   = 3
	DefaultMinSupport             = 2
	DefaultMinLift                = 1.0
	DefaultMaxProducts            = 100_000
	DefaultMaxPairsPerProduct     = 20
	DefaultMaxPairs               = 4_000_000
	DefaultMaxPurchasesPerProfile = 500
	DefaultMaxEventsPerProfile    = 2_000
	DefaultPageSize               = 500
	DefaultProductsProperty       = "products"
	DefaultNameKey                = "name"
)

// ErrConfig is returned by New for an invalid Config; the message names the key.
var ErrConfig = errors.New("offers: invalid config")

// Config says what a purchase is and how rules are learnt and ranked. Zero
// fields take the documented defaults.
type Config struct {
	// OrderEvents are track event names (or prefixes ending in "*") that are
	// purchases. Default: profile.DefaultRules().OrderEvents.
	OrderEvents []string
	// ProductsProperty is the event property holding the list of product
	// objects. Default "products". An order event without that list is read
	// as one product described by its own properties.
	ProductsProperty string
	// ProductKeys are tried in order for a product's id. Default
	// "product_id", "sku".
	ProductKeys []string
	// NameKey is the product property holding its display name, used in
	// offer reasons. Default "name".
	NameKey string
	// Window is the N of "bought X → buys Y within N": Y counts when bought
	// at the same time as X or up to Window later. It is also how far back
	// Recommend looks and what it excludes. Default 30 days.
	Window time.Duration
	// Horizon is how far back Refresh reads purchases. Default 365 days.
	Horizon time.Duration
	// TopN is the number of offers per profile. Default 3.
	TopN int
	// MinSupport is the least number of profiles that must have bought a
	// pair for it to become a rule (and the least support of a product for
	// it to be tracked). Default 2.
	MinSupport int
	// MinConfidence drops rules whose confidence is below it. Default 0 (no
	// floor).
	MinConfidence float64
	// MinLift drops rules whose lift is below it. Zero means 1 (default):
	// only positive associations; a negative value keeps every rule.
	MinLift float64
	// Metric ranks rules and offers: MetricLift (default) or MetricConfidence.
	Metric string
	// MaxProducts bounds the products tracked: the MaxProducts products with
	// the most buyers (ties by id) get pair counters and rules. Default
	// 100,000.
	MaxProducts int
	// MaxPairsPerProduct bounds the rules kept per antecedent X: the best by
	// Metric, ties by consequent id. Default 20.
	MaxPairsPerProduct int
	// MaxPairs bounds the pair counters held while building. Beyond it the
	// least-bought pairs are dropped (Stats.PairsDropped), and the model may
	// then depend on the input order. Default 4,000,000 (about 100 MB).
	MaxPairs int
	// MaxPurchasesPerProfile bounds the purchases of one profile used to
	// build (the most recent are kept), so one profile costs at most its
	// square in pair work. Default 500.
	MaxPurchasesPerProfile int
	// MaxEventsPerProfile bounds how many timeline events (of any type,
	// newest first) Refresh and ForProfile read for one profile; older
	// purchases are not seen. Default 2,000.
	MaxEventsPerProfile int
	// PageSize is the page size used to read profiles and timelines.
	// Default 500.
	PageSize int
	// ReadAllTimelines makes Refresh and Hook read the timeline of every
	// profile. By default a profile whose computed order count is zero, or
	// (for Hook) whose last purchase is older than Window, is skipped
	// unread; set this when OrderEvents names events the store does not
	// count as orders.
	ReadAllTimelines bool
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if len(c.OrderEvents) == 0 {
		c.OrderEvents = profile.DefaultRules().OrderEvents
	}
	if c.ProductsProperty == "" {
		c.ProductsProperty = DefaultProductsProperty
	}
	if len(c.ProductKeys) == 0 {
		c.ProductKeys = []string{"product_id", "sku"}
	}
	if c.NameKey == "" {
		c.NameKey = DefaultNameKey
	}
	if c.Metric == "" {
		c.Metric = MetricLift
	}
	if c.Metric != MetricLift && c.Metric != MetricConfidence {
		return c, fmt.Errorf("%w: metric %q: want %q or %q", ErrConfig, c.Metric, MetricLift, MetricConfidence)
	}
	if c.MinLift == 0 {
		c.MinLift = DefaultMinLift
	}
	if c.MinConfidence < 0 || c.MinConfidence > 1 {
		return c, fmt.Errorf("%w: min_confidence %v: want 0..1", ErrConfig, c.MinConfidence)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	durs := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"window", &c.Window, DefaultWindow},
		{"horizon", &c.Horizon, DefaultHorizon},
	}
	for _, d := range durs {
		if *d.v < 0 {
			return c, fmt.Errorf("%w: %s %v is negative", ErrConfig, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"top_n", &c.TopN, DefaultTopN},
		{"min_support", &c.MinSupport, DefaultMinSupport},
		{"max_products", &c.MaxProducts, DefaultMaxProducts},
		{"max_pairs_per_product", &c.MaxPairsPerProduct, DefaultMaxPairsPerProduct},
		{"max_pairs", &c.MaxPairs, DefaultMaxPairs},
		{"max_purchases_per_profile", &c.MaxPurchasesPerProfile, DefaultMaxPurchasesPerProfile},
		{"max_events_per_profile", &c.MaxEventsPerProfile, DefaultMaxEventsPerProfile},
		{"page_size", &c.PageSize, DefaultPageSize},
	}
	for _, n := range ints {
		if *n.v < 0 {
			return c, fmt.Errorf("%w: %s %d is negative", ErrConfig, n.name, *n.v)
		}
		if *n.v == 0 {
			*n.v = n.def
		}
	}
	return c, nil
}

// Engine holds the current model and refreshes it. It is safe for
// concurrent use.
type Engine struct {
	cfg   Config
	log   *slog.Logger
	model atomic.Pointer[Model]
	// refreshMu serialises refreshes, so the last one started is the one
	// whose model stays installed.
	refreshMu sync.Mutex
}

// New returns an engine with an empty model (no offers until the first
// Refresh or Install). A nil logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Engine, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e := &Engine{cfg: c, log: logger.With("component", "offers")}
	e.model.Store(emptyModel(c))
	return e, nil
}

// Config returns the engine's configuration with defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// Model returns the current model (never nil).
func (e *Engine) Model() *Model { return e.model.Load() }

// Install makes m the current model.
func (e *Engine) Install(m *Model) { e.model.Store(m) }
