package measure

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	ms := func(xs ...int) []time.Duration {
		var ds []time.Duration
		for _, x := range xs {
			ds = append(ds, time.Duration(x)*time.Millisecond)
		}
		return ds
	}
	for _, tc := range []struct {
		name string
		ds   []time.Duration
		p    float64
		want time.Duration
	}{
		{"none", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of unsorted", ms(5, 1, 3, 2, 4), 50, 3 * time.Millisecond},
		{"p99 of 100", ms(func() []int {
			var xs []int
			for i := 100; i >= 1; i-- {
				xs = append(xs, i)
			}
			return xs
		}()...), 99, 99 * time.Millisecond},
		{"p100", ms(1, 2, 3), 100, 3 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Percentile(tc.ds, tc.p); got != tc.want {
				t.Errorf("Percentile(%v, %v) = %v, want %v", tc.ds, tc.p, got, tc.want)
			}
		})
	}
}

func TestClosed(t *testing.T) {
	t.Parallel()
	t.Run("counts", func(t *testing.T) {
		t.Parallel()
		r, err := Closed(t.Context(), 4, 20*time.Millisecond, true, func(context.Context, int, int) error {
			time.Sleep(time.Millisecond)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if r.Ops == 0 || len(r.Latencies) != r.Ops || r.PerSecond() <= 0 || r.Elapsed < 20*time.Millisecond {
			t.Errorf("result %+v", r)
		}
	})
	t.Run("first error stops the run", func(t *testing.T) {
		t.Parallel()
		boom := errors.New("boom")
		_, err := Closed(t.Context(), 4, time.Minute, false, func(_ context.Context, _, i int) error {
			if i == 10 {
				return boom
			}
			return nil
		})
		if !errors.Is(err, boom) {
			t.Errorf("err %v, want boom", err)
		}
	})
}
