package matchmaker

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/protocol"
)

func TestHookRouter(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		r := newHookRouter()
		// A webhook that arrives before its waiter registers is kept and delivered on register.
		if r.deliver(edgegap.SessionWebhook{SessionID: "a-S", Status: "Ready", Ready: true}) {
			t.Fatal("owned without a waiter")
		}
		ch := r.register("a-S")
		select {
		case ev := <-ch:
			if !ev.ready {
				t.Fatalf("event %+v", ev)
			}
		default:
			t.Fatal("cached webhook not delivered")
		}
		// Live delivery, error detection.
		if !r.deliver(edgegap.SessionWebhook{SessionID: "a-S", Status: "Error"}) {
			t.Fatal("not routed to its waiter")
		}
		if ev := <-ch; !ev.failed {
			t.Fatalf("event %+v", ev)
		}
		r.unregister("a-S")
		// Stale cached webhooks (older than the 2 min ttl) are dropped; fresh ones are not.
		r.deliver(edgegap.SessionWebhook{SessionID: "b-S", Status: "Ready", Ready: true})
		r.deliver(edgegap.SessionWebhook{SessionID: "c-S", Status: "Ready", Ready: true})
		time.Sleep(r.ttl)
		select {
		case <-r.register("c-S"):
		default:
			t.Fatal("webhook of exactly the ttl's age dropped")
		}
		time.Sleep(time.Nanosecond)
		select {
		case ev := <-r.register("b-S"):
			t.Fatalf("stale event delivered: %+v", ev)
		default:
		}
		// Health flips on a poll-found session and back on an owned webhook.
		r.markPollFoundReady()
		if r.isHealthy() {
			t.Fatal("still healthy")
		}
		r.deliver(edgegap.SessionWebhook{SessionID: "b-S", Status: "Ready", Ready: true})
		if !r.isHealthy() {
			t.Fatal("not healthy after an owned webhook")
		}
		// The cache is bounded.
		r.max = 3
		for _, id := range []string{"c", "d", "e", "f", "g"} {
			r.deliver(edgegap.SessionWebhook{SessionID: id, Status: "Linked"})
		}
		if len(r.recent) > 3 || r.order.Len() != len(r.recent) {
			t.Fatalf("cache size %d / %d", len(r.recent), r.order.Len())
		}
	})
}

