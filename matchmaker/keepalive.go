package matchmaker

import (
	"strconv"
	"sync"
	"time"

	"github.com/bevygap-go/bevygap/protocol"
)

// StreamKeepalive is the longest a live matchmaker leaves a streaming session request without a
// message: whenever a request's stream has been silent this long (queued at an unchanged
// position, an Edgegap call or a KV write being retried), a ProgressReport "Still working (<n>s)"
// goes out. A front door can therefore take a much longer silence — say three times this — as
// the sign that the matchmaker serving the request is gone (killed), and tell the player at once
// instead of waiting for its whole stream timeout.
const StreamKeepalive = 5 * time.Second

// keepalive wraps the feedback sender of one streaming request: every send re-arms a timer that,
// on expiry, sends a progress report. It holds no goroutine while waiting. After stop, nothing is
// sent any more, so the caller can send the final message and the end of the stream.
type keepalive struct {
	mu      sync.Mutex
	send    func(protocol.Feedback)
	every   time.Duration
	started time.Time
	t       *time.Timer
	stopped bool
}

func newKeepalive(send func(protocol.Feedback), every time.Duration) *keepalive {
	k := &keepalive{send: send, every: every, started: time.Now()}
	k.mu.Lock()
	k.t = time.AfterFunc(every, k.fire)
	k.mu.Unlock()
	return k
}

// Send sends f (unless stopped) and re-arms the timer.
func (k *keepalive) Send(f protocol.Feedback) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	k.send(f)
	k.t.Reset(k.every)
}

func (k *keepalive) fire() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.stopped {
		return
	}
	k.send(protocol.Progress("Still working (" + strconv.Itoa(int(time.Since(k.started).Seconds())) + "s)"))
	k.t.Reset(k.every)
}

// stop ends the keepalive; a report being sent finishes first.
func (k *keepalive) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stopped = true
	k.t.Stop()
}
