package queue

import "testing"

func TestParseMapsLine(t *testing.T) {
	tests := []struct {
		line       string
		start, end uintptr
		path       string
		ok         bool
	}{
		{"7f1c2a000000-7f1c2a200000 rw-s 00000000 fd:01 1234 /var/lib/unico-edge/queue/000003.sst", 0x7f1c2a000000, 0x7f1c2a200000, "/var/lib/unico-edge/queue/000003.sst", true},
		{"7f1c2a000000-7f1c2a001000 r--s 00000000 fd:01 1234 /data/my queue/000003.sst", 0x7f1c2a000000, 0x7f1c2a001000, "/data/my queue/000003.sst", true},
		{"7ffd1a000000-7ffd1a021000 rw-p 00000000 00:00 0 ", 0, 0, "", false},
		{"7ffd1a000000-7ffd1a021000 rw-p 00000000 00:00 0 [stack]", 0x7ffd1a000000, 0x7ffd1a021000, "[stack]", true},
		{"zz-7f rw-p 00000000 00:00 0 /x", 0, 0, "", false},
		{"7f00-7e00 rw-p 00000000 00:00 0 /x", 0, 0, "", false},
		{"", 0, 0, "", false},
	}
	for _, tt := range tests {
		start, end, path, ok := parseMapsLine([]byte(tt.line))
		if ok != tt.ok || (ok && (start != tt.start || end != tt.end || string(path) != tt.path)) {
			t.Errorf("parseMapsLine(%q) = %#x, %#x, %q, %v; want %#x, %#x, %q, %v", tt.line, start, end, path, ok, tt.start, tt.end, tt.path, tt.ok)
		}
	}
}