// TestWaitReady runs the readiness wait on fake time against an in-memory Edgegap: which
// wake-ups (webhook, poll schedule, limit, cancel) end it, when it GETs the session, and what it
// reports. Limit 60 s, polls from 0.5 s doubling to 3 s (the defaults).
func TestWaitReady(t *testing.T) {
	t.Parallel()
	type hook struct {
		at     time.Duration
		status string // "Linked", "Ready", "Error"; "reconnect": not a webhook, the NATS connection came back (wakeAll)
	}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	s := func(n int) time.Duration { return time.Duration(n) * time.Second }
	tests := []struct {
		name     string
		webhook  bool // SessionWebhookURL is set
		degraded bool // a poll found an earlier session ready before its webhook
		hooks    []hook
		readyAt  time.Duration // GET shows the session ready from then on (0: never)
		status   string        // GET status while not ready ("" = Status.LINKED)
		getErr   map[int]error // error of the n-th GET (1 = first)
		cancelAt time.Duration

		wantGets    []time.Duration
		wantAfter   time.Duration
		wantCode    uint16 // 0: ready
		wantVia     string
		wantHealthy bool
	}{
		{name: "ready webhook wakes the waiter", webhook: true,
			hooks: []hook{{s(1), "Linked"}, {s(20), "Ready"}}, readyAt: s(20),
			wantGets: []time.Duration{s(20)}, wantAfter: s(20), wantVia: "webhook", wantHealthy: true},
		{name: "no webhook at all: the early check finds it", webhook: true, readyAt: s(3),
			wantGets: []time.Duration{s(5)}, wantAfter: s(5), wantVia: "poll"},
		{name: "early check skipped after Linked, then polls at 60 and 80 %", webhook: true,
			hooks: []hook{{s(1), "Linked"}}, readyAt: s(40),
			wantGets: []time.Duration{s(36), s(48)}, wantAfter: s(48), wantVia: "poll"},
		{name: "webhooks degraded: fast polls", webhook: true, degraded: true, readyAt: s(1),
			wantGets: []time.Duration{0, ms(500), ms(1500)}, wantAfter: ms(1500), wantVia: "poll"},
		{name: "no webhook url: polls doubling up to 3 s", readyAt: s(5),
			wantGets: []time.Duration{0, ms(500), ms(1500), ms(3500), ms(6500)}, wantAfter: ms(6500),
			wantVia: "poll", wantHealthy: true},
		{name: "never ready: 504 at the limit", webhook: true, hooks: []hook{{s(1), "Linked"}},
			wantGets: []time.Duration{s(36), s(48), s(57)}, wantAfter: s(60), wantCode: http.StatusGatewayTimeout, wantHealthy: true},
		{name: "error webhook: 502 at once", webhook: true, hooks: []hook{{s(1), "Linked"}, {s(3), "Error"}},
			wantGets: []time.Duration{}, wantAfter: s(3), wantCode: http.StatusBadGateway, wantHealthy: true},
		{name: "error status on a poll: 502", status: edgegap.SessionStatusError,
			wantGets: []time.Duration{0}, wantAfter: 0, wantCode: http.StatusBadGateway, wantHealthy: true},
		{name: "session gone: 502", getErr: map[int]error{1: &edgegap.APIError{Endpoint: edgegap.EndpointSessionGet, StatusCode: 404}},
			wantGets: []time.Duration{0}, wantAfter: 0, wantCode: http.StatusBadGateway, wantHealthy: true},
		{name: "failed GET retried at the next poll", readyAt: ms(100),
			getErr:   map[int]error{1: &edgegap.APIError{Endpoint: edgegap.EndpointSessionGet, StatusCode: 503}},
			wantGets: []time.Duration{0, ms(500)}, wantAfter: ms(500), wantVia: "poll", wantHealthy: true},
		{name: "NATS reconnect: a session whose Ready webhook was lost is checked at once", webhook: true,
			hooks: []hook{{s(1), "Linked"}, {s(10), "reconnect"}}, readyAt: s(8),
			wantGets: []time.Duration{s(10)}, wantAfter: s(10), wantVia: "reconnect", wantHealthy: true},
		{name: "NATS reconnect before ready: checked, then the webhook", webhook: true,
			hooks: []hook{{s(1), "Linked"}, {s(10), "reconnect"}, {s(20), "Ready"}}, readyAt: s(20),
			wantGets: []time.Duration{s(10), s(20)}, wantAfter: s(20), wantVia: "webhook", wantHealthy: true},
		{name: "request canceled: 503", webhook: true, cancelAt: s(10),
			wantGets: []time.Duration{s(5)}, wantAfter: s(10), wantCode: http.StatusServiceUnavailable, wantHealthy: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				created := time.Now()
				api := &fakeEdgegap{}
				api.getSession = func(id string) (*edgegap.Session, error) {
					if err := tt.getErr[len(api.getTimes(created))]; err != nil {
						return nil, err
					}
					if tt.readyAt > 0 && time.Since(created) >= tt.readyAt {
						return &edgegap.Session{SessionID: id, Status: edgegap.SessionStatusReady, Ready: true,
							Deployment: &edgegap.Deployment{PublicIP: "203.0.113.7"}}, nil
					}
					st := tt.status
					if st == "" {
						st = edgegap.SessionStatusLinked
					}
					return &edgegap.Session{SessionID: id, Status: st, Linked: true}, nil
				}
				m, reg := newUnitMatchmaker(t, func(c *Config) {
					if tt.webhook {
						c.SessionWebhookURL = "https://hooks.example/hook/session"
					}
				}, api, nil)
				if tt.degraded {
					m.hooks.markPollFoundReady()
				}
				for _, h := range tt.hooks {
					time.AfterFunc(h.at, func() {
						if h.status == "reconnect" {
							m.hooks.wakeAll()
							return
						}
						m.hooks.deliver(edgegap.SessionWebhook{SessionID: "s-1", Status: h.status, Ready: h.status == "Ready"})
					})
				}
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				if tt.cancelAt > 0 {
					time.AfterFunc(tt.cancelAt, cancel)
				}
				var progress []string
				sess, waited, rerr := m.waitReady(ctx, "s-1", created, func(f protocol.Feedback) {
					progress = append(progress, f.Text)
				})

				if after := time.Since(created); after != tt.wantAfter {
					t.Errorf("returned after %v, want %v", after, tt.wantAfter)
				}
				if gets := api.getTimes(created); !slices.Equal(gets, tt.wantGets) {
					t.Errorf("GETs at %v, want %v", gets, tt.wantGets)
				}
				switch {
				case tt.wantCode != 0:
					if rerr == nil || rerr.Code != tt.wantCode || sess != nil {
						t.Fatalf("got %v, %v; want code %d", sess, rerr, tt.wantCode)
					}
				case rerr != nil || sess == nil || !sess.Ready || waited != tt.wantAfter:
					t.Fatalf("got %v after %v, %v; want a ready session", sess, waited, rerr)
				}
				if tt.wantVia != "" {
					if v := metricSum(t, reg, "bevygap_matchmaker_sessions_ready_total", map[string]string{"via": tt.wantVia}); v != 1 {
						t.Errorf("ready via %s = %v", tt.wantVia, v)
					}
				}
				if m.hooks.isHealthy() != tt.wantHealthy {
					t.Errorf("webhooks healthy = %v, want %v", m.hooks.isHealthy(), tt.wantHealthy)
				}
				wantGauge := 1.0
				if !tt.wantHealthy {
					wantGauge = 0
				}
				if v := metricSum(t, reg, "bevygap_matchmaker_webhook_healthy", nil); v != wantGauge {
					t.Errorf("webhook_healthy gauge %v, want %v", v, wantGauge)
				}
				if tt.wantCode == http.StatusGatewayTimeout {
					if v := metricSum(t, reg, "bevygap_matchmaker_readiness_timeouts_total", nil); v != 1 {
						t.Errorf("readiness timeouts = %v", v)
					}
				}
				// Streaming clients hear what happens, and that time passes, every 2 s.
				if tt.wantAfter >= 2*time.Second && !slices.Contains(progress, "Waiting for game server (2s)") {
					t.Errorf("progress %q lacks the 2 s waiting report", progress)
				}
				if len(tt.hooks) > 0 && tt.hooks[0].status == "Linked" && !slices.Contains(progress, "Linked") {
					t.Errorf("progress %q lacks the Linked webhook", progress)
				}
			})
		})
	}
}

