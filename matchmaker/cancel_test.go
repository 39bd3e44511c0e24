package matchmaker

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/protocol"
)

// abandonDeleteBound is issue 15's target: a session created for a player who went away is
// deleted within 2 s of the cancel.
const abandonDeleteBound = 2 * time.Second

// timedAPI wraps the simulator's client: it times every DELETE, and can hold session creates.
// A held create has reached "Edgegap" (the simulator created the session) but its answer waits
// for release; if the caller's context ends meanwhile, the call fails with the context's error
// as an HTTP call cut short would, and the caller never learns the session id.
type timedAPI struct {
	EdgegapAPI
	hold    bool
	entered chan struct{} // one value per create that reached the simulator
	release chan struct{} // closed (releaseAll) to answer the held creates
	once    sync.Once

	mu      sync.Mutex
	deletes []time.Time
	deleted chan struct{} // one value per DELETE
}

func newTimedAPI(inner EdgegapAPI, hold bool) *timedAPI {
	return &timedAPI{EdgegapAPI: inner, hold: hold, entered: make(chan struct{}, 16),
		release: make(chan struct{}), deleted: make(chan struct{}, 16)}
}

func (a *timedAPI) CreateSession(ctx context.Context, req edgegap.SessionCreateRequest) (*edgegap.SessionCreated, error) {
	created, err := a.EdgegapAPI.CreateSession(context.WithoutCancel(ctx), req)
	if !a.hold || err != nil {
		return created, err
	}
	a.entered <- struct{}{}
	select {
	case <-a.release:
		return created, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *timedAPI) DeleteSession(ctx context.Context, sid string) (*edgegap.SessionDeleted, error) {
	d, err := a.EdgegapAPI.DeleteSession(ctx, sid)
	a.mu.Lock()
	a.deletes = append(a.deletes, time.Now())
	a.mu.Unlock()
	a.deleted <- struct{}{}
	return d, err
}

// releaseAll answers the held creates, and lets later creates through.
func (a *timedAPI) releaseAll() { a.once.Do(func() { close(a.release) }) }

// deleteTimes returns when each DELETE was answered.
func (a *timedAPI) deleteTimes() []time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]time.Time(nil), a.deletes...)
}

// startTimed starts a matchmaker of h whose Edgegap API is wrapped by a timedAPI.
func startTimed(t *testing.T, h *harness, hold bool) (*Matchmaker, *timedAPI) {
	t.Helper()
	var api *timedAPI
	mm := h.startWith(t, h.cfg, func(inner EdgegapAPI) EdgegapAPI {
		api = newTimedAPI(inner, hold)
		return api
	})
	t.Cleanup(api.releaseAll) // runs before the matchmaker's shutdown (cleanups run last first)
	return mm, api
}

// abandonable is a streaming request whose reply subject the test knows, so that it can play
// the front door and cancel it.
type abandonable struct {
	*streamReader
	inbox string
}

func openAbandonable(t *testing.T, h *harness) abandonable {
	t.Helper()
	inbox := nats.NewInbox()
	sub, err := h.nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := h.nc.PublishRequest(protocol.SubjectMatchmakerRequestPrefix+"."+h.cfg.AppName+"."+h.cfg.AppVersion, inbox,
		[]byte(`{"client_ip":"203.0.113.7"}`)); err != nil {
		t.Fatal(err)
	}
	return abandonable{streamReader: &streamReader{sub: sub}, inbox: inbox}
}

// until reads feedback until one of kind arrives.
func (a abandonable) until(t *testing.T, kind protocol.FeedbackKind) protocol.Feedback {
	t.Helper()
	for {
		_, f, end, err := a.next()
		if err != nil {
			t.Fatalf("waiting for feedback %d: %v", kind, err)
		}
		if end {
			t.Fatalf("stream ended before feedback %d", kind)
		}
		if f.Kind == kind {
			return f
		}
	}
}

// cancel publishes the front door's cancel for the request and returns when it was sent.
func (a abandonable) cancel(t *testing.T, h *harness) time.Time {
	t.Helper()
	at := time.Now()
	if err := h.nc.Publish(protocol.SubjectMatchmakerCancelPrefix+"."+h.cfg.AppName+"."+h.cfg.AppVersion, []byte(a.inbox)); err != nil {
		t.Fatal(err)
	}
	if err := h.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return at
}

