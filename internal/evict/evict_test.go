package evict

import "testing"

func TestArbitrary(t *testing.T) {
	tests := []struct {
		name       string
		size, keep int
		want       int
	}{
		{"over", 100, 90, 90},
		{"at", 10, 10, 10},
		{"under", 5, 10, 5},
		{"all", 7, 0, 0},
		{"negative keep", 7, -1, 0},
		{"empty", 0, 3, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := map[int]string{}
			for i := range tt.size {
				m[i] = "v"
			}
			Arbitrary(m, tt.keep)
			if len(m) != tt.want {
				t.Fatalf("len = %d, want %d", len(m), tt.want)
			}
			for k := range m {
				if k < 0 || k >= tt.size {
					t.Fatalf("key %d was never set", k)
				}
			}
		})
	}
}