// TestWaitReadyAfterDegradation: a session found by a poll before its webhook switches the
// next waits to the fast poll schedule (until a webhook is seen to work again).
func TestWaitReadyAfterDegradation(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var created time.Time
		api := &fakeEdgegap{getSession: func(id string) (*edgegap.Session, error) {
			if time.Since(created) >= time.Second {
				return &edgegap.Session{SessionID: id, Status: edgegap.SessionStatusReady, Ready: true,
					Deployment: &edgegap.Deployment{PublicIP: "203.0.113.7"}}, nil
			}
			return &edgegap.Session{SessionID: id, Status: edgegap.SessionStatusLinked}, nil
		}}
		m, _ := newUnitMatchmaker(t, func(c *Config) { c.SessionWebhookURL = "https://hooks.example/hook/session" }, api, nil)
		for i, want := range [][]time.Duration{{5 * time.Second}, {0, 500 * time.Millisecond, 1500 * time.Millisecond}} {
			created = time.Now()
			api.gets = nil
			if _, _, rerr := m.waitReady(context.Background(), "s-1", created, func(protocol.Feedback) {}); rerr != nil {
				t.Fatal(rerr)
			}
			if got := api.getTimes(created); !slices.Equal(got, want) {
				t.Errorf("wait %d: GETs at %v, want %v", i+1, got, want)
			}
		}
	})
}

