//go:build unix

package protocol

import (
	"syscall"
	"time"
)

// processCPU returns the CPU time (user plus system) this process has used,
// all threads together: on a machine shared with other work it measures a
// benchmark's cost where wall time measures the contention.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