// endsAbandoned checks that the stream ends with the abandoned request's error.
func (a abandonable) endsAbandoned(t *testing.T) {
	t.Helper()
	_, fbs, err := a.rest()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fbs {
		if f.Kind == protocol.FeedbackSessionReady {
			t.Fatal("abandoned request was granted a session")
		}
	}
	if n := len(fbs); n == 0 || fbs[n-1].Kind != protocol.FeedbackError || fbs[n-1].Code != statusClientClosed {
		t.Fatalf("abandoned request ended with %+v, want Error %d", fbs, statusClientClosed)
	}
}

// abandonedCount returns bevygap_matchmaker_abandoned_requests_total{phase}.
func abandonedCount(t *testing.T, h *harness, mm *Matchmaker, phase string) float64 {
	t.Helper()
	mfs, err := h.registry(mm).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "bevygap_matchmaker_abandoned_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "phase" && l.GetValue() == phase {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// deletedWithin waits for the one DELETE of the test and checks it came within bound of since.
func deletedWithin(t *testing.T, api *timedAPI, since time.Time, bound time.Duration) time.Duration {
	t.Helper()
	select {
	case <-api.deleted:
	case <-time.After(bound + 10*time.Second): // a loaded machine; the bound is checked below
		t.Fatalf("no DELETE %v after the cancel", bound+10*time.Second)
	}
	took := api.deleteTimes()[0].Sub(since)
	t.Logf("session deleted %v after the cancel", took.Round(100*time.Microsecond))
	if took > bound {
		t.Errorf("session deleted %v after the cancel, want within %v", took, bound)
	}
	return took
}

// A request abandoned while queued for admission leaves the queue: its session is never
// created.
func TestAbandonWhileQueuedCreatesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, boot: time.Minute, noMatchmaker: true, configure: func(c *Config) {
		c.MaxConcurrentCreates = 1
		c.ReadinessLimit = 2 * time.Minute
	}})
	mm, api := startTimed(t, h, false)

	first := openAbandonable(t, h) // holds the only slot while its server boots
	first.until(t, protocol.FeedbackSessionRequestAccepted)
	second := openAbandonable(t, h)
	if f := second.until(t, protocol.FeedbackProgressReport); f.Text != "Queued: position 1" {
		t.Fatalf("second request: %q, want to be queued", f.Text)
	}
	second.cancel(t, h)
	second.endsAbandoned(t)
	if n := abandonedCount(t, h, mm, "queued"); n != 1 {
		t.Errorf("abandoned{phase=queued} = %v, want 1", n)
	}
	if n := h.sim.CallCounts().Endpoint(edgegap.EndpointSessionCreate); n != 1 {
		t.Errorf("%d session creates, want 1 (the abandoned queued request must create none)", n)
	}
	if q := mm.admit.queued(); q != 0 {
		t.Errorf("%d requests still queued", q)
	}

	// The first one leaves while its server boots: deleted at once.
	at := first.cancel(t, h)
	first.endsAbandoned(t)
	deletedWithin(t, api, at, abandonDeleteBound)
	h.noLeaks(t, 5*time.Second)
	if n := h.sim.CallCounts().Endpoint(edgegap.EndpointSessionCreate); n != 1 {
		t.Errorf("%d session creates in all, want 1", n)
	}
}

// A request abandoned while its Edgegap create is in flight does not cut the create short (the
// session may exist on Edgegap already); the session it returns is deleted at once.
func TestAbandonDuringCreateDeletesTheSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, boot: time.Minute, noMatchmaker: true, configure: func(c *Config) {
		c.ReadinessLimit = 2 * time.Minute
	}})
	mm, api := startTimed(t, h, true)

	req := openAbandonable(t, h)
	req.until(t, protocol.FeedbackAcknowledged)
	<-api.entered // the simulator has the session; its answer is held
	at := req.cancel(t, h)
	eventually.True(t, 5*time.Second, func() bool { return abandonedCount(t, h, mm, "creating") == 1 },
		"abandoned{phase=creating} = 1")
	api.releaseAll() // the create answers after the player left
	req.endsAbandoned(t)
	deletedWithin(t, api, at, abandonDeleteBound)
	h.noLeaks(t, 5*time.Second)
	if n := len(api.deleteTimes()); n != 1 {
		t.Errorf("%d DELETEs, want exactly 1", n)
	}
	if n := h.sim.CallCounts().Endpoint(edgegap.EndpointSessionCreate); n != 1 {
		t.Errorf("%d session creates, want 1", n)
	}
}