func TestPollScheduleTable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		hook, healthy bool
		want          []time.Duration
	}{
		{"webhook healthy", true, true, []time.Duration{5 * time.Second, 36 * time.Second, 48 * time.Second, 57 * time.Second}},
		{"webhook degraded", true, false, nil},
		{"no webhook", false, true, nil},
	}
	for _, tt := range tests {
		got := pollSchedule(time.Minute, 500*time.Millisecond, 3*time.Second, tt.hook, tt.healthy)
		if tt.want != nil {
			if !slices.Equal(got, tt.want) {
				t.Errorf("%s: %v", tt.name, got)
			}
			continue
		}
		if got[0] != 0 || got[1] != 500*time.Millisecond || got[2] != 1500*time.Millisecond || got[3] != 3500*time.Millisecond {
			t.Errorf("%s: %v", tt.name, got[:4])
		}
		for i := 4; i < len(got); i++ {
			if got[i]-got[i-1] != 3*time.Second {
				t.Errorf("%s: interval %v at %d", tt.name, got[i]-got[i-1], i)
			}
		}
		if len(got) > 25 {
			t.Errorf("%s: %d polls in a minute", tt.name, len(got))
		}
	}
}

// spareFake is a fakeEdgegap whose client can look at a session at once when its rate limit has
// a call to spare (spareGetter); spare false answers edgegap.ErrNoSpareCall.
type spareFake struct {
	*fakeEdgegap
	spare bool
	looks int
}

func (f *spareFake) GetSessionNow(ctx context.Context, id string) (*edgegap.Session, error) {
	f.looks++
	if !f.spare {
		return nil, fmt.Errorf("edgegap session_get: %w", edgegap.ErrNoSpareCall)
	}
	return f.GetSession(ctx, id)
}

