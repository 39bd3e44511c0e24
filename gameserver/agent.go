package gameserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/backoff"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// Errors returned by the Agent. Test them with errors.Is.
var (
	// ErrUnknownClient means sessions_ly2eg has no session for the client id: the matchmaker never
	// issued this client a token for a session (or the 30 s mapping expired). Refuse the client.
	ErrUnknownClient = errors.New("gameserver: client id has no session")
	// ErrNATSUnavailable means the session lookup could not reach NATS / JetStream in time. The
	// client is not known to be bad; see [Agent.AuthorizeClient] for what to do.
	ErrNATSUnavailable = errors.New("gameserver: NATS unavailable")
	// ErrAlreadyConnected means a client with this id is connected already.
	ErrAlreadyConnected = errors.New("gameserver: client id already connected")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("gameserver: agent closed")
	// ErrUnflushed is returned by Close when connect/disconnect events were still pending when
	// its bound ran out.
	ErrUnflushed = errors.New("gameserver: events not written to NATS")
)

// Defaults of the Config durations and limits (used where the field is zero).
const (
	defaultAuthorizeTimeout  = time.Second
	defaultAuthorizeAttempts = 3
	defaultOpTimeout         = 5 * time.Second
	defaultRetryMin          = 100 * time.Millisecond
	defaultRetryMax          = 10 * time.Second
	defaultFlushTimeout      = 5 * time.Second
	defaultMaxPendingEvents  = 10000
	defaultUnknownGrace      = 500 * time.Millisecond
	// authorizationTTL is how long a successful AuthorizeClient is remembered (and answered from
	// memory) while the client completes its handshake. It matches the 30 s TTL of sessions_ly2eg.
	authorizationTTL = 30 * time.Second
)

// authorizeBackoff spaces the session lookups of one AuthorizeClient: 50 ms, then 100 ms (the
// default three attempts), growing to at most 200 ms.
var authorizeBackoff = backoff.Policy{Base: 50 * time.Millisecond, Max: 200 * time.Millisecond}

// Config configures an [Agent]. Only Arbitrium is required.
type Config struct {
	// Arbitrium is the deployment's environment, usually from [EnvFromEnviron].
	Arbitrium Arbitrium
	// Transport is the transport of the game server's netcode server: netcode.TransportUDP (the
	// default when empty) or netcode.TransportWebTransport. With WebTransport the agent makes a
	// self-signed certificate for the public IP (and CertHosts), serves it through TLSConfig,
	// publishes its digest in cert_digests, renews it before it expires (the new digest is
	// published before the new certificate is served) and removes the digest when it stops.
	Transport netcode.Transport
	// CertHosts are further host names or IPs for the WebTransport certificate (the public IP is
	// always in it). Browsers pin the certificate by digest, so names are optional.
	CertHosts []string
	// CertValidity and CertRenewBefore tune the WebTransport certificate (netcode.CertRotatorConfig:
	// defaults 13 days, at most 14, and renewal when less than 2 days are left).
	CertValidity, CertRenewBefore time.Duration
	// CertDigest is the digest of a certificate the game server brings itself (a UDP game server
	// leaves it empty; with Transport WebTransport the agent makes the certificate and this must
	// stay empty). When set, it is stored in cert_digests like the agent's own digest: under the
	// public IP (bevygap_server_plugin's key) and the deployment key of
	// protocol.CertDigestDeploymentKey, and removed when the agent stops.
	CertDigest string
	// Buckets names the KV buckets: Prefix must match the matchmaker's (empty, the default, gives
	// the reference's names). Replicas and Memory only matter when the agent has to create a
	// missing bucket; existing buckets are used as they are.
	Buckets bus.BucketOptions
	// Edgegap is the client for the context and self-stop calls. Nil: a client with
	// edgegap's default timeouts, retries and User-Agent.
	Edgegap *edgegap.Client
	// IdleTimeout enables idle self-destruct: when no client has been connected (or authorized)
	// for this long, the agent DELETEs ARBITRIUM_DELETE_URL once. Zero disables it. Keep it well
	// above the time a player needs from matchmaking to connecting (minutes, not seconds).
	IdleTimeout time.Duration
	// AuthorizeTimeout bounds each session lookup attempt of AuthorizeClient (default 1 s).
	AuthorizeTimeout time.Duration
	// AuthorizeAttempts is how many lookups AuthorizeClient makes on transient NATS errors
	// (default 3). While NATS is disconnected it waits for the reconnect instead, for at most
	// AuthorizeAttempts × AuthorizeTimeout.
	AuthorizeAttempts int
	// UnknownClientGrace is how long AuthorizeClient keeps re-reading a client id that
	// sessions_ly2eg does not have (default 0.5 s; negative: refuse at the first miss). Lookups
	// are direct gets that any replica may answer, and one that lags (right after a NATS node
	// restart) misses the matchmaker's fresh write for a moment.
	UnknownClientGrace time.Duration
	// OpTimeout bounds each background NATS operation attempt (default 5 s).
	OpTimeout time.Duration
	// RetryMin and RetryMax bound the exponential backoff of background retries
	// (defaults 100 ms and 10 s).
	RetryMin, RetryMax time.Duration
	// FlushTimeout bounds how long Run keeps writing pending events after its context ends
	// (default 5 s).
	FlushTimeout time.Duration
	// MaxPendingEvents caps the connect/disconnect events buffered while NATS is unreachable
	// (default 10000). Events beyond it are dropped and logged as errors.
	MaxPendingEvents int
	// Game and Version are the matchmaker's game and version (its Edgegap app name and
	// version), the last tokens of matchmaker.backfill.<game>.<version>. Only
	// [Agent.RequestBackfill] needs them.
	Game, Version string
}

