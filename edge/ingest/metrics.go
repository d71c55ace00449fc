package ingest

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	accepted *prometheus.CounterVec
	rejected *prometheus.CounterVec
	requests *prometheus.CounterVec
	duration prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unico_edge_events_accepted_total",
			Help: "Events stored durably by HTTP ingest, by channel.",
		}, []string{"channel"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unico_edge_events_rejected_total",
			Help: "Events refused by HTTP ingest, by reason (invalid, too_large, unauthorized, full, unavailable). Requests refused before their events are counted (invalid, too_large, unauthorized) count one.",
		}, []string{"reason"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "unico_edge_requests_total",
			Help: "HTTP requests answered by the edge agent, by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "unico_edge_request_duration_seconds",
			Help:    "Time to answer Segment ingest requests, durable append included.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}),
	}
	for _, c := range []prometheus.Collector{m.accepted, m.rejected, m.requests, m.duration} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("ingest metrics already registered: %w", err)
			}
			return nil, err
		}
	}
	return m, nil
}
