//go:build !unix

package measure

import (
	"errors"
	"time"
)

// ProcessCPU returns the CPU time this process has used so far; 0 where getrusage does not
// exist (the bench then reports no CPU per grant).
func ProcessCPU() time.Duration { return 0 }

// RaiseNoFile is not supported here: it returns an error wrapping ErrNoFileLimit.
func RaiseNoFile(want uint64) (uint64, error) {
	return 0, errors.Join(ErrNoFileLimit, errors.New("measure: no RLIMIT_NOFILE on this system"))
}