func (c Config) withDefaults() Config {
	if c.AuthorizeTimeout <= 0 {
		c.AuthorizeTimeout = defaultAuthorizeTimeout
	}
	if c.AuthorizeAttempts <= 0 {
		c.AuthorizeAttempts = defaultAuthorizeAttempts
	}
	if c.OpTimeout <= 0 {
		c.OpTimeout = defaultOpTimeout
	}
	if c.RetryMin <= 0 {
		c.RetryMin = defaultRetryMin
	}
	if c.RetryMax <= 0 {
		c.RetryMax = defaultRetryMax
	}
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.FlushTimeout <= 0 {
		c.FlushTimeout = defaultFlushTimeout
	}
	if c.MaxPendingEvents <= 0 {
		c.MaxPendingEvents = defaultMaxPendingEvents
	}
	if c.UnknownClientGrace == 0 {
		c.UnknownClientGrace = defaultUnknownGrace
	}
	return c
}

func (c Config) validate() error {
	var problems []string
	a := c.Arbitrium
	if a.ContextURL == "" {
		problems = append(problems, "Arbitrium.ContextURL is empty")
	}
	if a.ContextToken == "" {
		problems = append(problems, "Arbitrium.ContextToken is empty")
	}
	if c.CertDigest != "" && !a.PublicIP.IsValid() {
		problems = append(problems, "CertDigest is set but Arbitrium.PublicIP is not")
	}
	switch c.Transport {
	case "", netcode.TransportUDP:
	case netcode.TransportWebTransport:
		if !a.PublicIP.IsValid() {
			problems = append(problems, "Transport is webtransport but Arbitrium.PublicIP is not set")
		}
		if c.CertDigest != "" {
			problems = append(problems, "Transport is webtransport: the agent makes the certificate, leave CertDigest empty")
		}
	default:
		problems = append(problems, fmt.Sprintf("Transport %q is neither udp nor webtransport", c.Transport))
	}
	if c.IdleTimeout > 0 && (a.DeleteURL == "" || a.DeleteToken == "") {
		problems = append(problems, "IdleTimeout is set but Arbitrium.DeleteURL or DeleteToken is empty")
	}
	if bus.ValidatePrefix(c.Buckets.Prefix) != nil {
		problems = append(problems, "Buckets.Prefix may only have letters, digits, '_' and '-'")
	}
	if c.IdleTimeout < 0 {
		problems = append(problems, "IdleTimeout is negative")
	}
	if (c.Game != "" || c.Version != "") && protocol.ValidateGameVersion(c.Game, c.Version) != nil {
		problems = append(problems, "Game and Version must both be valid names (letters, digits, '_' and '-', at most 30)")
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %v", ErrConfig, problems)
	}
	return nil
}

// eventKind says what happened to a client.
type eventKind uint8

const (
	eventConnect eventKind = iota + 1
	eventDisconnect
)

func (k eventKind) String() string {
	if k == eventConnect {
		return "connect"
	}
	return "disconnect"
}

// event is a connect or disconnect waiting to be written to active_connections.
type event struct {
	kind     eventKind
	clientID uint64
	// sessionID is known when AuthorizeClient resolved it; empty means "look it up".
	sessionID string
}

