package backoff

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
	"time"
)

func TestDelay(t *testing.T) {
	t.Parallel()
	p := Policy{Base: 100 * time.Millisecond, Max: time.Second}
	for _, c := range []struct {
		attempt int
		want    time.Duration
	}{{1, 100 * time.Millisecond}, {2, 200 * time.Millisecond}, {3, 400 * time.Millisecond}, {4, 800 * time.Millisecond}, {5, time.Second}, {50, time.Second}} {
		if got := p.Delay(c.attempt); got != c.want {
			t.Errorf("Delay(%d) = %v, want %v", c.attempt, got, c.want)
		}
	}
	if got := (Policy{Base: time.Second}).Delay(3); got != time.Second {
		t.Errorf("Max below Base: Delay = %v, want Base", got)
	}
}

func TestDelayJitterBounds(t *testing.T) {
	t.Parallel()
	p := Policy{Base: time.Second, Max: time.Second, Jitter: 0.5}
	seen := map[time.Duration]bool{}
	for range 200 {
		d := p.Delay(1)
		if d < 500*time.Millisecond || d > time.Second {
			t.Fatalf("equal jitter delay %v outside [0.5s, 1s]", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("jitter produced only %d distinct delays", len(seen))
	}
}

func TestBackoffReset(t *testing.T) {
	t.Parallel()
	b := Policy{Base: time.Millisecond, Max: time.Hour}.Start()
	b.Next()
	b.Next()
	if got := b.Next(); got != 4*time.Millisecond || b.Attempt() != 3 {
		t.Fatalf("third delay %v attempt %d", got, b.Attempt())
	}
	b.Reset()
	if got := b.Next(); got != time.Millisecond {
		t.Fatalf("after Reset: %v", got)
	}
}

func TestRetry(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	errFatal := errors.New("fatal")
	cases := []struct {
		name      string
		results   []error
		wantCalls int
		wantErr   error
		wantTime  time.Duration
	}{
		{"first try", []error{nil}, 1, nil, 0},
		{"after two failures", []error{errBoom, errBoom, nil}, 3, nil, 3 * time.Second},
		{"permanent stops", []error{errBoom, Permanent(errFatal)}, 2, errFatal, time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				calls := 0
				var retries []int
				err := Retry(context.Background(), Policy{Base: time.Second, Max: time.Minute}, func(context.Context) error {
					r := c.results[calls]
					calls++
					return r
				}, func(attempt int, _ time.Duration, _ error) { retries = append(retries, attempt) })
				if !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
					t.Fatalf("err = %v, want %v", err, c.wantErr)
				}
				if calls != c.wantCalls || len(retries) != c.wantCalls-1 {
					t.Fatalf("calls %d retries %v", calls, retries)
				}
				if el := time.Since(start); el != c.wantTime {
					t.Fatalf("took %v of fake time, want %v", el, c.wantTime)
				}
			})
		})
	}
}

func TestRetryContextEnds(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errBoom := errors.New("boom")
		err := Retry(ctx, Policy{Base: time.Second, Max: 4 * time.Second}, func(context.Context) error { return errBoom }, nil)
		if !errors.Is(err, errBoom) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("err = %v, want boom and deadline", err)
		}
	})
}

func TestSleep(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		if err := Sleep(context.Background(), time.Hour); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
			t.Fatalf("canceled: %v", err)
		}
		if err := Sleep(ctx, 0); !errors.Is(err, context.Canceled) {
			t.Fatalf("zero wait on canceled ctx: %v", err)
		}
	})
}
