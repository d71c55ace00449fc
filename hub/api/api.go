// Package api is the hub's HTTP API for HQ marketers, auditors and other
// systems: profiles by id and by identifier, their timelines and merge
// histories, unmerge, edges and statistics, under /api/v1/, plus /healthz,
// /metrics and the web UI at /.
package api

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/unico-cdp/unico/hub/store"
	"github.com/unico-cdp/unico/protocol"
)

// Paging limits.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Config configures the API.
type Config struct {
	// AdminToken is the bearer token /api/v1/ requires. Required.
	AdminToken string
	Store      *store.Store
	// Gatherer serves /metrics; nil serves the default registry.
	Gatherer prometheus.Gatherer
	// Ready reports readiness for /healthz; nil means always ready.
	Ready func() error
	// Status adds hub-wide facts to /api/v1/stats (broker clients, …).
	Status func() map[string]any
	// UI serves the web UI at /; nil serves a plain index.
	UI http.Handler
	// Offers returns a profile's next-best offers; nil answers 404 on
	// /api/v1/profiles/{id}/offers.
	Offers func(*store.View) []protocol.Offer
}

// API is the hub's HTTP handler.
type API struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New returns the API handler.
func New(cfg Config, logger *slog.Logger) (*API, error) {
	if cfg.AdminToken == "" {
		return nil, errors.New("admin-token: required")
	}
	if cfg.Store == nil {
		return nil, errors.New("api: store is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Gatherer == nil {
		cfg.Gatherer = prometheus.DefaultGatherer
	}
	a := &API{cfg: cfg, log: logger.With("component", "api"), mux: http.NewServeMux()}
	a.mux.HandleFunc("GET /healthz", a.healthz)
	a.mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{}))
	a.mux.HandleFunc("GET /api/v1/profiles", a.auth(a.listProfiles))
	a.mux.HandleFunc("GET /api/v1/profiles/{id}", a.auth(a.getProfile))
	a.mux.HandleFunc("GET /api/v1/profiles/{id}/events", a.auth(a.profileEvents))
	a.mux.HandleFunc("GET /api/v1/profiles/{id}/merges", a.auth(a.profileMerges))
	a.mux.HandleFunc("POST /api/v1/profiles/{id}/unmerge", a.auth(a.unmerge))
	a.mux.HandleFunc("GET /api/v1/profiles/{id}/offers", a.auth(a.profileOffers))
	a.mux.HandleFunc("GET /api/v1/identifiers", a.auth(a.getIdentifier))
	a.mux.HandleFunc("POST /api/v1/events", a.auth(a.postEvents))
	a.mux.HandleFunc("GET /api/v1/edges", a.auth(a.edges))
	a.mux.HandleFunc("GET /api/v1/stats", a.auth(a.stats))
	// Profiling for operators, behind the admin token.
	a.mux.HandleFunc("/debug/pprof/", a.auth(pprof.Index))
	a.mux.HandleFunc("/debug/pprof/profile", a.auth(pprof.Profile))
	a.mux.HandleFunc("/debug/pprof/trace", a.auth(pprof.Trace))
	a.mux.HandleFunc("/api/", a.auth(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint", "")
	}))
	if cfg.UI != nil {
		a.mux.Handle("/", cfg.UI)
	}
	return a, nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

func (a *API) auth(h http.HandlerFunc) http.HandlerFunc {
	want := []byte("Bearer " + a.cfg.AdminToken)
	return func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="unico"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token", "Authorization")
			return
		}
		h(w, r)
	}
}