// authorization is a successful AuthorizeClient, remembered until the client connects.
type authorization struct {
	sessionID string
	at        time.Time
}

// Agent connects one game server to bevygap: it publishes the deployment's context, stores the
// certificate digest, answers "may this client connect?" for the netcode server and records who is
// connected in active_connections, so that the matchmaker deletes the Edgegap session when its
// player leaves. Optionally it deletes its own deployment when idle.
//
// Create it with [New], start it with [Agent.Run], stop it with [Agent.Close]. The hook methods
// (AuthorizeClient, ClientConnected, ClientDisconnected) are safe for concurrent use and may be
// called before Run; ClientConnected and ClientDisconnected never block on the network.
//
// NATS trouble never stops the agent: writes are retried with backoff, connect/disconnect events
// wait in an in-memory queue and are written in the order they happened once NATS is back, and
// every outage and recovery is logged.
type Agent struct {
	cfg Config
	nc  natsConn
	js  jetstream.JetStream
	eg  *edgegap.Client
	log *slog.Logger

	bmu sync.Mutex // guards bk; held while opening the buckets
	bk  *bus.GameServerBuckets

	// pmu serialises event processing (the worker, or a flush after it stopped).
	pmu sync.Mutex
	// applied maps a client id to its session id once the connect was written, and
	// sessionClients counts those clients per session id (owned by the event processor,
	// guarded by pmu): a session shared by several players (match kind) keeps its
	// active_connections entry until the last of them leaves.
	applied        map[uint64]string
	sessionClients map[string]int

	mu         sync.Mutex
	authorized map[uint64]authorization
	connected  map[uint64]string // client id -> session id ("" if not resolved yet)
	emptySince time.Time         // when the server last became empty; zero while someone is connected
	queue      []event
	dropped    uint64
	running    bool
	closed     bool
	deployment *edgegap.Deployment

	wake     chan struct{} // an event was queued
	activity chan struct{} // connected count or authorizations changed (idle timer)
	stop     chan struct{} // closed by Close
	done     chan struct{} // closed when Run returns
	// closeDone is closed when Close has flushed (or given up on) the queue.
	closeDone chan struct{}
	ready     chan struct{} // closed when the context is published and the digest stored

	// The certificate digest (certdigest.go).
	rotator      *netcode.CertRotator // WebTransport only
	ipKey        string               // cert_digests key of the public IP ("" for IPv6)
	depKey       string               // cert_digests key of this deployment
	depFilter    string               // matches the deployment keys of the public IP
	digestStored chan struct{}        // closed when the boot digest is stored
	dmu          sync.Mutex
	digest       digestState
}

// natsConn is what the agent uses of its NATS connection: a *nats.Conn, or an in-memory fake
// that lets tests run the agent on fake time.
type natsConn interface {
	IsConnected() bool
	IsClosed() bool
	Publish(subject string, data []byte) error
	FlushWithContext(ctx context.Context) error
}

// New returns an Agent for the deployment described by cfg, using nc for NATS (nc stays the
// caller's: the agent never closes it; create it with bus.Connect so that it reconnects forever).
// It returns an error matching ErrConfig when cfg is unusable. New does no I/O.
func New(cfg Config, nc *nats.Conn, log *slog.Logger) (*Agent, error) {
	if nc == nil {
		return nil, fmt.Errorf("%w: nil NATS connection", ErrConfig)
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("%w: jetstream: %w", ErrConfig, err)
	}
	return newAgent(cfg, nc, js, nil, log)
}

// newAgent builds an agent for a checked cfg. bk, when not nil, are the buckets to use (js is
// then not needed); otherwise they are opened through js on first use.
func newAgent(cfg Config, nc natsConn, js jetstream.JetStream, bk *bus.GameServerBuckets, log *slog.Logger) (*Agent, error) {
	cfg = cfg.withDefaults()
	if log == nil {
		log = slog.Default()
	}
	log = log.With(logkey.Component, "gameserver")
	eg := cfg.Edgegap
	if eg == nil {
		eg = edgegap.NewClient("", "", edgegap.WithLogger(log))
	}
	a := &Agent{
		cfg:        cfg,
		nc:         nc,
		js:         js,
		bk:         bk,
		eg:         eg,
		log:        log,
		applied:    make(map[uint64]string),
		authorized: make(map[uint64]authorization),
		connected:  make(map[uint64]string),
		emptySince: time.Now(),
		wake:       make(chan struct{}, 1),
		activity:   make(chan struct{}, 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		closeDone:  make(chan struct{}),
		ready:      make(chan struct{}),

		digestStored:   make(chan struct{}),
		sessionClients: make(map[string]int),
	}
	if err := a.initCert(); err != nil {
		return nil, err
	}
	return a, nil
}

// Ready is closed once the deployment context has been published on gameserver.contexts and the
// certificate digest (if any) stored: the equivalent of the Rust plugin's BevygapReady event.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// Deployment returns the deployment context fetched from ARBITRIUM_CONTEXT_URL, once Run has
// fetched it.
func (a *Agent) Deployment() (edgegap.Deployment, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.deployment == nil {
		return edgegap.Deployment{}, false
	}
	return *a.deployment, true
}

// Connected returns how many clients are connected (as reported through ClientConnected and
// ClientDisconnected).
func (a *Agent) Connected() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.connected)
}

