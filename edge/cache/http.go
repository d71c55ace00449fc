package cache

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/unico-cdp/unico/protocol"
)

// LookupPath is the route of the lookup handler.
const LookupPath = "/v1/profiles/lookup"

// LookupResponse is the JSON of a successful lookup.
type LookupResponse struct {
	ProfileID   string                `json:"profile_id"`
	Identifiers []protocol.Identifier `json:"identifiers"`
	Traits      map[string]any        `json:"traits"`
	Computed    map[string]any        `json:"computed"`
	Segments    []string              `json:"segments"`
	Consent     map[string]bool       `json:"consent"`
	Offers      []protocol.Offer      `json:"offers"`
	UpdatedAt   time.Time             `json:"updated_at"`
	// SnapshotAgeSeconds is the time since this edge received the
	// profile's snapshot from the hub.
	SnapshotAgeSeconds float64   `json:"snapshot_age_seconds"`
	ReceivedAt         time.Time `json:"received_at"`
}

type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// LookupHandler serves GET /v1/profiles/lookup?type=<identifier type>&value=<value>
// from the cache alone: 200 with a LookupResponse, 404 when no cached
// profile holds the identifier, 400 naming the field for a missing or
// invalid type or value.
func (c *Cache) LookupHandler() fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		args := ctx.QueryArgs()
		typ, value := string(args.Peek("type")), string(args.Peek("value"))
		switch {
		case typ == "":
			writeJSON(ctx, fasthttp.StatusBadRequest, apiError{Error: "missing identifier type", Field: "type"})
			return
		case !protocol.ValidName(typ):
			writeJSON(ctx, fasthttp.StatusBadRequest, apiError{Error: "unknown identifier type: want 1-64 of [A-Za-z0-9._-]", Field: "type"})
			return
		case value == "":
			writeJSON(ctx, fasthttp.StatusBadRequest, apiError{Error: "missing identifier value", Field: "value"})
			return
		case len(value) > protocol.MaxIdentifierLen:
			writeJSON(ctx, fasthttp.StatusBadRequest, apiError{Error: "identifier value too long", Field: "value"})
			return
		}
		p, received, err := c.Lookup(typ, value)
		switch {
		case errors.Is(err, ErrNotFound):
			writeJSON(ctx, fasthttp.StatusNotFound, apiError{Error: "no profile holds this " + typ})
			return
		case errors.Is(err, ErrInvalid):
			writeJSON(ctx, fasthttp.StatusBadRequest, apiError{Error: "invalid identifier", Field: "value"})
			return
		case err != nil:
			c.log.Error("profile lookup", "err", err)
			writeJSON(ctx, fasthttp.StatusServiceUnavailable, apiError{Error: "profile cache unavailable"})
			return
		}
		r := LookupResponse{
			ProfileID: p.ProfileID, Identifiers: p.Identifiers, Traits: p.Traits, Computed: p.Computed,
			Segments: p.Segments, Consent: p.Consent, Offers: p.Offers, UpdatedAt: p.UpdatedAt,
			SnapshotAgeSeconds: max(0, c.opts.Now().Sub(received).Seconds()), ReceivedAt: received,
		}
		if r.Identifiers == nil {
			r.Identifiers = []protocol.Identifier{}
		}
		if r.Traits == nil {
			r.Traits = map[string]any{}
		}
		if r.Computed == nil {
			r.Computed = map[string]any{}
		}
		if r.Segments == nil {
			r.Segments = []string{}
		}
		if r.Consent == nil {
			r.Consent = map[string]bool{}
		}
		if r.Offers == nil {
			r.Offers = []protocol.Offer{}
		}
		writeJSON(ctx, fasthttp.StatusOK, r)
	}
}

func writeJSON(ctx *fasthttp.RequestCtx, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Traits the hub sent that JSON cannot carry (NaN, ±Inf).
		b, _ = json.Marshal(apiError{Error: "profile not representable as JSON: " + err.Error()})
		code = fasthttp.StatusInternalServerError
	}
	ctx.SetStatusCode(code)
	ctx.SetContentType("application/json")
	ctx.SetBody(b)
}

// Collectors returns the cache's Prometheus collectors.
func (c *Cache) Collectors() []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "unico_edge_profile_cache_profiles", Help: "Profiles in the edge's profile cache."},
			func() float64 { return float64(c.Stats().Profiles) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "unico_edge_snapshots_applied_total", Help: "Snapshot batches applied to the profile cache since start."},
			func() float64 { return float64(c.Stats().BatchesApplied) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "unico_edge_snapshot_applied_seq", Help: "Highest snapshot sequence applied to the profile cache."},
			func() float64 { return float64(c.Applied()) }),
		&ignoredCollector{c: c, desc: prometheus.NewDesc("unico_edge_snapshot_batches_ignored_total",
			"Snapshot batches ignored since start, by reason: duplicate, gap, decode, overflow.", []string{"reason"}, nil)},
	}
}

type ignoredCollector struct {
	c    *Cache
	desc *prometheus.Desc
}

func (i *ignoredCollector) Describe(ch chan<- *prometheus.Desc) { ch <- i.desc }

func (i *ignoredCollector) Collect(ch chan<- prometheus.Metric) {
	ig := i.c.Stats().Ignored
	for _, r := range []string{ReasonDuplicate, ReasonGap, ReasonDecode, ReasonOverflow} {
		ch <- prometheus.MustNewConstMetric(i.desc, prometheus.CounterValue, float64(ig[r]), r)
	}
}
