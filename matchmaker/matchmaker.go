package matchmaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/internal/statusfeed"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// ErrAppNotReady is returned (wrapped) by Start when the configured app or app version does not
// exist on Edgegap or is not active.
var ErrAppNotReady = errors.New("matchmaker: Edgegap app version not usable")

// ErrStarted is returned by Start when called twice.
var ErrStarted = errors.New("matchmaker: already started")

// Matchmaker is the session service. Create it with [New], then [Matchmaker.Run] it (or
// Start + Shutdown). It is safe for concurrent use.
type Matchmaker struct {
	cfg    Config
	nc     *nats.Conn
	api    EdgegapAPI
	log    *slog.Logger
	met    *metrics
	minter *netcode.Minter
	hooks  *hookRouter
	looks  *lookout // which sessions to look at right after their create
	admit  *admission
	// claims are the claimed sessions (active_connections puts) and failedHooks the "Error"
	// webhooks of sessions no waiter here owns: the liveness checks of liveness.go.
	claims      *claimTracker
	failedHooks chan string
	plain       *plainRequests // in-flight plain streaming requests a cancel can reach (cancel.go)
	// play is the play-together engine's cancel hook (cancel.go); nil until it is wired.
	play playHooks

	// status page feed (docs/status.md): counters, publisher identity, the metrics to read
	status          *statusfeed.Recorder
	instance        string
	startedAt       time.Time
	edgegapCallsVec *prometheus.CounterVec // Edgegap calls, read by the status snapshot

	mu      sync.Mutex
	started bool
	stopped bool
	b       *bus.Buckets
	svc     micro.Service
	subs    []*nats.Subscription // request subscriptions (stopped first on shutdown)
	hookSub *nats.Subscription   // webhooks (kept until in-flight requests are done)
	unclaim *unclaimedReaper
	certs   *certCache // cert_digests in memory (certcache.go); nil before Start

	// reqCtx is the parent of every request; it outlives the Run context so that in-flight
	// requests can finish during shutdown, and is canceled when the shutdown timeout expires.
	reqCtx    context.Context
	reqCancel context.CancelFunc
	inflight  sync.WaitGroup

	bgCancel context.CancelFunc
	bg       sync.WaitGroup
}

// New checks cfg and returns a matchmaker that is not running yet.
func New(cfg Config, deps Deps) (*Matchmaker, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if deps.NATS == nil {
		return nil, fmt.Errorf("%w: no NATS connection", ErrConfig)
	}
	if deps.Edgegap == nil {
		return nil, fmt.Errorf("%w: no Edgegap API", ErrConfig)
	}
	return newMatchmaker(cfg, deps), nil
}

// newMatchmaker builds a matchmaker from a validated cfg (unit tests use it without NATS).
func newMatchmaker(cfg Config, deps Deps) *Matchmaker {
	log := deps.Logger
	if log == nil {
		log = slog.Default()
	}
	reg := deps.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	met := newMetrics(reg)
	met.webhookHealthy.Set(1)
	m := &Matchmaker{
		cfg:    cfg,
		nc:     deps.NATS,
		api:    deps.Edgegap,
		log:    log.With(logkey.Component, "matchmaker"),
		met:    met,
		minter: &netcode.Minter{Key: cfg.PrivateKey, Format: cfg.TokenFormat},
		hooks:  newHookRouter(),
		looks:  &lookout{},
		admit:  newAdmission(cfg.MaxConcurrentCreates, time.Second),

		claims:      newClaimTracker(),
		failedHooks: make(chan string, failedHookQueue),
		plain:       newPlainRequests(),

		status:          statusfeed.NewRecorder(),
		instance:        statusfeed.NewInstanceID(),
		startedAt:       time.Now(),
		edgegapCallsVec: edgegapCallsVec(reg),
	}
	m.reqCtx, m.reqCancel = context.WithCancel(context.Background())
	m.registerStateMetrics(reg)
	return m
}

// Run starts the matchmaker, serves until ctx ends, then shuts down gracefully.
func (m *Matchmaker) Run(ctx context.Context) error {
	if err := m.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), m.cfg.ShutdownTimeout+10*time.Second)
	defer cancel()
	return m.Shutdown(sctx)
}