// pending returns how many connect/disconnect events wait to be written to NATS.
func (a *Agent) pending() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.queue)
}

// AuthorizeClient answers a netcode connection request: it returns the Edgegap session id the
// matchmaker stored for clientID in sessions_ly2eg, or an error saying why the client must not
// be let in. Unlike the Rust plugin (which accepted everyone), it never admits a client it could
// not check:
//
//   - ErrUnknownClient: no session for this client id (the client did not come through the
//     matchmaker, or came after the 30 s mapping expired). Deny: netcode "invalid token". A
//     missing key is read again for UnknownClientGrace (0.5 s) before the refusal: a replica
//     that lags behind the matchmaker's write answers "no key" for a moment.
//   - ErrAlreadyConnected: a client with this id is connected. Deny: "already connected".
//   - ErrNATSUnavailable: the lookup failed AuthorizeAttempts times (each bounded by
//     AuthorizeTimeout and by ctx; transient errors are retried with a short backoff), or NATS
//     stayed disconnected for AuthorizeAttempts × AuthorizeTimeout (while it reconnects the
//     call waits rather than failing at once). The
//     client is not known to be bad, but cannot be checked. Policy: refuse it. A netcode
//     server that can stay silent should drop the request, so the client's own retransmissions
//     (several per second until its token expires) try again once NATS answers; a server that
//     must answer (like package netcode's OnConnectRequest) denies with "internal error", and
//     the player asks the matchmaker again.
//   - ErrClosed: the agent is shutting down. Deny: "internal error".
//
// A successful answer is remembered for 30 s, so the repeated connection requests of one
// handshake cost one lookup. The call may block for up to AuthorizeAttempts × AuthorizeTimeout
// (about 3 s by default; less than package netcode's 5 s hook timeout), so call it off the
// packet loop, as package netcode does with OnConnectRequest.
func (a *Agent) AuthorizeClient(ctx context.Context, clientID uint64) (string, error) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return "", ErrClosed
	}
	if _, ok := a.connected[clientID]; ok {
		a.mu.Unlock()
		return "", fmt.Errorf("%w: client %d", ErrAlreadyConnected, clientID)
	}
	if au, ok := a.authorized[clientID]; ok && time.Since(au.at) < authorizationTTL {
		a.mu.Unlock()
		return au.sessionID, nil
	}
	a.mu.Unlock()

	key := strconv.FormatUint(clientID, 10)
	var lastErr error
	b := authorizeBackoff.Start()
	// NATS trouble: AuthorizeAttempts lookups, and waiting for a reconnect, within this bound.
	deadline := time.Now().Add(time.Duration(a.cfg.AuthorizeAttempts) * a.cfg.AuthorizeTimeout)
	var missedUntil time.Time // set at the first miss: re-read until then
	for attempt := 0; ; {
		if !a.nc.IsConnected() && !a.waitConnectedUntil(ctx, deadline) {
			if lastErr == nil {
				lastErr = errNotConnected
			}
			break
		}
		sessionID, err := a.lookupSession(ctx, key, a.cfg.AuthorizeTimeout)
		if err == nil {
			a.rememberAuthorization(clientID, sessionID)
			a.log.InfoContext(ctx, "client authorized", logkey.ClientID, clientID, logkey.SessionID, sessionID)
			return sessionID, nil
		}
		if errors.Is(err, ErrUnknownClient) {
			now := time.Now()
			if missedUntil.IsZero() {
				missedUntil = now.Add(a.cfg.UnknownClientGrace)
			}
			if !errors.Is(err, errNoKey) || !now.Before(missedUntil) ||
				backoff.Sleep(ctx, min(b.Next(), missedUntil.Sub(now))) != nil {
				a.log.WarnContext(ctx, "refusing client: no session for its client id", logkey.ClientID, clientID)
				return "", fmt.Errorf("%w: client %d", ErrUnknownClient, clientID)
			}
			continue
		}
		lastErr = err
		if errors.Is(err, errNotConnected) && time.Now().Before(deadline) {
			continue // disconnected since the check: wait for the reconnect
		}
		if attempt++; attempt >= a.cfg.AuthorizeAttempts || ctx.Err() != nil {
			break
		}
		if b.Wait(ctx) != nil {
			break
		}
	}
	a.log.WarnContext(ctx, "cannot check client: NATS unavailable; dropping its connection request so it retries",
		logkey.ClientID, clientID, logkey.Err, lastErr)
	return "", fmt.Errorf("%w: session lookup for client %d: %w", ErrNATSUnavailable, clientID, lastErr)
}

