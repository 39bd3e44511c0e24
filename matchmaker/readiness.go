package matchmaker

import (
	"container/list"
	"sync"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
)

// hookEvent is what a session webhook tells a waiter.
type hookEvent struct {
	ready  bool
	failed bool // Edgegap reported error / unprocessable
	status string
	// recheck: not a webhook; webhooks may have been lost (the NATS connection was away),
	// so the waiter asks Edgegap now rather than at its next fallback poll.
	recheck bool
}

// hookRouter hands session webhooks (received by every matchmaker on NATS) to the waiter of
// this process that owns the session. A webhook that arrives before its waiter registered
// (Edgegap can be faster than our KV write) is kept for a while in a bounded cache.
type hookRouter struct {
	mu      sync.Mutex
	waiters map[string]chan hookEvent
	recent  map[string]*list.Element // session id -> element of order (value recentHook)
	order   *list.List
	max     int
	ttl     time.Duration

	// healthy is true while webhooks are seen to arrive for our sessions: then the fallback
	// poll is slow. A session found ready by a poll before its webhook flips it to false.
	healthy bool
}

type recentHook struct {
	id string
	ev hookEvent
	at time.Time
}

func newHookRouter() *hookRouter {
	return &hookRouter{
		waiters: make(map[string]chan hookEvent),
		recent:  make(map[string]*list.Element),
		order:   list.New(),
		max:     10000,
		ttl:     2 * time.Minute,
		healthy: true,
	}
}

// register returns the channel on which the waiter of sessionID receives webhook events. A
// cached event for the session is delivered at once.
func (r *hookRouter) register(sessionID string) <-chan hookEvent {
	ch := make(chan hookEvent, 4)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.waiters[sessionID] = ch
	if el, ok := r.recent[sessionID]; ok {
		h := el.Value.(recentHook)
		r.order.Remove(el)
		delete(r.recent, sessionID)
		if time.Since(h.at) <= r.ttl {
			ch <- h.ev
		}
	}
	return ch
}

// waiting returns how many sessions have a waiter (sessions waiting for readiness).
func (r *hookRouter) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.waiters)
}

// unregister forgets the waiter of sessionID.
func (r *hookRouter) unregister(sessionID string) {
	r.mu.Lock()
	delete(r.waiters, sessionID)
	r.mu.Unlock()
}

// deliver routes one webhook; it reports whether a waiter of this process owned the session.
func (r *hookRouter) deliver(w edgegap.SessionWebhook) bool {
	ev := hookEvent{ready: w.Ready, status: w.Status,
		failed: edgegap.StatusIs(w.Status, edgegap.SessionStatusError) || edgegap.StatusIs(w.Status, edgegap.SessionStatusUnprocessable)}
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch, ok := r.waiters[w.SessionID]; ok {
		if ev.ready || ev.failed {
			r.healthy = true
		}
		select {
		case ch <- ev:
		default: // waiter has unread events; it will GET the session anyway
		}
		return true
	}
	// Not ours (yet): remember it briefly in case our waiter registers after it.
	now := time.Now()
	for r.order.Len() > 0 {
		front := r.order.Front()
		h := front.Value.(recentHook)
		if r.order.Len() < r.max && now.Sub(h.at) <= r.ttl {
			break
		}
		r.order.Remove(front)
		delete(r.recent, h.id)
	}
	if el, ok := r.recent[w.SessionID]; ok {
		r.order.Remove(el)
	}
	r.recent[w.SessionID] = r.order.PushBack(recentHook{id: w.SessionID, ev: ev, at: now})
	return false
}

// wakeAll tells every waiter to check its session now (wakeAll's hookEvent.recheck) and returns
// how many there were.
func (r *hookRouter) wakeAll() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ch := range r.waiters {
		select {
		case ch <- hookEvent{recheck: true}:
		default: // events pending: the waiter checks anyway
		}
	}
	return len(r.waiters)
}

// markPollFoundReady records that a poll found a session ready before any webhook for it.
func (r *hookRouter) markPollFoundReady() {
	r.mu.Lock()
	r.healthy = false
	r.mu.Unlock()
}

func (r *hookRouter) isHealthy() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.healthy
}

// pollPlan yields the times (from the session's creation) of the fallback polls.
//
// With a webhook URL and webhooks seen to work ("late" plan): one early check at
// min(5 s, 10 % of the limit), skipped when any webhook for the session (e.g. "Linked") has
// already arrived — it catches a warm deployment whose "Ready" webhook was lost — then polls at
// 60 %, 80 % and 95 % of the limit. A session that boots within 60 % of the limit thus costs no
// poll at all. Otherwise ("fast" plan): an immediate poll, then intervals from initial doubling
// up to max, until the limit.
type pollPlan struct {
	limit, initial, max time.Duration
	late                bool
	i                   int
	at, step            time.Duration
}

func newPollPlan(limit, initial, max time.Duration, withWebhook, healthy bool) *pollPlan {
	return &pollPlan{limit: limit, initial: initial, max: max, late: withWebhook && healthy, step: initial}
}

// next returns the next poll time and whether it may be skipped because a webhook for the
// session has arrived; ok is false when there is no poll left before the limit.
func (p *pollPlan) next() (at time.Duration, skippable, ok bool) {
	defer func() { p.i++ }()
	if p.late {
		switch p.i {
		case 0:
			return min(5*time.Second, p.limit/10), true, true
		case 1:
			return p.limit * 60 / 100, false, true
		case 2:
			return p.limit * 80 / 100, false, true
		case 3:
			return p.limit * 95 / 100, false, true
		}
		return 0, false, false
	}
	if p.i == 0 {
		return 0, false, true
	}
	p.at += p.step
	p.step = min(p.step*2, p.max)
	return p.at, false, p.at < p.limit
}

// pollSchedule lists the whole plan (for tests and docs).
func pollSchedule(limit, initial, max time.Duration, withWebhook, healthy bool) []time.Duration {
	p := newPollPlan(limit, initial, max, withWebhook, healthy)
	var out []time.Duration
	for {
		d, _, ok := p.next()
		if !ok {
			return out
		}
		out = append(out, d)
	}
}

// lookout decides which sessions the matchmaker looks at right after creating them (with
// webhooks; see waitReady). A look grants a session that joined a running deployment without
// waiting for its webhook, and costs a GET for nothing when the session's deployment must boot.
// So while looks find sessions ready about as often as booting, every session gets one (the
// first session of a deployment boots, the next ones join it); once they find booting sessions
// lookStopAfter times more than ready ones (a burst of new deployments, Match sessions), only
// one create in lookProbeEvery is looked at, until looks find sessions ready again.
type lookout struct {
	mu    sync.Mutex
	score int // +1 per look that found its session ready, -1 per one that did not, within ±lookScoreMax
	n     int // looks decided, for the probes
}

const (
	// lookScoreMax bounds the lookout's memory: after a long warm run, lookScoreMax +
	// lookStopAfter more looks must find booting sessions than ready ones before looks stop.
	lookScoreMax = 8
	// lookStopAfter is how many more booting sessions than ready ones stop the looks.
	lookStopAfter = 3
	// lookProbeEvery is how often a session is looked at while looks are stopped.
	lookProbeEvery = 16
)

// shouldLook reports whether to look at the session just created.
func (l *lookout) shouldLook() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	return l.score > -lookStopAfter || l.n%lookProbeEvery == 0
}

// saw records what a look found.
func (l *lookout) saw(ready bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ready {
		l.score = min(l.score+1, lookScoreMax)
	} else {
		l.score = max(l.score-1, -lookScoreMax)
	}
}
