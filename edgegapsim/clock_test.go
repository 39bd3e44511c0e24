package edgegapsim_test

import (
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegapsim"
)

func TestFakeClock(t *testing.T) {
	t.Parallel()
	c := edgegapsim.NewFakeClock(testStart)
	var order []string
	var at []time.Duration
	rec := func(name string) func() {
		return func() { order = append(order, name); at = append(at, c.Now().Sub(testStart)) }
	}
	c.AfterFunc(3*time.Second, rec("c"))
	c.AfterFunc(time.Second, rec("a"))
	stopped := c.AfterFunc(2*time.Second, rec("never"))
	c.AfterFunc(time.Second, func() {
		rec("b")()
		c.AfterFunc(time.Second, rec("nested")) // due at 2 s, inside the same Advance
	})
	if !stopped.Stop() || stopped.Stop() {
		t.Error("Stop should report true once")
	}
	c.Advance(2500 * time.Millisecond)
	if got := len(order); got != 3 || order[0] != "a" || order[1] != "b" || order[2] != "nested" ||
		at[2] != 2*time.Second || c.Now().Sub(testStart) != 2500*time.Millisecond || c.Pending() != 1 {
		t.Errorf("order %v at %v now %v pending %d", order, at, c.Now(), c.Pending())
	}
	c.Advance(time.Second)
	if len(order) != 4 || order[3] != "c" || at[3] != 3*time.Second {
		t.Errorf("order %v at %v", order, at)
	}
}

func TestScaledClock(t *testing.T) {
	t.Parallel()
	c := edgegapsim.ScaledClock(1000)
	start := c.Now()
	fired := make(chan time.Time, 1)
	c.AfterFunc(10*time.Second, func() { fired <- c.Now() })
	select {
	case simAt := <-fired:
		if d := simAt.Sub(start); d < 10*time.Second {
			t.Errorf("fired at simulated +%v, want >= 10s", d)
		}
	case <-time.After(5 * time.Second): // unscaled, it would take 10 s
		t.Fatal("scaled timer did not fire within 5 s of real time")
	}
}