// waitConnectedUntil polls the connection state until nc is connected. It reports false when
// deadline passed or ctx ended first.
func (a *Agent) waitConnectedUntil(ctx context.Context, deadline time.Time) bool {
	const step = 50 * time.Millisecond
	for !a.nc.IsConnected() {
		left := time.Until(deadline)
		if left <= 0 || backoff.Sleep(ctx, min(step, left)) != nil {
			return false
		}
	}
	return true
}

// lookupSession reads sessions_ly2eg[key] with one attempt bounded by timeout.
func (a *Agent) lookupSession(ctx context.Context, key string, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if !a.nc.IsConnected() {
		return "", errNotConnected
	}
	bk, err := a.buckets(ctx)
	if err != nil {
		return "", err
	}
	entry, err := bk.SessionsLy2Eg.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", errNoKey
	}
	if err != nil {
		return "", fmt.Errorf("get %s[%s]: %w", bk.SessionsLy2Eg.Bucket(), key, err)
	}
	if len(entry.Value()) == 0 {
		return "", ErrUnknownClient
	}
	if !bus.ValidSessionID(string(entry.Value())) {
		a.log.Error("sessions_ly2eg holds a value that cannot be a session id; refusing the client", logkey.ClientID, key)
		return "", ErrUnknownClient
	}
	return string(entry.Value()), nil
}

// errNotConnected is the transient error of an operation tried while nc is (re)connecting.
var errNotConnected = errors.New("not connected to NATS")

// errNoKey is the ErrUnknownClient of a lookup that found no key at all (rather than a bad
// value): a lagging replica can answer so for a moment, so AuthorizeClient reads again.
var errNoKey = fmt.Errorf("%w (no key)", ErrUnknownClient)

func (a *Agent) rememberAuthorization(clientID uint64, sessionID string) {
	now := time.Now()
	a.mu.Lock()
	for id, au := range a.authorized {
		if now.Sub(au.at) >= authorizationTTL {
			delete(a.authorized, id)
		}
	}
	a.authorized[clientID] = authorization{sessionID: sessionID, at: now}
	if len(a.connected) == 0 {
		// A player on the way in counts as activity for the idle timer.
		a.emptySince = now
	}
	a.mu.Unlock()
	notify(a.activity)
}

// ClientConnected records that the netcode server accepted clientID. It never blocks: the
// active_connections write is queued and done in the background, in order with every other
// event, retried until NATS takes it.
func (a *Agent) ClientConnected(clientID uint64) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		a.log.Error("client connected after Close; not recorded", logkey.ClientID, clientID)
		return
	}
	if _, dup := a.connected[clientID]; dup {
		a.mu.Unlock()
		a.log.Warn("client connected twice; ignoring the second report", logkey.ClientID, clientID)
		return
	}
	sessionID := a.authorized[clientID].sessionID
	delete(a.authorized, clientID)
	a.connected[clientID] = sessionID
	a.emptySince = time.Time{}
	a.enqueueLocked(event{kind: eventConnect, clientID: clientID, sessionID: sessionID})
	a.mu.Unlock()
	notify(a.activity)
}

