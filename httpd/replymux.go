package httpd

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// replyBuffer is how many feedback messages may wait for a slow client before the stream is
// declared broken. A session request produces a handful.
const replyBuffer = 32

// replyMux receives the replies of every streaming request on one wildcard inbox subscription
// (like nats.go's own request mux), so that a waiting player costs a map entry instead of a
// NATS subscription with its own goroutine.
type replyMux struct {
	nc     *nats.Conn
	prefix string // "<inbox>."
	sub    *nats.Subscription
	next   atomic.Uint64

	mu      sync.Mutex
	waiters map[string]*replyWaiter
}

// replyWaiter is one pending streaming request.
type replyWaiter struct {
	subject string // the reply subject to put on the request
	// deliver receives every reply, on the mux's dispatch goroutine: it must not block.
	deliver func(*nats.Msg)
}

func newReplyMux(nc *nats.Conn) (*replyMux, error) {
	inbox := nc.NewInbox()
	m := &replyMux{nc: nc, prefix: inbox + ".", waiters: map[string]*replyWaiter{}}
	sub, err := nc.Subscribe(inbox+".*", m.dispatch)
	if err != nil {
		return nil, fmt.Errorf("httpd: subscribe reply inbox: %w", err)
	}
	// The callback never blocks, but a burst for many players must not be dropped as a slow
	// consumer.
	if err := sub.SetPendingLimits(1<<20, 256<<20); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("httpd: reply inbox limits: %w", err)
	}
	m.sub = sub
	return m, nil
}

// register creates a waiter whose replies go to deliver; call release when done with it.
func (m *replyMux) register(deliver func(*nats.Msg)) *replyWaiter {
	token := strconv.FormatUint(m.next.Add(1), 36)
	w := &replyWaiter{subject: m.prefix + token, deliver: deliver}
	m.mu.Lock()
	m.waiters[token] = w
	m.mu.Unlock()
	return w
}

// release forgets w; later replies to its subject are dropped.
func (m *replyMux) release(w *replyWaiter) {
	m.mu.Lock()
	delete(m.waiters, w.subject[len(m.prefix):])
	m.mu.Unlock()
}

// pending returns the number of registered waiters (for tests and leak checks).
func (m *replyMux) pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.waiters)
}

func (m *replyMux) dispatch(msg *nats.Msg) {
	if len(msg.Subject) <= len(m.prefix) {
		return
	}
	m.mu.Lock()
	w := m.waiters[msg.Subject[len(m.prefix):]]
	m.mu.Unlock()
	if w != nil {
		w.deliver(msg)
	}
}

// close unsubscribes the inbox.
func (m *replyMux) close() error {
	return m.sub.Unsubscribe()
}

// isNoResponders reports whether msg is the server's "no responders" status (503) for a request.
func isNoResponders(msg *nats.Msg) bool {
	return len(msg.Data) == 0 && msg.Header != nil && msg.Header.Get("Status") == "503"
}
