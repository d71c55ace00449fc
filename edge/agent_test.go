package edge

import (
	"testing"

	"github.com/unico-cdp/unico/edge/queue"
)

func TestQueueMemory(t *testing.T) {
	const MiB = 1 << 20
	tests := []struct {
		limit           int64
		memTable, cache int64
	}{
		{32 * MiB, queue.MinMemTableBytes, 2 * MiB},
		{64 * MiB, 4 * MiB, 4 * MiB},
		{128 * MiB, 8 * MiB, 8 * MiB},
		{16 * MiB, queue.MinMemTableBytes, 1 * MiB},
		{4 << 30, 64 * MiB, 64 * MiB},
	}
	for _, tt := range tests {
		mt, bc := QueueMemory(tt.limit)
		if mt != tt.memTable || bc != tt.cache {
			t.Errorf("QueueMemory(%d MiB) = %d, %d MiB; want %d, %d MiB", tt.limit/MiB, mt/MiB, bc/MiB, tt.memTable/MiB, tt.cache/MiB)
		}
	}
}