// ClientDisconnected records that clientID left. It never blocks: the active_connections delete
// (which tells the matchmaker to delete the Edgegap session) is queued behind earlier events.
// A client that was never reported connected is ignored.
func (a *Agent) ClientDisconnected(clientID uint64) {
	a.mu.Lock()
	if a.closed && a.isDone() {
		a.mu.Unlock()
		a.log.Error("client disconnected after Close; not recorded", logkey.ClientID, clientID)
		return
	}
	sessionID, ok := a.connected[clientID]
	if !ok {
		a.mu.Unlock()
		a.log.Warn("disconnect of a client that was not connected; ignoring", logkey.ClientID, clientID)
		return
	}
	delete(a.connected, clientID)
	if len(a.connected) == 0 {
		a.emptySince = time.Now()
	}
	a.enqueueLocked(event{kind: eventDisconnect, clientID: clientID, sessionID: sessionID})
	a.mu.Unlock()
	notify(a.activity)
}

// isDone reports whether Close has finished with the queue (a.mu held). Until then a disconnect
// reported during shutdown is still written.
func (a *Agent) isDone() bool {
	select {
	case <-a.closeDone:
		return true
	default:
		return false
	}
}

// enqueueLocked appends ev to the queue; a.mu must be held.
func (a *Agent) enqueueLocked(ev event) {
	if len(a.queue) >= a.cfg.MaxPendingEvents {
		a.dropped++
		a.log.Error("too many events waiting for NATS; dropping one", "event", ev.kind.String(),
			logkey.ClientID, ev.clientID, "pending", len(a.queue), "dropped_total", a.dropped)
		return
	}
	a.queue = append(a.queue, ev)
	notify(a.wake)
}

// Run does the agent's work until ctx ends or Close is called: it stores the certificate digest,
// fetches and publishes the deployment context, writes connect/disconnect events to NATS and runs
// the idle self-destruct timer. When it stops, it keeps writing pending events for at most
// FlushTimeout. It returns nil after a normal stop, and an error matching ErrConfig when the
// context API rejects this deployment's URL or token (the process should exit). Run may be
// called once.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	if a.running {
		a.mu.Unlock()
		return errors.New("gameserver: Run called twice")
	}
	a.running = true
	if len(a.connected) == 0 {
		a.emptySince = time.Now() // the idle timer starts with Run
	}
	a.mu.Unlock()
	defer close(a.done)

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.log.InfoContext(ctx, "game server agent starting", "arbitrium", a.cfg.Arbitrium,
		"transport", a.Transport(), "cert_digest", a.CertDigest(), "idle_timeout", a.cfg.IdleTimeout)

	fatal := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Go(func() { a.processEvents(runCtx, false) })
	wg.Go(func() {
		if err := a.boot(runCtx); err != nil && errors.Is(err, ErrConfig) {
			fatal <- err
		}
	})
	if a.cfg.IdleTimeout > 0 {
		wg.Go(func() { a.idleSelfDestruct(runCtx) })
	}
	if a.rotator != nil {
		wg.Go(func() { a.runRotator(runCtx) })
	}

	var err error
	select {
	case <-runCtx.Done():
	case <-a.stop:
	case err = <-fatal:
		a.log.ErrorContext(ctx, "unrecoverable configuration error; stopping", logkey.Err, err)
	}
	cancel()
	wg.Wait()

	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.FlushTimeout)
	defer fcancel()
	if left := a.processEvents(fctx, true); left > 0 {
		a.log.Error("stopping with events not written to NATS", "pending", left)
	}
	if derr := a.removeCertDigests(fctx); derr != nil {
		a.log.Error("stopping with the cert digest left in cert_digests (it expires with the bucket's TTL)", logkey.Err, derr)
	}
	return err
}

// Close stops Run (if running) and waits, at most until ctx ends, for it to flush pending events;
// without Run it writes them itself within ctx. It returns an error matching ErrUnflushed when
// events are left over. After Close the hooks refuse new clients. Close never closes the NATS
// connection.
func (a *Agent) Close(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	running := a.running
	a.mu.Unlock()
	close(a.stop)
	defer close(a.closeDone)

	if running {
		select {
		case <-a.done:
		case <-ctx.Done():
			return fmt.Errorf("%w: %d pending: %w", ErrUnflushed, a.pending(), ctx.Err())
		}
	}
	// Without Run, or for events reported after Run finished its own flush.
	a.processEvents(ctx, true)
	if n := a.pending(); n > 0 {
		return fmt.Errorf("%w: %d pending", ErrUnflushed, n)
	}
	return nil
}