func (a *API) healthz(w http.ResponseWriter, _ *http.Request) {
	if a.cfg.Ready != nil {
		if err := a.cfg.Ready(); err != nil {
			writeError(w, http.StatusServiceUnavailable, err.Error(), "")
			return
		}
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintln(w, "ok")
}

// ParseIdentifier parses "type:value" (the value may contain colons).
func ParseIdentifier(s string) (protocol.Identifier, error) {
	t, v, ok := strings.Cut(s, ":")
	if !ok || t == "" || v == "" {
		return protocol.Identifier{}, errors.New("want type:value, such as email:ana@example.com")
	}
	return protocol.Identifier{Type: t, Value: v}, nil
}

func (a *API) listProfiles(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if s := q.Get("identifier"); s != "" {
		x, err := ParseIdentifier(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, err.Error(), "identifier")
			return
		}
		v, err := a.cfg.Store.Lookup(normalise(x))
		if a.storeErr(w, err, "no profile holds "+x.String()) {
			return
		}
		writeJSON(w, http.StatusOK, v)
		return
	}
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	views, page, err := a.cfg.Store.Profiles(q.Get("cursor"), limit)
	if a.storeErr(w, err, "") {
		return
	}
	if views == nil {
		views = []*store.View{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"profiles": views, "next": page.Next})
}

// normalise applies the edge's normalisation to identifiers typed by hand.
func normalise(x protocol.Identifier) protocol.Identifier {
	switch x.Type {
	case protocol.IDEmail:
		x.Value, _ = protocol.NormalizeEmail(x.Value)
	case protocol.IDPhone:
		if strings.HasPrefix(x.Value, "+") || strings.HasPrefix(x.Value, "00") {
			x.Value, _ = protocol.NormalizePhone(x.Value, "")
		}
	}
	return x
}

func (a *API) getProfile(w http.ResponseWriter, r *http.Request) {
	v, err := a.cfg.Store.Profile(r.PathValue("id"))
	if a.storeErr(w, err, "no such profile") {
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *API) profileEvents(w http.ResponseWriter, r *http.Request) {
	limit, ok := limitParam(w, r)
	if !ok {
		return
	}
	evs, page, err := a.cfg.Store.Events(r.PathValue("id"), r.URL.Query().Get("cursor"), limit)
	if a.storeErr(w, err, "no such profile") {
		return
	}
	if evs == nil {
		evs = []protocol.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs, "next": page.Next})
}

func (a *API) profileMerges(w http.ResponseWriter, r *http.Request) {
	ms, err := a.cfg.Store.Merges(r.PathValue("id"))
	if a.storeErr(w, err, "no such profile") {
		return
	}
	if ms == nil {
		ms = []store.MergeRecord{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"merges": ms})
}

func (a *API) profileOffers(w http.ResponseWriter, r *http.Request) {
	if a.cfg.Offers == nil {
		writeError(w, http.StatusNotFound, "offers are not enabled", "")
		return
	}
	v, err := a.cfg.Store.Profile(r.PathValue("id"))
	if a.storeErr(w, err, "no such profile") {
		return
	}
	offers := a.cfg.Offers(v)
	if offers == nil {
		offers = []protocol.Offer{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"profile_id": v.ID, "offers": offers})
}

func (a *API) unmerge(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Identifier string `json:"identifier"`
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		writeError(w, http.StatusBadRequest, "invalid JSON body: "+err.Error(), "identifier")
		return
	}
	x, err := ParseIdentifier(body.Identifier)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "identifier")
		return
	}
	x = normalise(x)
	v, err := a.cfg.Store.Profile(r.PathValue("id"))
	if a.storeErr(w, err, "no such profile") {
		return
	}
	held := false
	for _, y := range v.Identifiers {
		held = held || y == x
	}
	if !held {
		writeError(w, http.StatusConflict, "the profile does not hold "+x.String(), "identifier")
		return
	}
	if len(v.Identifiers) == 1 {
		writeError(w, http.StatusConflict, x.String()+" is the profile's only identifier", "identifier")
		return
	}
	if err := a.cfg.Store.Isolate(x); a.storeErr(w, err, "") {
		return
	}
	a.log.Info("identifier split off its profile", "identifier", x.String(), "profile", v.ID)
	before, err := a.cfg.Store.Profile(v.ID)
	if a.storeErr(w, err, "") {
		return
	}
	after, err := a.cfg.Store.Lookup(x)
	if a.storeErr(w, err, "") {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"profile": before, "split": after})
}