// A request abandoned while its session boots has the session deleted at once, not after the
// readiness limit plus the claim grace.
func TestAbandonWhileWaitingDeletesAtOnce(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, boot: time.Minute, noMatchmaker: true, configure: func(c *Config) {
		c.ReadinessLimit = 2 * time.Minute
	}})
	mm, api := startTimed(t, h, false)

	req := openAbandonable(t, h)
	req.until(t, protocol.FeedbackSessionRequestAccepted)
	at := req.cancel(t, h)
	req.endsAbandoned(t)
	deletedWithin(t, api, at, abandonDeleteBound)
	h.noLeaks(t, 5*time.Second)
	if n := abandonedCount(t, h, mm, "waiting"); n != 1 {
		t.Errorf("abandoned{phase=waiting} = %v, want 1", n)
	}
}

// A cancel that reaches the matchmaker before its request does (a NATS client that gave up at
// once; the two subscriptions run on different goroutines) still drops the request.
func TestCancelBeforeRequest(t *testing.T) {
	t.Parallel()
	m := newMatchmaker(DefaultConfig(), Deps{})
	m.cancelPlain("_INBOX.early")
	r := m.trackPlain("_INBOX.early")
	if !isAbandoned(r.ctx) {
		t.Fatal("request canceled before it arrived is not abandoned")
	}
	other := m.trackPlain("_INBOX.other")
	if other.ctx.Err() != nil {
		t.Fatal("another request was canceled")
	}
	m.untrackPlain(other)
	m.untrackPlain(r)
}

// recentCancels keeps a cancel that found no request between keep and 2×keep, at most max.
func TestRecentCancels(t *testing.T) {
	t.Parallel()
	c := recentCancels{keep: 5 * time.Second, max: 2}
	t0 := time.Unix(1000, 0)
	c.add("a", t0)
	c.add("b", t0)
	c.add("c", t0) // over max: forgotten
	if !c.take("a", t0.Add(time.Second)) {
		t.Error("a not remembered")
	}
	if c.take("a", t0.Add(time.Second)) {
		t.Error("a taken twice")
	}
	if c.take("c", t0) {
		t.Error("c remembered beyond max")
	}
	if !c.take("b", t0.Add(6*time.Second)) { // rotated once: still in the old generation
		t.Error("b forgotten after one rotation")
	}
	c.add("d", t0.Add(6*time.Second))
	if c.take("d", t0.Add(17*time.Second)) { // two rotations later
		t.Error("d remembered too long")
	}
}

// A shutdown that fails the requests while an Edgegap create is in flight does not cut the
// create short either: the session it returns is queued for deletion (here executed by the next
// matchmaker), instead of leaking on Edgegap with an id nobody learnt.
func TestShutdownDuringCreateLeaksNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, boot: time.Minute, noMatchmaker: true, configure: func(c *Config) {
		c.ReadinessLimit = 2 * time.Minute
		c.ShutdownTimeout = 100 * time.Millisecond
	}})
	mm, api := startTimed(t, h, true)

	req := openAbandonable(t, h)
	req.until(t, protocol.FeedbackAcknowledged)
	<-api.entered // the simulator has the session; its answer is held
	stopped := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		stopped <- mm.Shutdown(ctx)
	}()
	eventually.True(t, 5*time.Second, func() bool { return mm.reqCtx.Err() != nil }, "the shutdown fails the in-flight requests")
	api.releaseAll() // the create answers after the requests were failed
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	_, fbs, err := req.rest()
	if err != nil {
		t.Fatal(err)
	}
	if n := len(fbs); n == 0 || fbs[n-1].Kind != protocol.FeedbackError || fbs[n-1].Code != 503 {
		t.Fatalf("request ended with %+v, want Error 503 (shutting down)", fbs)
	}
	h.start(t, h.cfg) // the next matchmaker runs the queued deletion
	h.noLeaks(t, 10*time.Second)
}

// A cancel that comes just after the grant — the front door lost its player before it could
// relay the SessionReady — still deletes the session, whose token nobody will use.
func TestAbandonRightAfterGrantDeletesTheSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, noMatchmaker: true})
	mm, api := startTimed(t, h, false)

	req := openAbandonable(t, h)
	req.until(t, protocol.FeedbackSessionReady)
	at := req.cancel(t, h)
	deletedWithin(t, api, at, abandonDeleteBound)
	h.noLeaks(t, 5*time.Second)
	if n := abandonedCount(t, h, mm, "granted"); n != 1 {
		t.Errorf("abandoned{phase=granted} = %v, want 1", n)
	}
}