// processEvents writes queued events in order, each retried until it succeeds, fails
// permanently or ctx ends. With untilEmpty it returns when the queue is empty; otherwise it
// waits for more until ctx ends. It returns the number of events left.
func (a *Agent) processEvents(ctx context.Context, untilEmpty bool) int {
	a.pmu.Lock()
	defer a.pmu.Unlock()
	for {
		a.mu.Lock()
		n := len(a.queue)
		var ev event
		if n > 0 {
			ev = a.queue[0]
		}
		a.mu.Unlock()
		if n == 0 {
			if untilEmpty {
				return 0
			}
			select {
			case <-ctx.Done():
				return a.pending()
			case <-a.wake:
				continue
			}
		}
		if err := a.applyWithRetry(ctx, ev); err != nil {
			// ctx ended or nc was closed; ev stays at the head of the queue.
			return a.pending()
		}
		a.mu.Lock()
		a.queue[0] = event{}
		a.queue = a.queue[1:]
		if len(a.queue) == 0 {
			a.queue = nil // let the backing array go after an outage
		}
		a.mu.Unlock()
	}
}

// applyWithRetry writes ev, retrying transient failures with backoff. It returns nil when ev is
// done (written, or dropped after a permanent failure), and an error when ctx ended first or the
// NATS connection was closed (ev stays queued).
func (a *Agent) applyWithRetry(ctx context.Context, ev event) error {
	err := a.retry(ctx, "write "+ev.kind.String()+" event", func(ctx context.Context) error {
		return a.applyEvent(ctx, ev)
	}, slog.Uint64(logkey.ClientID, ev.clientID), slog.String("note", "the game goes on; events stay queued in order until NATS is back"))
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, nats.ErrConnectionClosed) {
		a.log.Error("NATS connection closed; events cannot be written any more", "pending", a.pending())
		return err
	}
	if err != nil {
		a.log.Error("dropping event that cannot be written", "event", ev.kind.String(), logkey.ClientID, ev.clientID, logkey.Err, err)
	}
	return nil
}

// applyEvent makes one attempt at writing ev.
func (a *Agent) applyEvent(ctx context.Context, ev event) error {
	if !a.nc.IsConnected() {
		return errNotConnected
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.OpTimeout)
	defer cancel()
	bk, err := a.buckets(ctx)
	if err != nil {
		return err
	}
	switch ev.kind {
	case eventConnect:
		sessionID := ev.sessionID
		if sessionID == "" {
			sessionID, err = a.lookupSession(ctx, strconv.FormatUint(ev.clientID, 10), a.cfg.OpTimeout)
			if errors.Is(err, ErrUnknownClient) {
				return backoff.Permanent(fmt.Errorf("connected client %d has no session in %s; it was never authorized",
					ev.clientID, bk.SessionsLy2Eg.Bucket()))
			}
			if err != nil {
				return err
			}
		}
		if others := a.sessionClients[sessionID]; others > 0 {
			// A session shared by several players (match kind): claimed by its first player.
			a.log.Info("client connected to a session already claimed", logkey.ClientID, ev.clientID,
				logkey.SessionID, sessionID, "players", others+1)
		} else {
			if _, err := bk.ActiveConnections.Put(ctx, sessionID, []byte(strconv.FormatUint(ev.clientID, 10))); err != nil {
				return classifyKV(fmt.Errorf("put %s[%s]: %w", bk.ActiveConnections.Bucket(), sessionID, err))
			}
			a.log.Info("client connected; session claimed", logkey.ClientID, ev.clientID, logkey.SessionID, sessionID)
		}
		a.applied[ev.clientID] = sessionID
		a.sessionClients[sessionID]++
	case eventDisconnect:
		sessionID := ev.sessionID
		if sessionID == "" {
			sessionID = a.applied[ev.clientID]
		}
		if sessionID == "" {
			return backoff.Permanent(fmt.Errorf("disconnected client %d has no known session", ev.clientID))
		}
		others := a.sessionClients[sessionID]
		if a.applied[ev.clientID] == sessionID && others > 0 {
			others-- // this client's own connect was written
		}
		if others > 0 {
			// Other players of the same session are still connected: keep the claim.
			a.forgetApplied(ev.clientID)
			a.log.Info("client disconnected; session kept for its other players", logkey.ClientID, ev.clientID,
				logkey.SessionID, sessionID, "players_left", others)
			return nil
		}
		if err := bk.ActiveConnections.Delete(ctx, sessionID); err != nil {
			return classifyKV(fmt.Errorf("delete %s[%s]: %w", bk.ActiveConnections.Bucket(), sessionID, err))
		}
		a.forgetApplied(ev.clientID)
		a.log.Info("client disconnected; session released", logkey.ClientID, ev.clientID, logkey.SessionID, sessionID)
	}
	return nil
}

