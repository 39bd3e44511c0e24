package netcode

import (
	"sync"
	"time"
)

// readDeadline is the read deadline of a channel-fed datagram socket (the WebTransport client
// natively and in the browser, the tests' in-memory network): Set changes it and wakes a blocked
// reader, Arm gives that reader what to wait on. The zero value has no deadline.
type readDeadline struct {
	mu      sync.Mutex
	t       time.Time
	changed chan struct{} // closed and replaced when the deadline changes; nil until first armed
}

// Set sets the deadline (zero: none) and wakes every reader armed before.
func (d *readDeadline) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.t = t
	if d.changed != nil {
		close(d.changed)
	}
	d.changed = make(chan struct{})
}

// Arm returns, for one wait: expired, which fires at the deadline (nil when there is none);
// changed, closed when Set is called; and stop, to call when the wait is over. past is true
// when the deadline has passed already (then there is nothing to wait on).
func (d *readDeadline) Arm() (expired <-chan time.Time, changed <-chan struct{}, stop func(), past bool) {
	d.mu.Lock()
	if d.changed == nil {
		d.changed = make(chan struct{})
	}
	t, changed := d.t, d.changed
	d.mu.Unlock()
	if t.IsZero() {
		return nil, changed, func() {}, false
	}
	left := time.Until(t)
	if left <= 0 {
		return nil, changed, func() {}, true
	}
	timer := time.NewTimer(left)
	return timer.C, changed, func() { timer.Stop() }, false
}
