package uplink

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Stats is a point-in-time view of the forwarder.
type Stats struct {
	// Connected reports whether an MQTT connection to the broker is up
	// and subscribed.
	Connected bool
	// LastAckAt is when the hub last acked a batch (ok); zero before.
	LastAckAt time.Time
	// BatchesSent counts batch publishes, resends included.
	BatchesSent uint64
	// EventsForwarded counts events the hub acked (ok).
	EventsForwarded uint64
	// Resends counts batch publishes that started at or below a seq
	// already published (after a reconnect, watchdog or retry ack).
	Resends uint64
	// Rejected counts "rejected" acks from the hub, the answers to the
	// halves of a rejected batch included: see the logs.
	Rejected uint64
	// Quarantined counts events the forwarder moved to the quarantine
	// because the hub rejected them on their own.
	Quarantined uint64
	// Reconnects counts connection attempts after the first.
	Reconnects uint64
	// InFlight is the number of published batches awaiting the hub's ack.
	InFlight int
	// DeleteFailures counts failed deletions of acked events from the
	// queue; each is retried with backoff. Non-zero points at the disk.
	DeleteFailures uint64
}

// Stats returns the current statistics. Safe for concurrent use.
func (f *Forwarder) Stats() Stats {
	s := Stats{
		Connected:       f.connected.Load(),
		BatchesSent:     f.batchesSent.Load(),
		EventsForwarded: f.eventsForwarded.Load(),
		Resends:         f.resends.Load(),
		Rejected:        f.rejected.Load(),
		Quarantined:     f.quarantined.Load(),
		Reconnects:      f.reconnects.Load(),
		InFlight:        int(f.inFlight.Load()),
		DeleteFailures:  f.deletesFailed.Load(),
	}
	if ns := f.lastAckAt.Load(); ns != 0 {
		s.LastAckAt = time.Unix(0, ns)
	}
	return s
}

type collectorSet []prometheus.Collector

func newCollectors(f *Forwarder) collectorSet {
	counter := func(name, help string, v func() uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v()) })
	}
	return collectorSet{
		counter("unico_edge_batches_sent_total", "Batches published to the hub, resends included.", f.batchesSent.Load),
		counter("unico_edge_events_forwarded_total", "Events acknowledged by the hub.", f.eventsForwarded.Load),
		counter("unico_edge_uplink_reconnects_total", "Reconnection attempts to the hub's broker.", f.reconnects.Load),
		counter("unico_edge_batch_resends_total", "Batches published again because the hub had not acked them.", f.resends.Load),
		counter("unico_edge_batches_rejected_total", "Batches the hub rejected; their ranges are resent in halves to isolate the events it refuses.", f.rejected.Load),
		counter("unico_edge_queue_delete_failures_total", "Failed deletions of hub-acknowledged events from the queue; each is retried.", f.deletesFailed.Load),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "unico_edge_hub_connected", Help: "1 when connected to the hub's broker."}, func() float64 {
			if f.connected.Load() {
				return 1
			}
			return 0
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "unico_edge_batches_in_flight", Help: "Batches published and awaiting the hub's ack."}, func() float64 {
			return float64(f.inFlight.Load())
		}),
	}
}

// Collectors returns the forwarder's Prometheus collectors for the agent to
// register: unico_edge_batches_sent_total, unico_edge_events_forwarded_total,
// unico_edge_uplink_reconnects_total, unico_edge_batch_resends_total,
// unico_edge_batches_rejected_total, unico_edge_queue_delete_failures_total,
// unico_edge_hub_connected and unico_edge_batches_in_flight.
func (f *Forwarder) Collectors() []prometheus.Collector {
	return append([]prometheus.Collector(nil), f.collectors...)
}
