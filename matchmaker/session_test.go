package matchmaker

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
)

// TestRetryNATS: KV writes are retried from base doubling up to 2 s until they succeed, the
// context ends (the last error is kept), or the connection is closed for good.
func TestRetryNATS(t *testing.T) {
	t.Parallel()
	errTimeout := errors.New("nats: timeout")
	tests := []struct {
		name     string
		fail     int   // failures before success (-1: never succeeds)
		err      error // the failure
		timeout  time.Duration
		wantAt   []time.Duration
		wantErrs []error
	}{
		{name: "succeeds after backoff", fail: 5, err: errTimeout,
			wantAt: []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, 700 * time.Millisecond,
				1500 * time.Millisecond, 3100 * time.Millisecond}},
		{name: "connection closed: at once", fail: -1, err: nats.ErrConnectionClosed,
			wantAt: []time.Duration{0}, wantErrs: []error{nats.ErrConnectionClosed}},
		{name: "context ends", fail: -1, err: errTimeout, timeout: time.Second,
			wantAt:   []time.Duration{0, 100 * time.Millisecond, 300 * time.Millisecond, 700 * time.Millisecond},
			wantErrs: []error{errTimeout, context.DeadlineExceeded}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				if tt.timeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, tt.timeout)
					defer cancel()
				}
				start := time.Now()
				var at []time.Duration
				err := retryNATS(ctx, 100*time.Millisecond, func(context.Context) error {
					at = append(at, time.Since(start))
					if tt.fail < 0 || len(at) <= tt.fail {
						return tt.err
					}
					return nil
				})
				if !slices.Equal(at, tt.wantAt) {
					t.Errorf("calls at %v, want %v", at, tt.wantAt)
				}
				if tt.wantErrs == nil && err != nil {
					t.Errorf("err %v", err)
				}
				for _, want := range tt.wantErrs {
					if !errors.Is(err, want) {
						t.Errorf("err %v, want it to match %v", err, want)
					}
				}
			})
		})
	}
}
