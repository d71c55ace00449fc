package protocol

import (
	"fmt"
	"strings"
)

// TopicVersion is the version segment of every MQTT topic. A v2 protocol
// gets its own topics, so deployed v1 agents keep working beside it.
const TopicVersion = "v1"

// HubShareGroup is the shared-subscription group the hub's workers join, so
// that several workers split the edges' batches between them.
const HubShareGroup = "unico-hub"

// Topics:
//
//	unico/v1/{tenant}/edge/{edge}/batch      edge → hub: Batch
//	unico/v1/{tenant}/edge/{edge}/ack        hub → edge: Ack
//	unico/v1/{tenant}/edge/{edge}/snapshot   hub → edge: SnapshotBatch
//	unico/v1/{tenant}/edge/{edge}/command    hub → edge: Command
//	unico/v1/{tenant}/edge/{edge}/snapack    edge → hub: Ack of snapshots
const (
	topicBatch    = "batch"
	topicAck      = "ack"
	topicSnapshot = "snapshot"
	topicCommand  = "command"
	topicSnapAck  = "snapack"
)

func topic(tenant, edge, leaf string) string {
	return "unico/" + TopicVersion + "/" + tenant + "/edge/" + edge + "/" + leaf
}

// BatchTopic is where edge publishes its batches.
func BatchTopic(tenant, edge string) string { return topic(tenant, edge, topicBatch) }

// AckTopic is where the hub publishes acks for edge.
func AckTopic(tenant, edge string) string { return topic(tenant, edge, topicAck) }

// SnapshotTopic is where the hub publishes profile snapshots for edge.
func SnapshotTopic(tenant, edge string) string { return topic(tenant, edge, topicSnapshot) }

// CommandTopic is where the hub publishes commands for edge.
func CommandTopic(tenant, edge string) string { return topic(tenant, edge, topicCommand) }

// SnapshotAckTopic is where edge acknowledges applied snapshots.
func SnapshotAckTopic(tenant, edge string) string { return topic(tenant, edge, topicSnapAck) }

// HubBatchFilter is the subscription filter the hub uses for all edges'
// batches. With shared set, it is a shared subscription in HubShareGroup.
func HubBatchFilter(shared bool) string {
	f := "unico/" + TopicVersion + "/+/edge/+/" + topicBatch
	if shared {
		return "$share/" + HubShareGroup + "/" + f
	}
	return f
}

// HubSnapAckFilter is the subscription filter for snapshot acks.
func HubSnapAckFilter(shared bool) string {
	f := "unico/" + TopicVersion + "/+/edge/+/" + topicSnapAck
	if shared {
		return "$share/" + HubShareGroup + "/" + f
	}
	return f
}

// ParseTopic splits an edge topic into tenant, edge and leaf ("batch",
// "ack", …).
func ParseTopic(t string) (tenant, edge, leaf string, err error) {
	p := strings.Split(t, "/")
	if len(p) != 6 || p[0] != "unico" || p[3] != "edge" {
		return "", "", "", fmt.Errorf("topic %q: not an edge topic", t)
	}
	if p[1] != TopicVersion {
		return "", "", "", fmt.Errorf("topic %q: unsupported version %q", t, p[1])
	}
	if p[2] == "" || p[4] == "" {
		return "", "", "", fmt.Errorf("topic %q: empty tenant or edge", t)
	}
	return p[2], p[4], p[5], nil
}

// ValidName reports whether s may be used as a tenant or edge id: 1 to 64
// characters from [A-Za-z0-9._-]. Such names are safe in MQTT topics and
// Badger keys.
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