// forgetApplied drops clientID's written connect (a.pmu held).
func (a *Agent) forgetApplied(clientID uint64) {
	sid, ok := a.applied[clientID]
	if !ok {
		return
	}
	delete(a.applied, clientID)
	if a.sessionClients[sid]--; a.sessionClients[sid] <= 0 {
		delete(a.sessionClients, sid)
	}
}

// buckets opens the KV buckets on first use.
func (a *Agent) buckets(ctx context.Context) (*bus.GameServerBuckets, error) {
	a.bmu.Lock()
	defer a.bmu.Unlock()
	if a.bk != nil {
		return a.bk, nil
	}
	bk, err := bus.OpenGameServer(ctx, a.js, a.cfg.Buckets)
	if err != nil {
		return nil, err
	}
	a.bk = bk
	return bk, nil
}

// classifyKV marks KV errors that retrying cannot fix as permanent.
func classifyKV(err error) error {
	if errors.Is(err, jetstream.ErrInvalidKey) || errors.Is(err, nats.ErrMaxPayload) {
		return backoff.Permanent(err)
	}
	return err
}

// errNATSClosed stops a retry: a closed nats.Conn never comes back.
var errNATSClosed = errors.New("NATS connection closed")

// retry runs op until it succeeds, fails permanently ([backoff.Permanent]) or ctx ends, with exponential
// backoff between RetryMin and RetryMax. While NATS is disconnected it waits for nats.go to
// reconnect instead, then starts the backoff afresh; once the connection is closed for good it
// gives up with nats.ErrConnectionClosed. Failures are logged at WARN (the first, then at
// growing intervals) and a success after failures is logged at INFO, so an outage and its end
// show in the log.
func (a *Agent) retry(ctx context.Context, what string, op func(context.Context) error, attrs ...any) error {
	policy := backoff.Policy{Base: a.cfg.RetryMin, Max: a.cfg.RetryMax}
	failures := 0
	var firstFailure time.Time
	var lastErr error
	for {
		// One run of the backoff. It is stopped early (with a cause) when waiting cannot help:
		// NATS is disconnected (wait for the reconnect instead) or closed.
		runCtx, stop := context.WithCancelCause(ctx)
		err := backoff.Retry(runCtx, policy, func(ctx context.Context) error {
			lastErr = op(ctx)
			return lastErr
		}, func(_ int, wait time.Duration, err error) {
			failures++
			if failures == 1 {
				firstFailure = time.Now()
			}
			switch {
			case a.nc.IsClosed():
				stop(errNATSClosed)
				return
			case errors.Is(err, errNotConnected):
				stop(errNotConnected)
			}
			if failures&(failures-1) == 0 { // 1, 2, 4, 8, …
				a.log.Warn(what+": failed; retrying with backoff",
					append(attrs, logkey.Attempt, failures, logkey.RetryIn, wait, "pending_events", a.pending(), logkey.Err, err)...)
			}
		})
		cause := context.Cause(runCtx)
		stop(nil)
		switch {
		case err == nil:
			if failures > 0 {
				a.log.Info(what+": succeeded after retries", append(attrs, "attempts", failures+1,
					"outage", time.Since(firstFailure).Round(time.Millisecond))...)
			}
			return nil
		case ctx.Err() != nil:
			return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), lastErr)
		case cause == errNATSClosed:
			// Whoever closed the connection is shutting down.
			return fmt.Errorf("%s: %w", what, nats.ErrConnectionClosed)
		case cause == errNotConnected:
			// nats.go reconnects on its own; once it has, buffered events go out at once.
			if !a.waitConnected(ctx, a.cfg.RetryMax) {
				return fmt.Errorf("%s: %w (last error: %w)", what, ctx.Err(), lastErr)
			}
			continue
		}
		return err // permanent
	}
}

// waitConnected polls the connection state until nc is connected, at most for d. It reports
// false only when ctx ended.
func (a *Agent) waitConnected(ctx context.Context, d time.Duration) bool {
	step := min(a.cfg.RetryMin, 100*time.Millisecond)
	deadline := time.Now().Add(d)
	for !a.nc.IsConnected() && time.Now().Before(deadline) {
		if backoff.Sleep(ctx, step) != nil {
			return false
		}
	}
	return ctx.Err() == nil
}

// notify does a non-blocking send on a 1-buffered channel.
func notify(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
