package edge

import (
	"testing"

	"github.com/unico-cdp/unico/edge/cache"
	"github.com/unico-cdp/unico/edge/queue"
)

func TestMemoryBudget(t *testing.T) {
	const MiB = 1 << 20
	tests := []struct {
		limit int64
		want  Memory
	}{
		{32 * MiB, Memory{queue.MinMemTableBytes, 1 * MiB, cache.MinMemTableBytes, 1 * MiB}},
		{48 * MiB, Memory{MiB * 3 / 2, 1 * MiB, cache.MinMemTableBytes, MiB * 3 / 2}},
		{128 * MiB, Memory{4 * MiB, 2 * MiB, 4 * MiB, 4 * MiB}},
		{64 * MiB, Memory{2 * MiB, 1 * MiB, 2 * MiB, 2 * MiB}},
		{256 * MiB, Memory{8 * MiB, 4 * MiB, 8 * MiB, 8 * MiB}},
		{8 << 30, Memory{64 * MiB, 64 * MiB, 64 * MiB, 64 * MiB}},
	}
	for _, tt := range tests {
		if got := MemoryBudget(tt.limit); got != tt.want {
			t.Errorf("MemoryBudget(%d MiB) = %+v; want %+v", tt.limit/MiB, got, tt.want)
		}
	}
}
