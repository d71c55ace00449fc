package edgebench

import (
	"os"
	"testing"
	"time"
)

func TestParseStatCPU(t *testing.T) {
	tests := []struct {
		name string
		line string
		want time.Duration
		bad  bool
	}{
		{
			name: "plain",
			line: "4242 (edge-agent) S 1 4242 4242 0 -1 4194560 1234 0 0 0 250 70 0 0 20 0 12 0 100 0 0",
			want: 3200 * time.Millisecond,
		},
		{
			name: "name with spaces and parentheses",
			line: "7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 100 0 0",
			want: 30 * time.Millisecond,
		},
		{name: "no name", line: "7 R 1", bad: true},
		{name: "short", line: "7 (x) R 1 7 7", bad: true},
		{name: "not a number", line: "7 (x) R 1 7 7 0 -1 0 0 0 0 0 x 2 0", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatCPU([]byte(tt.line))
			if tt.bad {
				if err == nil {
					t.Fatalf("parseStatCPU(%q) = %v, want an error", tt.line, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseStatCPU(%q) = %v, %v; want %v", tt.line, got, err, tt.want)
			}
		})
	}
}

func TestCPUTimeOfSelfGrows(t *testing.T) {
	before, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the 10 ms clock has ticked at least twice.
	deadline := time.Now().Add(10 * time.Second)
	x := 1
	for {
		for i := range 1_000_000 {
			x = x*31 + i
		}
		now, err := CPUTime(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now >= before+20*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CPU time stayed at %v for 10s of busy work (x=%d)", now, x)
		}
	}
}

func TestParseRSS(t *testing.T) {
	good := "Name:\tedge-agent\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nRssAnon:\t   51200 kB\nRssFile:\t   49152 kB\nRssShmem:\t       0 kB\n"
	r, err := parseRSS([]byte(good))
	if err != nil || r != (RSS{Anon: 50, File: 48}) {
		t.Fatalf("parseRSS = %+v, %v; want 50 MiB anon, 48 MiB file", r, err)
	}
	for _, bad := range []string{"RssAnon:\t1 kB\n", "RssAnon:\tx kB\nRssFile:\t1 kB\n"} {
		if r, err := parseRSS([]byte(bad)); err == nil {
			t.Errorf("parseRSS(%q) = %+v, want an error", bad, r)
		}
	}
	self, err := CurrentRSS(os.Getpid())
	if err != nil || self.Anon <= 0 {
		t.Fatalf("CurrentRSS(self) = %+v, %v", self, err)
	}
}
