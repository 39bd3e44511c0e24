package matchmaker

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

func TestAdmissionFIFOAndCancel(t *testing.T) {
	t.Parallel()
	a := newAdmission(1, time.Hour)
	ctx := context.Background()
	if err := a.acquire(ctx, nil); err != nil {
		t.Fatal(err)
	}
	// Second waits at position 1; third at 2 and gives up; fourth at 3.
	got := make(chan int, 10)
	second := make(chan error, 1)
	go func() { second <- a.acquire(ctx, func(p int) { got <- p }) }()
	if p := <-got; p != 1 {
		t.Fatalf("second at position %d", p)
	}
	cctx, cancel := context.WithCancel(ctx)
	third := make(chan error, 1)
	go func() { third <- a.acquire(cctx, func(p int) { got <- p }) }()
	if p := <-got; p != 2 {
		t.Fatalf("third at position %d", p)
	}
	cancel()
	if err := <-third; !errors.Is(err, context.Canceled) {
		t.Fatalf("third: %v", err)
	}
	if a.queued() != 1 {
		t.Fatalf("queued %d", a.queued())
	}
	a.release() // to the second
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	a.release()
	// All free again: immediate.
	if err := a.acquire(ctx, func(int) { t.Error("queued with a free slot") }); err != nil {
		t.Fatal(err)
	}
	a.release()
	if a.inUse != 0 {
		t.Fatalf("inUse %d", a.inUse)
	}
}

// TestAdmissionReportsPositionChanges: a queued request hears its position when it queues and
// then, on the reporting tick, whenever it changed; never more often.
func TestAdmissionReportsPositionChanges(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		a := newAdmission(1, time.Second)
		ctx := context.Background()
		if err := a.acquire(ctx, nil); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var reports []string
		took := func(want ...string) {
			t.Helper()
			synctest.Wait()
			mu.Lock()
			defer mu.Unlock()
			if want == nil {
				want = []string{}
			}
			slices.Sort(reports) // one tick wakes several waiters in any order
			if !slices.Equal(reports, want) {
				t.Fatalf("reports %v, want %v", reports, want)
			}
			reports = reports[:0]
		}
		for _, who := range []string{"b", "c", "d"} {
			go func() {
				if err := a.acquire(ctx, func(p int) {
					mu.Lock()
					reports = append(reports, fmt.Sprintf("%s:%d", who, p))
					mu.Unlock()
				}); err != nil {
					t.Error(err)
				}
			}()
			synctest.Wait() // queued in this order
		}
		took("b:1", "c:2", "d:3")
		time.Sleep(500 * time.Millisecond)
		a.release() // to b
		took()      // c and d learn it on their next tick
		time.Sleep(500 * time.Millisecond)
		took("c:1", "d:2")
		time.Sleep(5 * time.Second)
		took()      // unchanged: silent
		a.release() // to c
		a.release() // to d
		time.Sleep(time.Second)
		took()
		a.release()
		if a.inUse != 0 || a.queued() != 0 {
			t.Fatalf("inUse %d, queued %d", a.inUse, a.queued())
		}
	})
}

// TestAdmissionEnqueue: queued requests are callbacks, not goroutines. Each hears its positions
// and then exactly one start (nil when admitted, the context's error when it gave up), never a
// position after its start.
func TestAdmissionEnqueue(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		a := newAdmission(1, time.Second)
		var mu sync.Mutex
		events := map[string][]string{}
		note := func(who, ev string) {
			mu.Lock()
			events[who] = append(events[who], ev)
			mu.Unlock()
		}
		enqueue := func(ctx context.Context, who string) {
			a.enqueue(ctx, func(p int) { note(who, fmt.Sprint(p)) }, func(err error) {
				note(who, fmt.Sprint("start ", err))
			})
		}
		ctx := context.Background()
		dctx, cancelD := context.WithCancel(ctx)
		for _, who := range []string{"a", "b", "c"} {
			enqueue(ctx, who)
		}
		enqueue(dctx, "d")
		time.Sleep(500 * time.Millisecond)
		a.release() // a done: to b
		time.Sleep(500 * time.Millisecond)
		synctest.Wait() // the tick at 1 s: c at 1, d at 2
		cancelD()
		synctest.Wait()
		a.release() // b done: to c
		a.release() // c done: nobody queued
		time.Sleep(2 * time.Second)
		synctest.Wait() // the reporter has stopped: nothing left to report

		want := map[string][]string{
			"a": {"start <nil>"},
			"b": {"1", "start <nil>"},
			"c": {"2", "1", "start <nil>"},
			"d": {"3", "2", "start context canceled"},
		}
		mu.Lock()
		defer mu.Unlock()
		for who, w := range want {
			if !slices.Equal(events[who], w) {
				t.Errorf("%s: %q, want %q", who, events[who], w)
			}
		}
		if a.inUse != 0 || a.queued() != 0 || a.reporting {
			t.Errorf("inUse %d, queued %d, reporting %v", a.inUse, a.queued(), a.reporting)
		}
	})
}