func (a *API) getIdentifier(w http.ResponseWriter, r *http.Request) {
	x, err := ParseIdentifier(r.URL.Query().Get("identifier"))
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error(), "identifier")
		return
	}
	info, err := a.cfg.Store.Identifier(normalise(x))
	if a.storeErr(w, err, "unknown identifier") {
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (a *API) edges(w http.ResponseWriter, _ *http.Request) {
	es, err := a.cfg.Store.Edges()
	if a.storeErr(w, err, "") {
		return
	}
	type edgeView struct {
		store.EdgeState
		SecondsSinceBatch float64 `json:"seconds_since_last_batch"`
	}
	out := make([]edgeView, 0, len(es))
	now := time.Now()
	for _, e := range es {
		out = append(out, edgeView{EdgeState: e, SecondsSinceBatch: now.Sub(e.LastBatchAt).Seconds()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"edges": out})
}

func (a *API) stats(w http.ResponseWriter, _ *http.Request) {
	out := map[string]any{"store": a.cfg.Store.Stats()}
	if a.cfg.Status != nil {
		for k, v := range a.cfg.Status() {
			out[k] = v
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// storeErr writes the response for a store error and reports whether there
// was one.
func (a *API) storeErr(w http.ResponseWriter, err error, notFound string) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, notFound, "")
	case errors.Is(err, store.ErrBadCursor):
		writeError(w, http.StatusBadRequest, "invalid cursor: pass the next value of the previous page", "cursor")
	case errors.Is(err, store.ErrClosed):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusServiceUnavailable, "shutting down", "")
	default:
		a.log.Error("store", "err", err)
		writeError(w, http.StatusInternalServerError, "internal error", "")
	}
	return true
}

func limitParam(w http.ResponseWriter, r *http.Request) (int, bool) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return DefaultLimit, true
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxLimit {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("limit must be 1 to %d", MaxLimit), "limit")
		return 0, false
	}
	return n, true
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg, field string) {
	body := map[string]string{"error": msg}
	if field != "" {
		body["field"] = field
	}
	writeJSON(w, code, body)
}

// MaxImportBody bounds a POST /api/v1/events body.
const MaxImportBody = 8 << 20

// postEvents commits envelopes sent by importers (`hub import`) through the
// same resolution path as edge batches.
func (a *API) postEvents(w http.ResponseWriter, r *http.Request) {
	var evs []protocol.Event
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, MaxImportBody))
	if err := dec.Decode(&evs); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("body exceeds %d bytes", MaxImportBody), "")
			return
		}
		writeError(w, http.StatusBadRequest, "invalid JSON: want an array of events: "+err.Error(), "")
		return
	}
	if len(evs) > protocol.MaxBatchEvents {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("%d events exceed the limit of %d", len(evs), protocol.MaxBatchEvents), "")
		return
	}
	for i := range evs {
		e := &evs[i]
		field := ""
		switch {
		case e.ID == "" || len(e.ID) > protocol.MaxIdentifierLen:
			field = "id"
		case e.Type == "":
			field = "type"
		case e.OccurredAt.IsZero():
			field = "occurred_at"
		}
		for j, x := range e.Identifiers {
			if field == "" && (x.Type == "" || x.Value == "" || len(x.Value) > protocol.MaxIdentifierLen) {
				field = fmt.Sprintf("identifiers[%d]", j)
			}
		}
		if field != "" {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("event %d: missing or invalid", i), fmt.Sprintf("[%d].%s", i, field))
			return
		}
		if e.ReceivedAt.IsZero() {
			e.ReceivedAt = time.Now().UTC()
		}
	}
	res, err := a.cfg.Store.Commit(r.Context(), &protocol.Batch{Events: evs})
	if a.storeErr(w, err, "") {
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"accepted": res.Accepted, "duplicates": res.Duplicates})
}