// TestWaitReadyLooksAtOnce: with working webhooks, a client that has a GET to spare looks at
// the session right after its create — a session that joined a running deployment is granted
// then, without waiting for its webhook; one that must wait for its deployment costs that one
// GET more, and the webhook decides as before. Without a call to spare, or with degraded
// webhooks (whose schedule polls at once anyway), there is no extra look.
func TestWaitReadyLooksAtOnce(t *testing.T) {
	t.Parallel()
	s := func(n int) time.Duration { return time.Duration(n) * time.Second }
	tests := []struct {
		name      string
		spare     bool
		degraded  bool
		readyAt   time.Duration
		wantLooks int
		wantGets  []time.Duration // every GET, the look's included
		wantAfter time.Duration
		wantVia   string
		progress  string // a progress message the wait must have sent
	}{
		{name: "warm deployment: granted by the look", spare: true, readyAt: 0,
			wantLooks: 1, wantGets: []time.Duration{0}, wantAfter: 0, wantVia: "immediate"},
		{name: "deployment booting: the look, then the webhook", spare: true, readyAt: s(3),
			wantLooks: 1, wantGets: []time.Duration{0, s(3)}, wantAfter: s(3), wantVia: "webhook", progress: "Status.LINKED (0)"},
		{name: "no call to spare: the webhook alone", spare: false, readyAt: 0,
			wantLooks: 1, wantGets: []time.Duration{s(3)}, wantAfter: s(3), wantVia: "webhook"},
		{name: "degraded webhooks: the fast schedule, no look", spare: true, degraded: true, readyAt: 0,
			wantLooks: 0, wantGets: []time.Duration{0}, wantAfter: 0, wantVia: "poll"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				created := time.Now()
				api := &spareFake{fakeEdgegap: &fakeEdgegap{}, spare: tt.spare}
				api.getSession = func(id string) (*edgegap.Session, error) {
					if time.Since(created) >= tt.readyAt {
						return &edgegap.Session{SessionID: id, Status: edgegap.SessionStatusReady, Ready: true,
							Deployment: &edgegap.Deployment{PublicIP: "203.0.113.7"}}, nil
					}
					return &edgegap.Session{SessionID: id, Status: edgegap.SessionStatusLinked, Linked: true}, nil
				}
				m, reg := newUnitMatchmaker(t, func(c *Config) { c.SessionWebhookURL = "https://hooks.example/hook/session" }, api, nil)
				if tt.degraded {
					m.hooks.markPollFoundReady()
				}
				time.AfterFunc(s(3), func() {
					m.hooks.deliver(edgegap.SessionWebhook{SessionID: "s-1", Status: "Ready", Ready: true})
				})
				var progress []string
				sess, _, rerr := m.waitReady(context.Background(), "s-1", created, func(f protocol.Feedback) {
					progress = append(progress, f.Text)
				})
				if rerr != nil || sess == nil || !sess.Ready {
					t.Fatalf("waitReady: %+v, %v", sess, rerr)
				}
				if after := time.Since(created); after != tt.wantAfter {
					t.Errorf("returned after %v, want %v", after, tt.wantAfter)
				}
				if api.looks != tt.wantLooks {
					t.Errorf("%d looks, want %d", api.looks, tt.wantLooks)
				}
				if gets := api.getTimes(created); !slices.Equal(gets, tt.wantGets) {
					t.Errorf("GETs at %v, want %v", gets, tt.wantGets)
				}
				if v := metricSum(t, reg, "bevygap_matchmaker_sessions_ready_total", map[string]string{"via": tt.wantVia}); v != 1 {
					t.Errorf("ready via %s = %v", tt.wantVia, v)
				}
				if tt.progress != "" && !slices.Contains(progress, tt.progress) {
					t.Errorf("progress %q lacks %q", progress, tt.progress)
				}
				if !tt.degraded && !m.hooks.isHealthy() {
					t.Error("a session granted by the look marked the webhooks degraded")
				}
			})
		})
	}
}

// TestLookout: every session is looked at while looks find sessions ready about as often as
// booting; after lookStopAfter more booting than ready, one create in lookProbeEvery is, until
// looks find ready sessions again.
func TestLookout(t *testing.T) {
	t.Parallel()
	l := &lookout{}
	looks := func(n int) int {
		c := 0
		for range n {
			if l.shouldLook() {
				c++
			}
		}
		return c
	}
	if n := looks(20); n != 20 {
		t.Fatalf("fresh lookout: %d looks of 20", n)
	}
	// A deployment's first session boots, the next ones join it: still looking.
	for range 3 {
		l.saw(false)
		for range 5 {
			l.saw(true)
		}
	}
	if n := looks(10); n != 10 {
		t.Fatalf("mostly warm: %d looks of 10", n)
	}
	// A fresh lookout looks at lookStopAfter booting sessions, then stops.
	l = &lookout{}
	for i := range lookStopAfter {
		if !l.shouldLook() {
			t.Fatalf("stopped after %d booting sessions, want %d", i, lookStopAfter)
		}
		l.saw(false)
	}
	if n := looks(4 * lookProbeEvery); n != 4 {
		t.Fatalf("booting sessions: %d looks of %d, want one probe per %d", n, 4*lookProbeEvery, lookProbeEvery)
	}
	// Bounded memory: lookScoreMax more ready looks than booting bring it back however long it
	// was cold.
	for range 4 * lookScoreMax {
		l.saw(false)
	}
	for range lookScoreMax {
		l.saw(true)
	}
	if n := looks(10); n != 10 {
		t.Fatalf("warm again: %d looks of 10", n)
	}
}
