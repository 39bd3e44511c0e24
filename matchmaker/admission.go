package matchmaker

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// admission caps the session setups in progress and queues the rest in FIFO order. A queued
// request can learn its position cheaply: tickets are numbered, and the position is the
// distance between its ticket and the last ticket admitted (an upper bound when requests
// ahead gave up, which is fine for a progress display).
type admission struct {
	mu       sync.Mutex
	capacity int
	inUse    int
	queue    *list.List // of *ticket
	nextSeq  uint64
	served   uint64 // seq of the last ticket admitted from the queue
}

type ticket struct {
	seq     uint64
	granted chan struct{}
	elem    *list.Element
}

func newAdmission(capacity int) *admission {
	return &admission{capacity: capacity, queue: list.New()}
}

// acquire blocks until a slot is free or ctx ends. While queued it calls report with the
// current position (1 = next) whenever it changes, at most once per reportEvery.
func (a *admission) acquire(ctx context.Context, reportEvery time.Duration, report func(pos int)) error {
	a.mu.Lock()
	if a.inUse < a.capacity && a.queue.Len() == 0 {
		a.inUse++
		a.mu.Unlock()
		return nil
	}
	a.nextSeq++
	t := &ticket{seq: a.nextSeq, granted: make(chan struct{})}
	t.elem = a.queue.PushBack(t)
	pos := int(t.seq - a.served)
	a.mu.Unlock()

	if report != nil {
		report(pos)
	}
	tick := time.NewTicker(reportEvery)
	defer tick.Stop()
	last := pos
	for {
		select {
		case <-t.granted:
			return nil
		case <-ctx.Done():
			a.mu.Lock()
			select {
			case <-t.granted:
				// Granted while we gave up: hand the slot on.
				a.mu.Unlock()
				a.release()
				return ctx.Err()
			default:
			}
			a.queue.Remove(t.elem)
			a.mu.Unlock()
			return ctx.Err()
		case <-tick.C:
			a.mu.Lock()
			p := int(t.seq - a.served)
			a.mu.Unlock()
			if p != last && report != nil {
				last = p
				report(p)
			}
		}
	}
}

// release frees a slot, handing it to the first queued request if any.
func (a *admission) release() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if front := a.queue.Front(); front != nil {
		t := a.queue.Remove(front).(*ticket)
		a.served = t.seq
		close(t.granted)
		return
	}
	a.inUse--
}

// queued returns how many requests wait for a slot.
func (a *admission) queued() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.queue.Len()
}
