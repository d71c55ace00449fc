package bridge

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metricDescs are the descriptions of the metrics a Bridge exports. Per-device
// series carry the label "device"; their number is bounded by
// Config.MaxDevices.
type metricDescs struct {
	frames, gaps, duplicates, reordered, stale, reboots *prometheus.Desc
	battery, freeHeap, wifiRSSI, lastSeen               *prometheus.Desc
	rejected, events, tracked, evictions, weak          *prometheus.Desc
}

func newMetricDescs() *metricDescs {
	dev := []string{"device"}
	return &metricDescs{
		frames:     prometheus.NewDesc("unico_edge_device_frames_total", "Frames accepted from a device.", dev, nil),
		gaps:       prometheus.NewDesc("unico_edge_device_gaps_total", "Frames found missing from a device's sequence.", dev, nil),
		duplicates: prometheus.NewDesc("unico_edge_device_duplicates_total", "Duplicate frames dropped.", dev, nil),
		reordered:  prometheus.NewDesc("unico_edge_device_reordered_total", "Frames accepted out of order.", dev, nil),
		stale:      prometheus.NewDesc("unico_edge_device_stale_total", "Frames dropped as older than the sequence window or from the previous boot.", dev, nil),
		reboots:    prometheus.NewDesc("unico_edge_device_reboots_total", "Device reboots seen.", dev, nil),
		battery:    prometheus.NewDesc("unico_edge_device_battery_percent", "Battery level from the last health record (absent when unknown).", dev, nil),
		freeHeap:   prometheus.NewDesc("unico_edge_device_free_heap_bytes", "Free heap from the last health record.", dev, nil),
		wifiRSSI:   prometheus.NewDesc("unico_edge_device_wifi_rssi_dbm", "Wi-Fi signal from the last health record.", dev, nil),
		lastSeen:   prometheus.NewDesc("unico_edge_device_last_seen_timestamp_seconds", "When the device's last accepted frame arrived.", dev, nil),
		rejected:   prometheus.NewDesc("unico_edge_bridge_frames_rejected_total", "Frames rejected, by reason.", []string{"reason"}, nil),
		events:     prometheus.NewDesc("unico_edge_bridge_events_total", "Events emitted, by name.", []string{"name"}, nil),
		tracked:    prometheus.NewDesc("unico_edge_bridge_tracked_identifiers", "Identifiers with an open presence session.", nil, nil),
		evictions:  prometheus.NewDesc("unico_edge_bridge_evictions_total", "Presence sessions closed early because MaxTracked was reached.", nil, nil),
		weak:       prometheus.NewDesc("unico_edge_bridge_weak_sightings_total", "Sightings ignored for being below the RSSI threshold.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (b *Bridge) Describe(ch chan<- *prometheus.Desc) {
	m := b.metrics
	for _, d := range []*prometheus.Desc{m.frames, m.gaps, m.duplicates, m.reordered, m.stale, m.reboots,
		m.battery, m.freeHeap, m.wifiRSSI, m.lastSeen, m.rejected, m.events, m.tracked, m.evictions, m.weak} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (b *Bridge) Collect(ch chan<- prometheus.Metric) {
	m := b.metrics
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, d := range b.Devices() {
		counter(m.frames, d.Frames, d.DeviceID)
		counter(m.gaps, d.Gaps, d.DeviceID)
		counter(m.duplicates, d.Duplicates, d.DeviceID)
		counter(m.reordered, d.Reordered, d.DeviceID)
		counter(m.stale, d.Stale, d.DeviceID)
		counter(m.reboots, d.Reboots, d.DeviceID)
		gauge(m.lastSeen, float64(d.LastSeen.UnixMilli())/1e3, d.DeviceID)
		if d.HasHealth {
			if d.Battery != BatteryUnknown {
				gauge(m.battery, float64(d.Battery), d.DeviceID)
			}
			gauge(m.freeHeap, float64(d.FreeHeap), d.DeviceID)
			gauge(m.wifiRSSI, float64(d.WiFiRSSI), d.DeviceID)
		}
	}
	b.mu.Lock()
	rejected, events := b.rejected, b.events
	tracked, evictions, weak := len(b.tracked), b.evictions, b.weak
	b.mu.Unlock()
	for i, r := range rejectReasons {
		counter(m.rejected, rejected[i], r)
	}
	for i, n := range eventNames {
		counter(m.events, events[i], n)
	}
	gauge(m.tracked, float64(tracked))
	counter(m.evictions, evictions)
	counter(m.weak, weak)
}
