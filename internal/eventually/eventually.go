// Package eventually is the one polling helper of this module's tests: wait, with a bound, for
// a condition that another goroutine or process makes true. Prefer a signal (a channel, a
// callback) or testing/synctest where the code offers one; use this for state observed from
// outside (a KV bucket, a simulator's admin view, a process).
package eventually

import (
	"fmt"
	"testing"
	"time"
)

// Poll is how often True checks its condition.
const Poll = 10 * time.Millisecond

// True calls cond every Poll until it returns true, or fails tb after timeout with the message
// built from format and args (and the last value of cond's explanation, if any).
func True(tb testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("not true after %v: %s", timeout, fmt.Sprintf(format, args...))
		}
		time.Sleep(Poll)
	}
}

// NoError calls f every Poll until it returns nil, or fails tb after timeout with f's last error.
func NoError(tb testing.TB, timeout time.Duration, f func() error, what string) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: still failing after %v: %v", what, timeout, err)
		}
		time.Sleep(Poll)
	}
}
