//go:build unix

package measure

import (
	"fmt"
	"syscall"
	"time"
)

// ProcessCPU returns the user + system CPU time this process has used so far (getrusage).
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// RaiseNoFile raises this process's open file limit to want if it is lower, up to the hard
// limit, and returns the limit now in force.
func RaiseNoFile(want uint64) (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("measure: getrlimit: %w", err)
	}
	if rl.Cur >= want {
		return rl.Cur, nil
	}
	rl.Cur = min(want, rl.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("measure: setrlimit %d: %w", rl.Cur, err)
	}
	if rl.Cur < want {
		return rl.Cur, fmt.Errorf("%w: %d, %d wanted", ErrNoFileLimit, rl.Max, want)
	}
	return rl.Cur, nil
}
