// Package edgebench drives the built edge-agent and hub binaries from the
// outside, as a store's clients and an operator see them: it builds Segment
// batch bodies, reads the agent's GET /v1/status, and measures a process's
// peak resident memory. Its tests are the agent's back-pressure and
// deployment-kit checks; its benchmarks (go test -run '^$' -bench Edge
// ./internal/edgebench) measure durable ingest and backlog drain over real
// HTTP and MQTT on loopback.
package edgebench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// BatchSpec describes a /v1/batch body.
type BatchSpec struct {
	// Events in the batch.
	Events int
	// Channel is stamped as context.channel (pos, iot, …).
	Channel string
	// IDPrefix makes messageIds unique: message i of the batch gets
	// IDPrefix-i. Empty: no messageId, the agent generates one.
	IDPrefix string
	// UserID is the userId of every message. Empty: user-<i>.
	UserID string
}

// Batch returns a Segment /v1/batch body of track messages of about 250
// bytes each.
func Batch(s BatchSpec) []byte {
	var b bytes.Buffer
	b.Grow(s.Events * 280)
	b.WriteString(`{"batch":[`)
	for i := range s.Events {
		if i > 0 {
			b.WriteByte(',')
		}
		user := s.UserID
		if user == "" {
			user = fmt.Sprintf("user-%05d", i)
		}
		b.WriteString(`{"type":"track",`)
		if s.IDPrefix != "" {
			fmt.Fprintf(&b, `"messageId":"%s-%d",`, s.IDPrefix, i)
		}
		fmt.Fprintf(&b, `"userId":%q,"event":"Product Viewed","properties":{"sku":"SKU-%05d","price":19.99,"category":"shoes","size":"42"},"context":{"channel":%q,"device":{"id":"till-07"}},"timestamp":"2026-05-01T10:00:00Z"}`,
			user, i, s.Channel)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

// Status is the part of the agent's GET /v1/status that operators and these
// tests read.
type Status struct {
	QueueDepth             int64             `json:"queue_depth"`
	QueueBytes             int64             `json:"queue_bytes"`
	QueueQuotaBytes        int64             `json:"queue_quota_bytes"`
	OldestQueuedAgeSeconds float64           `json:"oldest_queued_age_seconds"`
	HubConnected           bool              `json:"hub_connected"`
	LastAckAt              *time.Time        `json:"last_ack_at"`
	EventsAccepted         uint64            `json:"events_accepted"`
	EventsForwarded        uint64            `json:"events_forwarded"`
	EventsDropped          map[string]uint64 `json:"events_dropped"`
	CorruptRecords         uint64            `json:"corrupt_records"`
	BatchesInFlight        int               `json:"batches_in_flight"`
}

// ParseStatus decodes a /v1/status body.
func ParseStatus(b []byte) (Status, error) {
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return s, fmt.Errorf("parse status: %w", err)
	}
	return s, nil
}

// PeakRSSMiB returns the peak resident set size (VmHWM) of process pid in
// MiB, from /proc/<pid>/status.
func PeakRSSMiB(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("peak rss: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("peak rss: VmHWM %q: %w", v, err)
			}
			return float64(kb) / 1024, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("peak rss: %w", err)
	}
	return 0, fmt.Errorf("peak rss: no VmHWM in /proc/%d/status", pid)
}

// Percentile returns the p-th percentile (0 < p <= 100) of ds, sorting ds
// in place; 0 when ds is empty.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds))*p/100+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}
