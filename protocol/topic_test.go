package protocol

import (
	"strings"
	"testing"
)

func TestTopicBuilders(t *testing.T) {
	tests := []struct {
		name string
		got  string
		want string
		leaf string
	}{
		{"batch", BatchTopic("acme", "edge-1"), "unico/v1/acme/edge/edge-1/batch", "batch"},
		{"ack", AckTopic("acme", "edge-1"), "unico/v1/acme/edge/edge-1/ack", "ack"},
		{"snapshot", SnapshotTopic("acme", "edge-1"), "unico/v1/acme/edge/edge-1/snapshot", "snapshot"},
		{"command", CommandTopic("acme", "edge-1"), "unico/v1/acme/edge/edge-1/command", "command"},
		{"snapack", SnapshotAckTopic("acme", "edge-1"), "unico/v1/acme/edge/edge-1/snapack", "snapack"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("topic = %q, want %q", tt.got, tt.want)
			}
			tenant, edge, leaf, err := ParseTopic(tt.got)
			if err != nil || tenant != "acme" || edge != "edge-1" || leaf != tt.leaf {
				t.Fatalf("ParseTopic(%q) = %q, %q, %q, %v", tt.got, tenant, edge, leaf, err)
			}
		})
	}
}

func TestHubFilters(t *testing.T) {
	tests := []struct {
		got, want string
	}{
		{HubBatchFilter(false), "unico/v1/+/edge/+/batch"},
		{HubBatchFilter(true), "$share/unico-hub/unico/v1/+/edge/+/batch"},
		{HubSnapAckFilter(false), "unico/v1/+/edge/+/snapack"},
		{HubSnapAckFilter(true), "$share/unico-hub/unico/v1/+/edge/+/snapack"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("filter = %q, want %q", tt.got, tt.want)
		}
	}
	// Every edge's batch topic matches the hub's filter level by level.
	f := strings.Split(HubBatchFilter(false), "/")
	topic := strings.Split(BatchTopic("t-1", "e.2"), "/")
	if len(f) != len(topic) {
		t.Fatalf("filter %v and topic %v differ in levels", f, topic)
	}
	for i := range f {
		if f[i] != "+" && f[i] != topic[i] {
			t.Errorf("level %d: filter %q does not match %q", i, f[i], topic[i])
		}
	}
}

func TestParseTopicErrors(t *testing.T) {
	tests := []struct {
		in, wantErr string
	}{
		{"", `topic "": not an edge topic`},
		{"unico/v1/acme/edge/e1", `topic "unico/v1/acme/edge/e1": not an edge topic`},
		{"unico/v1/acme/edge/e1/batch/extra", `topic "unico/v1/acme/edge/e1/batch/extra": not an edge topic`},
		{"other/v1/acme/edge/e1/batch", `topic "other/v1/acme/edge/e1/batch": not an edge topic`},
		{"unico/v1/acme/hub/e1/batch", `topic "unico/v1/acme/hub/e1/batch": not an edge topic`},
		{"unico/v2/acme/edge/e1/batch", `topic "unico/v2/acme/edge/e1/batch": unsupported version "v2"`},
		{"unico/v1//edge/e1/batch", `topic "unico/v1//edge/e1/batch": empty tenant or edge`},
		{"unico/v1/acme/edge//batch", `topic "unico/v1/acme/edge//batch": empty tenant or edge`},
		{"$share/unico-hub/unico/v1/+/edge/+/batch", `topic "$share/unico-hub/unico/v1/+/edge/+/batch": not an edge topic`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			_, _, _, err := ParseTopic(tt.in)
			if err == nil || err.Error() != tt.wantErr {
				t.Fatalf("ParseTopic(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
		})
	}
	// An unknown leaf parses; the caller decides what it means.
	if _, _, leaf, err := ParseTopic("unico/v1/a/edge/b/future"); err != nil || leaf != "future" {
		t.Errorf("ParseTopic(future leaf) = %q, %v", leaf, err)
	}
}

func TestValidName(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"acme", true},
		{"store-12.edge_1", true},
		{"A", true},
		{strings.Repeat("a", 64), true},
		{strings.Repeat("a", 65), false},
		{"", false},
		{"a/b", false},
		{"a+b", false},
		{"a#", false},
		{"a b", false},
		{"été", false},
		{"a\x00", false},
		{"$share", false},
	}
	for _, tt := range tests {
		if got := ValidName(tt.in); got != tt.want {
			t.Errorf("ValidName(%q) = %t, want %t", tt.in, got, tt.want)
		}
	}
}
