package matchmaker

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// admission caps the session setups in progress and queues the rest in FIFO order. A queued
// request holds no goroutine: it is a ticket with two callbacks (thousands of players may
// wait, and a parked goroutine per player would cost kilobytes of stack each). A queued
// request can learn its position cheaply: tickets are numbered, and the position is the
// distance between its ticket and the last ticket admitted (an upper bound when requests
// ahead gave up, which is fine for a progress display). One reporter goroutine, running while
// the queue is not empty, tells each queued request its position on every reportEvery tick
// when it changed.
type admission struct {
	reportEvery time.Duration

	mu        sync.Mutex
	capacity  int
	inUse     int
	queue     *list.List // of *ticket
	nextSeq   uint64
	served    uint64 // seq of the last ticket admitted from the queue
	reporting bool   // the reporter goroutine runs
}

type ticket struct {
	seq    uint64
	elem   *list.Element // nil once admitted or canceled
	last   int           // the position last reported
	report func(pos int)
	start  func(err error)
	stop   func() bool // stops watching the request's context
}

func newAdmission(capacity int, reportEvery time.Duration) *admission {
	return &admission{capacity: capacity, reportEvery: reportEvery, queue: list.New()}
}

// enqueue calls start(nil) once a slot is the request's: at once (in the calling goroutine)
// when one is free, else from the release that hands it over. If ctx ends while the request
// is queued, start gets ctx's error instead and the request leaves the queue. While queued,
// report (if not nil) hears the position (1 = next) at once and then on the reporting tick
// whenever it changed, never after start. start and report must not block (report is called
// with the queue locked); an admitted request must call release when done.
func (a *admission) enqueue(ctx context.Context, report func(pos int), start func(err error)) {
	a.mu.Lock()
	if a.inUse < a.capacity && a.queue.Len() == 0 {
		a.inUse++
		a.mu.Unlock()
		start(nil)
		return
	}
	a.nextSeq++
	t := &ticket{seq: a.nextSeq, report: report, start: start}
	t.elem = a.queue.PushBack(t)
	t.last = int(t.seq - a.served)
	if report != nil && !a.reporting {
		a.reporting = true
		go a.reporter()
	}
	// Set before the callback can run: it takes a.mu to see whether t is still queued.
	t.stop = context.AfterFunc(ctx, func() { a.cancel(t, ctx) })
	if report != nil {
		// Under the lock, like every report: no position can follow the start.
		report(t.last)
	}
	a.mu.Unlock()
}

// cancel takes t out of the queue because its context ended (unless it was admitted first).
func (a *admission) cancel(t *ticket, ctx context.Context) {
	a.mu.Lock()
	if t.elem == nil {
		a.mu.Unlock()
		return
	}
	a.queue.Remove(t.elem)
	t.elem = nil
	a.mu.Unlock()
	t.start(ctx.Err())
}

// acquire blocks until a slot is free or ctx ends (enqueue for a caller that may block).
func (a *admission) acquire(ctx context.Context, report func(pos int)) error {
	done := make(chan error, 1)
	a.enqueue(ctx, report, func(err error) { done <- err })
	return <-done
}

// release frees a slot, handing it to the first queued request if any.
func (a *admission) release() {
	a.mu.Lock()
	front := a.queue.Front()
	if front == nil {
		a.inUse--
		a.mu.Unlock()
		return
	}
	t := a.queue.Remove(front).(*ticket)
	t.elem = nil
	a.served = t.seq
	a.mu.Unlock()
	t.stop()
	t.start(nil)
}

// reporter tells the queued requests their new positions on every tick, until the queue is
// empty.
func (a *admission) reporter() {
	tick := time.NewTicker(a.reportEvery)
	defer tick.Stop()
	for range tick.C {
		a.mu.Lock()
		if a.queue.Len() == 0 {
			a.reporting = false
			a.mu.Unlock()
			return
		}
		for e := a.queue.Front(); e != nil; e = e.Next() {
			t := e.Value.(*ticket)
			if p := int(t.seq - a.served); p != t.last && t.report != nil {
				t.last = p
				t.report(p)
			}
		}
		a.mu.Unlock()
	}
}

// queued returns how many requests wait for a slot.
func (a *admission) queued() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.queue.Len()
}