// Start verifies the Edgegap app version, opens the buckets, starts the lifecycle workers
// (active-connection watcher, unclaimed reaper, delete worker, reconciler) and then begins
// answering session.gensession and matchmaker.request.*.*. It returns once everything is
// subscribed; ctx only bounds the startup.
func (m *Matchmaker) Start(ctx context.Context) error {
	m.mu.Lock()
	if m.started {
		m.mu.Unlock()
		return ErrStarted
	}
	m.started = true
	m.mu.Unlock()

	if err := m.verifyApp(ctx); err != nil {
		return err
	}
	b, err := bus.Open(ctx, m.nc, m.cfg.Buckets)
	if err != nil {
		return fmt.Errorf("matchmaker: %w", err)
	}
	m.mu.Lock()
	m.b = b
	m.mu.Unlock()

	bgCtx, cancel := context.WithCancel(context.Background())
	m.bgCancel = cancel
	fail := func(err error) error {
		m.mu.Lock()
		svc, hookSub := m.svc, m.hookSub
		m.mu.Unlock()
		if svc != nil {
			_ = svc.Stop()
		}
		m.unsubscribeAll()
		m.stopCancel()
		if hookSub != nil {
			_ = hookSub.Unsubscribe()
		}
		cancel()
		m.bg.Wait()
		return err
	}

	// Lifecycle first, so that no request is answered before the reaper sees the bucket.
	if err := m.startUnclaimedReaper(ctx, bgCtx); err != nil {
		return fail(err)
	}
	m.goBackground(func() { m.watchActiveConnections(bgCtx) })
	m.goBackground(func() { m.runFailedHookChecks(bgCtx) })
	m.startCertCache(bgCtx)
	cons, err := m.deleteConsumer(ctx, b)
	if err != nil {
		return fail(fmt.Errorf("matchmaker: %w", err))
	}
	m.goBackground(func() { m.runDeleteWorker(bgCtx, cons) })
	switch {
	case m.cfg.Reconcile && m.cfg.SessionWebhookURL == "":
		m.log.Warn("reconciliation disabled: without --session-webhook-url this matchmaker cannot tell its Edgegap sessions from other apps' (it recognises its own by their webhook_url); only claimed sessions are still checked for a dead game server")
		m.goBackground(func() { m.runReconciler(bgCtx) })
	case m.cfg.Reconcile:
		m.goBackground(func() { m.runReconciler(bgCtx) })
	}

	if m.cfg.StatusInterval > 0 {
		m.goBackground(func() { m.runStatus(bgCtx) })
	}

	hookSub, err := m.nc.Subscribe(m.cfg.WebhookSubject, m.onWebhook)
	if err != nil {
		return fail(fmt.Errorf("matchmaker: subscribe %s: %w", m.cfg.WebhookSubject, err))
	}
	m.mu.Lock()
	m.hookSub = hookSub
	m.mu.Unlock()
	// Webhooks published while this connection was away are lost (core NATS, at most once):
	// after a reconnect every session waiting for readiness is checked at once, not at its
	// next fallback poll (which may come after the readiness limit ate the wait).
	reconnected := m.nc.StatusChanged(nats.CONNECTED)
	m.goBackground(func() {
		defer m.nc.RemoveStatusListener(reconnected)
		for {
			select {
			case <-bgCtx.Done():
				return
			case <-reconnected:
				if n := m.hooks.wakeAll(); n > 0 {
					m.log.Info("NATS reconnected: checking the sessions waiting for readiness now (webhooks may have been lost)", "sessions", n)
				}
			}
		}
	})

	// Like the reference, serve exactly matchmaker.request.<app>.<version> (literal, so that
	// versions with dots such as v0.0.1 work). The queue group is per game and version, so it
	// never merges with another game's subscription (NATS merges same-named queue groups across
	// all subscriptions matching a message).
	// The play-together engine (match queues, parties) before the cancels that reach it.
	if err := m.startPlay(ctx, bgCtx); err != nil {
		return fail(err)
	}
	// Cancels first: a player may leave as soon as the request subscription exists (cancel.go).
	if err := m.subscribeCancel(); err != nil {
		return fail(err)
	}
	streamSubject := m.ownStreamSubject()
	own, err := m.nc.QueueSubscribe(streamSubject, StreamQueueGroupFor(m.cfg.AppName, m.cfg.AppVersion), m.onStreamRequest)
	if err != nil {
		return fail(fmt.Errorf("matchmaker: subscribe %s: %w", streamSubject, err))
	}
	m.addSub(own)
	if m.cfg.AnswerUnknownGames {
		wild := protocol.SubjectMatchmakerRequestPrefix + ".*.*"
		sub, err := m.nc.QueueSubscribe(wild, UnknownGameQueueGroup, m.onUnknownGameRequest)
		if err != nil {
			return fail(fmt.Errorf("matchmaker: subscribe %s: %w", wild, err))
		}
		m.addSub(sub)
		streamSubject += "," + wild
		m.log.Warn("answering requests for unknown games with 404 (--answer-unknown-games): run no other game's matchmaker on this NATS, its clients could get this 404 before its answer",
			logkey.Subject, wild, "queue", UnknownGameQueueGroup)
	}
	if protocol.ValidateGameVersion(m.cfg.AppName, m.cfg.AppVersion) != nil {
		m.log.Warn("app name/version cannot be requested through the HTTP/WebSocket front door, which accepts only letters, digits, '_' and '-' (at most 30 characters); so front-door clients can never reach this matchmaker: name the Edgegap app version without dots (e.g. v0-0-1, not v0.0.1) and pass it as --app-version, or have clients publish NATS requests on the literal subject",
			"app", m.cfg.AppName, logkey.Version, m.cfg.AppVersion, logkey.Subject, m.ownStreamSubject())
	}

	svc, err := m.addGenSessionService()
	if err != nil {
		return fail(err)
	}
	m.mu.Lock()
	m.svc = svc
	m.mu.Unlock()
	if err := m.nc.FlushTimeout(5 * time.Second); err != nil {
		return fail(fmt.Errorf("matchmaker: flush subscriptions: %w", err))
	}
	m.log.Info("matchmaker ready", "app", m.cfg.AppName, logkey.Version, m.cfg.AppVersion,
		"stream_subject", streamSubject, "service", protocol.SubjectGenSession,
		"webhook_url_set", m.cfg.SessionWebhookURL != "", "token_format", m.cfg.TokenFormat.String(),
		"protocol_id", m.cfg.ProtocolID, "private_key", m.cfg.PrivateKey, "buckets_prefix", m.cfg.Buckets.Prefix)
	return nil
}

