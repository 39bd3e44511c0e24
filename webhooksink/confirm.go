package webhooksink

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// confirmer confirms publishes with as few flushes (PING/PONG round trips to the NATS server)
// as it can. A flush confirms every message the connection published before it: so a publisher
// joins the next flush to start, and while one flush is in flight the publishers that arrive
// all share the one after it (group commit). Alone, a publisher flushes at once, as before; with
// many webhooks at once (sessions created in a burst) one round trip confirms them all instead
// of one each.
type confirmer struct {
	nc      flusher
	timeout time.Duration

	mu   sync.Mutex
	busy bool        // a flush is in flight
	next *flushRound // the flush that starts when the one in flight ends; nil: nobody waits
}

// flusher is the part of *nats.Conn the confirmer uses.
type flusher interface {
	FlushTimeout(time.Duration) error
}

var _ flusher = (*nats.Conn)(nil)

// flushRound is one flush and the publishers waiting for it.
type flushRound struct {
	start chan struct{} // closed when the round may start (the flush before it ended)
	done  chan struct{} // closed when the flush ended; err is its outcome
	err   error
}

// confirm returns once a flush that started after the call has confirmed the connection's
// publishes, or with that flush's error. Each flush is bounded by timeout, so confirm returns
// within two of them.
func (c *confirmer) confirm() error {
	c.mu.Lock()
	if !c.busy {
		c.busy = true
		c.mu.Unlock()
		return c.run(&flushRound{done: make(chan struct{})})
	}
	r, leads := c.next, false
	if r == nil {
		// The first to wait for the next flush makes it, and starts it when its turn comes.
		r, leads = &flushRound{start: make(chan struct{}), done: make(chan struct{})}, true
		c.next = r
	}
	c.mu.Unlock()
	if leads {
		<-r.start
		return c.run(r)
	}
	<-r.done
	return r.err
}

// run flushes for round r (no longer joinable: c.next is another round or nil), then hands the
// connection to the next round, if any.
func (c *confirmer) run(r *flushRound) error {
	r.err = c.nc.FlushTimeout(c.timeout)
	close(r.done)
	c.mu.Lock()
	if n := c.next; n != nil {
		c.next = nil
		close(n.start) // its leader flushes next; busy stays true
	} else {
		c.busy = false
	}
	c.mu.Unlock()
	return r.err
}
