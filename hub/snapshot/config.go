package snapshot

import (
	"errors"
	"fmt"
	"time"

	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/protocol"
)

// Scopes say which profiles an edge holds.
const (
	// ScopeSite: an edge holds the profiles with events captured by that
	// edge (Computed.Edges[edge] > 0).
	ScopeSite = "site"
	// ScopeRegion: an edge holds the profiles seen at any edge of its
	// region (Config.Regions). An edge without a region is a region of
	// its own.
	ScopeRegion = "region"
	// ScopeAll: every edge holds every profile.
	ScopeAll = "all"
)

// Defaults of Config.
const (
	DefaultBatchProfiles   = 200
	DefaultWindow          = 4
	DefaultAckTimeout      = 10 * time.Second
	DefaultPollInterval    = 200 * time.Millisecond
	DefaultPublishTimeout  = 5 * time.Second
	DefaultMaxEdges        = 10000
	DefaultChangesPerRound = 1000
)

// DefaultTraits are the traits sent to edges when Config.Traits is empty.
var DefaultTraits = []string{"first_name", "last_name", "name", "preferred_store", "language"}

// DefaultHashTypes are the identifier types sent hashed when
// Config.HashTypes is nil.
var DefaultHashTypes = []string{protocol.IDEmail, protocol.IDPhone}

// ErrInvalidConfig is returned by New for a bad Config; the message names
// the key.
var ErrInvalidConfig = errors.New("snapshot: invalid config")

// Config configures the snapshot manager. Zero fields take the defaults.
type Config struct {
	// Dir is the manager's own Badger directory (outbox, per-edge state,
	// membership). Required.
	Dir string
	// Scope is ScopeSite (default), ScopeRegion or ScopeAll.
	Scope string
	// Regions maps an edge id to its region, for ScopeRegion.
	Regions map[string]string
	// Traits are the trait names sent to edges (values only). Default
	// DefaultTraits. Raw e-mail or phone values never travel as traits
	// unless listed here.
	Traits []string
	// HashTypes are identifier types whose values are sent as
	// protocol.HashIdentifier(HashSalt, value). Nil means DefaultHashTypes; an
	// empty non-nil slice hashes nothing.
	HashTypes []string
	// HashSalt is the tenant salt for HashTypes.
	HashSalt string
	// BatchProfiles is the most snapshots in one SnapshotBatch. Default 200.
	BatchProfiles int
	// Window is the most unacked batches per edge. Default 4.
	Window int
	// AckTimeout is how long unacked batches wait before they are resent
	// from the edge's acked seq + 1. Consecutive timeouts double it, up to
	// 32 × AckTimeout, so an offline edge costs almost nothing. Default 10s.
	AckTimeout time.Duration
	// PollInterval is how often the store's change marks are read when
	// Notify is not called. Default 200ms.
	PollInterval time.Duration
	// PublishTimeout bounds the wait for one PUBACK. Default 5s.
	PublishTimeout time.Duration
	// MaxEdges bounds the edges the manager tracks (and so the edge label
	// of its metrics). Snapshot acks of further edges are ignored and
	// logged. Default 10,000.
	MaxEdges int
	// ChangesPerRound is how many change marks are read at a time.
	// Default 1000.
	ChangesPerRound int
	// Offers returns the offers put in a profile's snapshot; nil = none.
	Offers func(*store.View) []protocol.Offer
	// Segments returns the segments put in a profile's snapshot; nil = none.
	Segments func(*store.View) []string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() (Config, error) {
	if c.Dir == "" {
		return c, fmt.Errorf("%w: Dir is required", ErrInvalidConfig)
	}
	switch c.Scope {
	case "":
		c.Scope = ScopeSite
	case ScopeSite, ScopeRegion, ScopeAll:
	default:
		return c, fmt.Errorf("%w: Scope %q: want %q, %q or %q", ErrInvalidConfig, c.Scope, ScopeSite, ScopeRegion, ScopeAll)
	}
	if c.Scope == ScopeRegion && len(c.Regions) == 0 {
		return c, fmt.Errorf("%w: Regions: required with Scope %q", ErrInvalidConfig, ScopeRegion)
	}
	if len(c.Traits) == 0 {
		c.Traits = DefaultTraits
	}
	if c.HashTypes == nil {
		c.HashTypes = DefaultHashTypes
	}
	type pos struct {
		name string
		v    *int
		def  int
	}
	for _, p := range []pos{
		{"BatchProfiles", &c.BatchProfiles, DefaultBatchProfiles},
		{"Window", &c.Window, DefaultWindow},
		{"MaxEdges", &c.MaxEdges, DefaultMaxEdges},
		{"ChangesPerRound", &c.ChangesPerRound, DefaultChangesPerRound},
	} {
		if *p.v < 0 {
			return c, fmt.Errorf("%w: %s %d: must not be negative", ErrInvalidConfig, p.name, *p.v)
		}
		if *p.v == 0 {
			*p.v = p.def
		}
	}
	if c.BatchProfiles > 5000 {
		return c, fmt.Errorf("%w: BatchProfiles %d: at most 5000", ErrInvalidConfig, c.BatchProfiles)
	}
	if c.Window > 64 {
		return c, fmt.Errorf("%w: Window %d: at most 64", ErrInvalidConfig, c.Window)
	}
	type dur struct {
		name string
		v    *time.Duration
		def  time.Duration
	}
	for _, d := range []dur{
		{"AckTimeout", &c.AckTimeout, DefaultAckTimeout},
		{"PollInterval", &c.PollInterval, DefaultPollInterval},
		{"PublishTimeout", &c.PublishTimeout, DefaultPublishTimeout},
	} {
		if *d.v < 0 {
			return c, fmt.Errorf("%w: %s %s: must not be negative", ErrInvalidConfig, d.name, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c, nil
}