// ownStreamSubject is matchmaker.request.<AppName>.<AppVersion>, the reference's subject.
func (m *Matchmaker) ownStreamSubject() string {
	return protocol.SubjectMatchmakerRequestPrefix + "." + m.cfg.AppName + "." + m.cfg.AppVersion
}

// beginRequest counts a new in-flight request, unless shutdown has begun.
func (m *Matchmaker) beginRequest() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped {
		return false
	}
	m.inflight.Add(1)
	return true
}

func (m *Matchmaker) goBackground(f func()) {
	m.bg.Add(1)
	go func() {
		defer m.bg.Done()
		f()
	}()
}

func (m *Matchmaker) addSub(s *nats.Subscription) {
	m.mu.Lock()
	m.subs = append(m.subs, s)
	m.mu.Unlock()
}

func (m *Matchmaker) unsubscribeAll() {
	m.mu.Lock()
	subs := m.subs
	m.subs = nil
	m.mu.Unlock()
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
}

// verifyApp checks that the app and app version exist and are active.
func (m *Matchmaker) verifyApp(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.EdgegapCallTimeout)
	defer cancel()
	app, err := m.api.GetApp(cctx, m.cfg.AppName)
	if err != nil {
		return fmt.Errorf("%w: Edgegap does not know application %q: %w", ErrAppNotReady, m.cfg.AppName, err)
	}
	if !app.IsActive {
		return fmt.Errorf("%w: application %q is not active on Edgegap", ErrAppNotReady, m.cfg.AppName)
	}
	v, err := m.api.GetAppVersion(cctx, m.cfg.AppName, m.cfg.AppVersion)
	if err != nil {
		return fmt.Errorf("%w: Edgegap does not know version %q of application %q: %w", ErrAppNotReady, m.cfg.AppVersion, m.cfg.AppName, err)
	}
	if !v.Active() {
		return fmt.Errorf("%w: version %q of application %q is not active on Edgegap, sessions could not be created", ErrAppNotReady, m.cfg.AppVersion, m.cfg.AppName)
	}
	m.log.Info("Edgegap application version is active", "app", app.Name, logkey.Version, v.Name, "last_updated", app.LastUpdated)
	return nil
}

// Shutdown stops taking requests, lets in-flight requests finish for up to
// Config.ShutdownTimeout (or until ctx ends), then fails the rest cleanly (their sessions are
// queued for deletion, and stay in unclaimed_sessions for the reaper of a surviving instance
// if even that fails), and finally stops the lifecycle workers.
func (m *Matchmaker) Shutdown(ctx context.Context) error {
	m.mu.Lock()
	if m.stopped || !m.started {
		m.stopped = true
		m.mu.Unlock()
		return nil
	}
	m.stopped = true
	svc := m.svc
	m.mu.Unlock()

	var errs []error
	if svc != nil {
		if err := svc.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stop gensession service: %w", err))
		}
	}
	m.unsubscribeAll()
	m.stopPlay()

	done := make(chan struct{})
	go func() {
		m.inflight.Wait()
		close(done)
	}()
	timer := time.NewTimer(m.cfg.ShutdownTimeout)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		m.log.Warn("shutdown timeout: failing in-flight requests")
		m.reqCancel()
		<-done
	case <-ctx.Done():
		m.reqCancel()
		<-done
	}
	m.reqCancel()
	m.mu.Lock()
	hookSub := m.hookSub
	m.mu.Unlock()
	if hookSub != nil {
		_ = hookSub.Unsubscribe()
	}
	m.stopCancel()
	if m.bgCancel != nil {
		m.bgCancel()
	}
	m.bg.Wait()
	m.log.Info("matchmaker stopped")
	return errors.Join(errs...)
}

// onWebhook routes a session webhook to the waiter that owns the session, if it is ours.
func (m *Matchmaker) onWebhook(msg *nats.Msg) {
	w, err := edgegap.ParseSessionWebhook(msg.Data)
	if err != nil {
		m.log.Debug("ignoring webhook that is not a session webhook", logkey.Subject, msg.Subject, logkey.Err, err)
		return
	}
	if m.hooks.deliver(w) {
		m.met.webhooks.WithLabelValues("owned").Inc()
	} else {
		m.met.webhooks.WithLabelValues("other").Inc()
		if failedStatus(w.Status) {
			m.noteFailedHook(w.SessionID) // a claimed session's game server may have died
		}
	}
}
