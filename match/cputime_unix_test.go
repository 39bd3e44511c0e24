//go:build unix

package match_test

import (
	"syscall"
	"time"
)

// cpuTime returns the CPU time (user + system) the process has used, so the benchmark can report
// a cost that does not depend on how busy the machine is.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
