package bus

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestTransientJetStreamError(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		err  error
		want bool
	}{
		{"attempt timed out", fmt.Errorf("create: %w", context.DeadlineExceeded), true},
		{"nats timeout", nats.ErrTimeout, true},
		{"no responders", nats.ErrNoResponders, true},
		{"503", &jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{"no peers", &jetstream.APIError{Code: 500, ErrorCode: 10005, Description: "no suitable peers for placement"}, true},
		{"not enabled", jetstream.ErrJetStreamNotEnabled, false},
		{"config conflict", &jetstream.APIError{Code: 400, ErrorCode: 10058, Description: "stream name already in use with a different configuration"}, false},
		{"not enabled for account", jetstream.ErrJetStreamNotEnabledForAccount, false},
		{"permission", errors.New("nats: permissions violation"), false},
	}
	for _, c := range cases {
		if got := transientJetStreamError(context.Background(), c.err); got != c.want {
			t.Errorf("%s: transient = %v, want %v", c.name, got, c.want)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if transientJetStreamError(ctx, context.DeadlineExceeded) {
		t.Error("an error after the whole wait ended is not transient")
	}
}

// TestRetryManagement: a call that times out twice (a cluster electing its leader) succeeds on
// the third attempt; a configuration conflict is not retried; the wait is bounded by openWait.
func TestRetryManagement(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		calls := 0
		err := retryManagement(context.Background(), func(ctx context.Context) error {
			calls++
			if calls < 3 {
				<-ctx.Done() // the attempt's requestTimeout
				return ctx.Err()
			}
			return nil
		})
		if err != nil || calls != 3 {
			t.Fatalf("err %v after %d calls, want success on the 3rd", err, calls)
		}

		calls = 0
		conflict := &jetstream.APIError{Code: 400, ErrorCode: 10058}
		if err := retryManagement(context.Background(), func(context.Context) error { calls++; return conflict }); !errors.Is(err, conflict) || calls != 1 {
			t.Fatalf("conflict: err %v after %d calls, want it at once", err, calls)
		}

		start := time.Now()
		err = retryManagement(context.Background(), func(context.Context) error { return nats.ErrNoResponders })
		if err == nil || time.Since(start) > openWait+openBackoff.Max {
			t.Fatalf("endless no responders: err %v after %v", err, time.Since(start))
		}
	})
}
