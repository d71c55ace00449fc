package edgebench

import (
	"encoding/json"
	"os"
	"testing"
	"time"
)

func TestBatchIsValidJSON(t *testing.T) {
	body := Batch(BatchSpec{Events: 100, Channel: "iot", IDPrefix: "b7", UserID: "u-1"})
	var v struct {
		Batch []struct {
			MessageID string `json:"messageId"`
			UserID    string `json:"userId"`
			Context   struct {
				Channel string `json:"channel"`
			} `json:"context"`
		} `json:"batch"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("batch is not JSON: %v", err)
	}
	if len(v.Batch) != 100 {
		t.Fatalf("%d messages, want 100", len(v.Batch))
	}
	if m := v.Batch[99]; m.MessageID != "b7-99" || m.UserID != "u-1" || m.Context.Channel != "iot" {
		t.Errorf("last message = %+v", m)
	}
	if per := len(body) / 100; per < 200 || per > 300 {
		t.Errorf("%d bytes per message, want about 250", per)
	}
}

func TestPercentile(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, ms(i))
	}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{50, ms(50)}, {99, ms(99)}, {100, ms(100)}, {1, ms(1)}} {
		if got := Percentile(ds, tt.p); got != tt.want {
			t.Errorf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil) = %v", got)
	}
}

func TestPeakRSSOfSelf(t *testing.T) {
	mib, err := PeakRSSMiB(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if mib <= 1 {
		t.Errorf("peak RSS of the test process %.1f MiB, want > 1", mib)
	}
	if _, err := PeakRSSMiB(1 << 30); err == nil {
		t.Error("no error for a process that does not exist")
	}
}

func TestParseStatus(t *testing.T) {
	s, err := ParseStatus([]byte(`{"queue_depth":3,"hub_connected":true,"events_dropped":{"iot":2}}`))
	if err != nil {
		t.Fatal(err)
	}
	if s.QueueDepth != 3 || !s.HubConnected || s.EventsDropped["iot"] != 2 {
		t.Errorf("status = %+v", s)
	}
	if _, err := ParseStatus([]byte(`{`)); err == nil {
		t.Error("no error for truncated JSON")
	}
}
