package webhooksink

import (
	"errors"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// gateFlusher is a flusher whose flushes each wait for the test to end them.
type gateFlusher struct {
	started chan chan error // one per flush: send the flush's outcome to end it
}

func (g *gateFlusher) FlushTimeout(time.Duration) error {
	end := make(chan error)
	g.started <- end
	return <-end
}

// TestConfirmerAlone: a publisher alone flushes at once and gets the flush's outcome.
func TestConfirmerAlone(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := &gateFlusher{started: make(chan chan error)}
		c := &confirmer{nc: g, timeout: time.Second}
		for _, want := range []error{nil, errors.New("nats: timeout")} {
			got := make(chan error, 1)
			go func() { got <- c.confirm() }()
			(<-g.started) <- want
			if err := <-got; err != want {
				t.Fatalf("confirm = %v, want %v", err, want)
			}
		}
	})
}

// TestConfirmerGroupsWaiters: publishers that arrive while a flush is in flight are not
// confirmed by it (their messages may be behind its PING) but all share the one flush after it.
func TestConfirmerGroupsWaiters(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g := &gateFlusher{started: make(chan chan error)}
		c := &confirmer{nc: g, timeout: time.Second}

		first := make(chan error, 1)
		go func() { first <- c.confirm() }()
		inFlight := <-g.started

		const waiters = 20
		var wg sync.WaitGroup
		results := make(chan error, waiters)
		for range waiters {
			wg.Go(func() { results <- c.confirm() })
		}
		synctest.Wait() // every waiter has joined the next round
		select {
		case <-g.started:
			t.Fatal("a second flush started while the first was in flight")
		default:
		}

		inFlight <- nil
		if err := <-first; err != nil {
			t.Fatalf("first confirm = %v", err)
		}
		synctest.Wait()
		if len(results) > 0 {
			t.Fatalf("a waiter returned (%v) on the flush that started before it", <-results)
		}
		failed := errors.New("nats: flush timeout")
		(<-g.started) <- failed // the one flush of all the waiters
		wg.Wait()
		close(results)
		for err := range results {
			if err != failed {
				t.Errorf("waiter got %v, want the shared flush's error", err)
			}
		}
		synctest.Wait()
		select {
		case <-g.started:
			t.Fatal("a third flush started with nobody waiting")
		default:
		}
		if c.busy || c.next != nil {
			t.Fatalf("idle confirmer: busy=%v next=%v", c.busy, c.next)
		}
	})
}
