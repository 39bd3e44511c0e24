package matchmaker

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
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

// requestError is a failed session request: an HTTP-like code and a message for the client.
// It never holds a secret. It stays inside the package: clients see code and message on the
// wire (service error headers, {"Error":[code,msg]}).
type requestError struct {
	Code    uint16
	Message string
	// Err is the cause, for logs.
	Err error
}

func (e *requestError) Error() string {
	return strconv.Itoa(int(e.Code)) + " " + e.Message
}

func (e *requestError) Unwrap() error { return e.Err }

func reqErr(code uint16, msg string, cause error) *requestError {
	return &requestError{Code: code, Message: msg, Err: cause}
}

// grant is one granted session: what the client needs to connect.
type grant struct {
	sessionID string
	clientID  uint64
	// ready is the SessionReady payload without its token (see sessionReady): the token is
	// encoded where it is sent (the gensession reply writes it straight into its buffer).
	ready protocol.SessionReady
	token *netcode.ConnectToken
}

// sessionReady is the complete SessionReady payload, the token's base64 included.
func (g *grant) sessionReady() protocol.SessionReady {
	r := g.ready
	r.Token = g.token.Base64()
	return r
}

// progressFunc receives streaming feedback; nil for the one-shot service.
type progressFunc func(protocol.Feedback)

// parseClientIP checks a client_ip value.
func parseClientIP(s string) (netip.Addr, *requestError) {
	if s == "" {
		return netip.Addr{}, reqErr(http.StatusBadRequest, "missing client_ip", nil)
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, reqErr(http.StatusBadRequest, "client_ip is not an IP address", err)
	}
	return ip.Unmap(), nil
}

// requestSession runs the whole flow for one client: admission, create, track, wait, token,
// KV mappings, and calls done with the outcome, from a goroutine of the request's own. While
// the request waits for admission it holds no goroutine (thousands of players may wait). On
// any failure after the session exists, the session is queued for deletion. pr (nil for
// session.gensession) is the request a cancel can reach: its context is ctx, and it learns the
// request's phase (cancel.go).
func (m *Matchmaker) requestSession(ctx context.Context, pr *plainRequest, clientIP netip.Addr, progress progressFunc, done func(*grant, *requestError)) {
	var report func(int)
	if progress != nil {
		report = func(pos int) { progress(protocol.Progress("Queued: position " + strconv.Itoa(pos))) }
	}
	m.met.queued.Inc()
	m.admit.enqueue(ctx, report, func(err error) {
		m.met.queued.Dec()
		go func() {
			growStack(0) // the stack a grant needs, grown while shallow (stack.go)
			if err == nil && ctx.Err() != nil {
				m.admit.release()
				err = ctx.Err()
			}
			if err != nil {
				done(nil, m.contextError(ctx, err))
				return
			}
			g, rerr := m.admittedSession(ctx, pr, clientIP, progress)
			m.admit.release()
			done(g, rerr)
		}()
	})
}

// admittedSession is the flow of requestSession after admission.
//
// The Edgegap create is not tied to the request's context: once sent, Edgegap may create the
// session whether or not we wait for the answer, and a create cut short by the player leaving
// (or by a shutdown) would leave us without the id of a billed session that only
// reconciliation could find. So the create runs to its answer (bounded by EdgegapCallTimeout),
// and a session created for a request that has ended meanwhile is abandoned at once.
func (m *Matchmaker) admittedSession(ctx context.Context, pr *plainRequest, clientIP netip.Addr, progress progressFunc) (*grant, *requestError) {
	// The request's own context: the timeouts of its calls hang off it rather than off the
	// matchmaker's shared request context, whose lock every request would otherwise take for
	// each of them (contention under load).
	ctx, cancelReq := context.WithCancel(ctx)
	defer cancelReq()
	send := func(f protocol.Feedback) {
		if progress != nil {
			progress(f)
		}
	}

	pr.setPhase(phaseCreating)
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.cfg.EdgegapCallTimeout)
	m.status.Creating(1)
	created, err := m.api.CreateSession(cctx, edgegap.SessionCreateRequest{
		AppName:    m.cfg.AppName,
		IPList:     []string{clientIP.String()},
		WebhookURL: m.cfg.SessionWebhookURL,
	})
	m.status.Creating(-1)
	cancel()
	if err != nil {
		return nil, m.contextOr(ctx, m.edgegapError("session create", err))
	}
	sid := created.SessionID
	pr.setPhase(phaseWaiting)
	if !bus.ValidSessionID(sid) {
		// Cannot be a KV key or subject token: delete right away, directly.
		m.deleteDirectly(sid)
		return nil, reqErr(http.StatusBadGateway, "Edgegap returned an unusable session id", nil)
	}
	// Record the session before anything else can fail: from here on, a crash of this process
	// leaves an unclaimed_sessions entry that any matchmaker's reaper will delete.
	rev, err := m.trackUnclaimed(sid)
	if err != nil {
		m.log.Error("could not record session in unclaimed_sessions; deleting it now", logkey.SessionID, sid, logkey.Err, err)
		m.deleteDirectly(sid)
		return nil, reqErr(http.StatusServiceUnavailable, "session store unavailable", err)
	}
	// The readiness limit counts from here, as the reaper's deadline does (the entry's write):
	// a NATS failover can hold that write for several seconds (a stream-leader election), which
	// must not eat the session's time to become ready.
	createdAt := time.Now()
	if ctx.Err() != nil {
		// The player left (or the matchmaker is shutting down) while the session was created.
		rerr := m.contextError(ctx, ctx.Err())
		m.giveUp(ctx, pr, sid, rev, "request ended during the create: "+rerr.Message)
		return nil, rerr
	}
	send(protocol.Accepted(sid))

	g, rerr := m.finishSession(ctx, sid, tracked{rev: rev, created: createdAt}, clientIP, send)
	if rerr == nil && isAbandoned(ctx) {
		// Left while the token was made: nobody will claim the session.
		rerr = abandonedError()
	}
	if rerr != nil {
		m.giveUp(ctx, pr, sid, rev, "request failed: "+rerr.Message)
		return nil, rerr
	}
	return g, nil
}

// giveUp gives up the session of a request that ended without a grant. The session of a
// player who went away is deleted at once, from the request's own goroutine (still holding
// its admission slot, so at most MaxConcurrentCreates at a time): a burst of leavers would
// otherwise wait in line for the delete queue's few workers. If that DELETE fails, or for any
// other failure, the session is queued for deletion (abandon).
func (m *Matchmaker) giveUp(ctx context.Context, pr *plainRequest, sid string, rev uint64, reason string) {
	if isAbandoned(ctx) && m.deleteAbandoned(pr, sid) {
		return
	}
	m.abandon(sid, rev, reason)
}

// deleteAbandoned deletes the session of an abandoned request on Edgegap and drops its
// unclaimed_sessions entry; false if the DELETE failed (the entry stays). It observes the time
// from the cancel to the deletion.
func (m *Matchmaker) deleteAbandoned(pr *plainRequest, sid string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.EdgegapCallTimeout)
	defer cancel()
	if _, err := m.api.DeleteSession(ctx, sid); err != nil && !errors.Is(err, edgegap.ErrNotFound) {
		m.log.Warn("could not delete the session of an abandoned request; queuing its deletion", logkey.SessionID, sid, logkey.Err, err)
		return false
	}
	took := pr.sinceCancel()
	if pr != nil {
		m.met.abandonedDelete.Observe(took.Seconds())
	}
	m.log.Info("session of an abandoned request deleted", logkey.SessionID, sid, "after_cancel", took.Round(time.Millisecond))
	if err := m.b.UnclaimedSessions.Delete(ctx, sid); err != nil {
		m.log.Debug("could not drop the unclaimed entry of a deleted session; the reaper will find it gone", logkey.SessionID, sid, logkey.Err, err)
	}
	return true
}

func (m *Matchmaker) finishSession(ctx context.Context, sid string, tr tracked, clientIP netip.Addr, send progressFunc) (*grant, *requestError) {
	createdAt := tr.created
	sess, waited, rerr := m.waitReady(ctx, sid, createdAt, send)
	if rerr != nil {
		return nil, rerr
	}
	ip, port, rerr := m.pickAddress(sess)
	if rerr != nil {
		return nil, rerr
	}
	digest := m.certDigest(ctx, ip, sess.Deployment.RequestID, createdAt, waited)

	clientID, err := randomClientID()
	if err != nil {
		return nil, reqErr(http.StatusInternalServerError, "could not pick a client id", err)
	}
	tok, err := m.minter.Mint(netcode.TokenParams{
		ProtocolID:    m.cfg.ProtocolID,
		ClientID:      clientID,
		ServerAddrs:   []netip.AddrPort{netip.AddrPortFrom(ip, port)},
		ExpireSeconds: m.cfg.TokenExpireSeconds,
	})
	if err != nil {
		return nil, reqErr(http.StatusInternalServerError, "could not mint connect token", err)
	}
	if err := m.registerIDs(ctx, sid, clientID, tr); err != nil {
		if errors.Is(err, errReaped) {
			return nil, reqErr(http.StatusGatewayTimeout, "session still not ready, timed out.", err)
		}
		return nil, m.contextOr(ctx, reqErr(http.StatusServiceUnavailable, "session store unavailable", err))
	}
	return &grant{sessionID: sid, clientID: clientID, token: tok, ready: protocol.SessionReady{
		IP: ip.String(), Port: port, CertDigest: digest,
	}}, nil
}

// trackUnclaimed writes unclaimed_sessions[sid] = sid, retrying for a few seconds (NATS may be
// reconnecting), and returns the entry's revision. The write does not use the request context:
// a shutdown must not skip it.
func (m *Matchmaker) trackUnclaimed(sid string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return m.trackUnclaimedCtx(ctx, sid)
}

// trackUnclaimedCtx is trackUnclaimed bounded by ctx.
func (m *Matchmaker) trackUnclaimedCtx(ctx context.Context, sid string) (uint64, error) {
	var rev uint64
	err := retryNATS(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		var err error
		rev, err = m.b.UnclaimedSessions.Put(ctx, sid, []byte(sid))
		return err
	})
	return rev, err
}

// tracked is a session's unclaimed_sessions entry as its create wrote it (trackUnclaimed).
type tracked struct {
	rev     uint64
	created time.Time
}

// errReaped: the session's unclaimed_sessions entry was taken by a reaper before its grant
// could re-arm it (the session took longer than the readiness limit and the grace).
var errReaped = errors.New("the session was reaped before it was ready: not ready within the readiness limit")

// registerWriteLimit bounds registerIDs' writes, retries included: a NATS node failover (a new
// stream leader elected, the client reconnecting to another node) takes a few seconds, during
// which a put fails at once ("no responders") — the write rides it out instead of failing the
// request with 503.
const registerWriteLimit = 10 * time.Second

// registerIDs writes sessions_ly2eg and sessions_eg2ly, each retried (retryNATS) for up to
// registerWriteLimit, then re-arms the session's unclaimed_sessions entry when the grant comes
// late in its life (keepUnclaimed); errReaped when a reaper took the session first.
func (m *Matchmaker) registerIDs(ctx context.Context, sid string, clientID uint64, tr tracked) error {
	cid := strconv.FormatUint(clientID, 10)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), registerWriteLimit)
	defer cancel()
	put := func(kv jetstream.KeyValue, key, value string) error {
		return retryNATS(ctx, 100*time.Millisecond, func(ctx context.Context) error {
			_, err := kv.Put(ctx, key, []byte(value))
			return err
		})
	}
	// The two mappings are independent (and expire on their own): written at once, one round
	// trip instead of two, and both acknowledged before the token is handed out.
	eg2ly := make(chan error, 1)
	go func() {
		growStack(0) // see stack.go
		eg2ly <- put(m.b.SessionsEg2Ly, sid, cid)
	}()
	errLy2Eg := put(m.b.SessionsLy2Eg, cid, sid)
	errEg2Ly := <-eg2ly
	if errLy2Eg != nil {
		return fmt.Errorf("put sessions_ly2eg: %w", errLy2Eg)
	}
	if errEg2Ly != nil {
		return fmt.Errorf("put sessions_eg2ly: %w", errEg2Ly)
	}
	return m.keepUnclaimed(ctx, sid, tr)
}

// keepUnclaimed re-arms the unclaimed_sessions entry of a session granted more than half of
// ReadinessLimit + ClaimGrace after its create (a slow boot, Edgegap slow or rate limiting, a
// NATS failover), so that its player gets the whole limit and grace to connect from now. The
// write is a compare-and-set on the revision the create wrote, the same one the reapers delete
// the entry with before they queue the session's deletion: exactly one side wins, and a
// session a reaper took fails its grant with errReaped instead of handing out a token for a
// session being deleted. A grant early in the session's life writes nothing here.
func (m *Matchmaker) keepUnclaimed(ctx context.Context, sid string, tr tracked) error {
	if time.Since(tr.created) <= (m.cfg.ReadinessLimit+m.cfg.ClaimGrace)/2 {
		return nil
	}
	return retryNATS(ctx, 100*time.Millisecond, func(ctx context.Context) error {
		_, err := m.b.UnclaimedSessions.Update(ctx, sid, []byte(sid), tr.rev)
		if err == nil || !isRevisionMismatch(err) {
			return err
		}
		// Changed since the create: either this very update, retried after a lost
		// acknowledgement (the entry is there), or a reaper's delete marker (it is not).
		e, gerr := m.b.UnclaimedSessions.Get(ctx, sid)
		switch {
		case errors.Is(gerr, jetstream.ErrKeyNotFound):
			return backoff.Permanent(errReaped)
		case gerr != nil:
			return gerr
		case e.Revision() > tr.rev:
			return nil
		}
		return err
	})
}

// waitReady waits until the session is ready: woken by its webhook, with a slow poll as
// fallback. It returns the ready session and how long the wait took.
func (m *Matchmaker) waitReady(ctx context.Context, sid string, createdAt time.Time, send progressFunc) (*edgegap.Session, time.Duration, *requestError) {
	hooks := m.hooks.register(sid)
	defer m.hooks.unregister(sid)

	withHook := m.cfg.SessionWebhookURL != ""
	plan := newPollPlan(m.cfg.ReadinessLimit, m.cfg.PollInitial, m.cfg.PollMax, withHook, m.hooks.isHealthy())
	limit := time.NewTimer(m.cfg.ReadinessLimit - time.Since(createdAt))
	defer limit.Stop()
	first, skippable, _ := plan.next()
	poll := time.NewTimer(first)
	defer poll.Stop()
	sawHook := false
	progress := time.NewTicker(2 * time.Second)
	defer progress.Stop()
	start := time.Now()

	checkWith := func(get func(context.Context, string) (*edgegap.Session, error), via string) (*edgegap.Session, *requestError, bool) {
		cctx, cancel := context.WithTimeout(ctx, m.cfg.EdgegapCallTimeout)
		s, err := get(cctx, sid)
		cancel()
		if err != nil {
			if errors.Is(err, edgegap.ErrNoSpareCall) {
				return nil, nil, false
			}
			if errors.Is(err, edgegap.ErrNotFound) {
				return nil, reqErr(http.StatusBadGateway, "session disappeared on Edgegap while waiting", err), true
			}
			if ctx.Err() != nil {
				return nil, m.contextError(ctx, ctx.Err()), true
			}
			m.log.Warn("session get failed, will retry", logkey.SessionID, sid, logkey.Err, err)
			return nil, nil, false
		}
		if s.Ready && s.Deployment != nil {
			m.met.readyVia.WithLabelValues(via).Inc()
			return s, nil, true
		}
		if failedStatus(s.Status) {
			msg := "session failed on Edgegap: " + s.Status
			if s.Error != nil && *s.Error != "" {
				msg += ": " + *s.Error
			}
			return nil, reqErr(http.StatusBadGateway, msg, nil), true
		}
		send(protocol.Progress(fmt.Sprintf("%s (%d)", s.Status, s.Elapsed)))
		return nil, nil, false
	}
	check := func(via string) (*edgegap.Session, *requestError, bool) { return checkWith(m.api.GetSession, via) }

	// A session that joined a deployment already running is ready at once: with webhooks, look
	// right away when the Edgegap client has a GET to spare (spareGetter), rather than wait for
	// the webhook that only says so later. A session whose deployment must boot costs that one
	// GET more (the lookout stops looking while looks find sessions booting); under a busy rate
	// limit the look is not made, and the webhook decides as without it.
	if spare, ok := m.api.(spareGetter); ok && plan.late && m.looks.shouldLook() {
		looked := true
		get := func(ctx context.Context, id string) (*edgegap.Session, error) {
			s, err := spare.GetSessionNow(ctx, id)
			looked = !errors.Is(err, edgegap.ErrNoSpareCall)
			return s, err
		}
		s, rerr, done := checkWith(get, "immediate")
		if looked {
			m.looks.saw(s != nil)
			found := "not_ready"
			if s != nil {
				found = "ready"
			}
			m.met.looks.WithLabelValues(found).Inc()
		}
		if done {
			return s, time.Since(start), rerr
		}
	}

	for {
		select {
		case ev := <-hooks:
			if ev.recheck {
				s, rerr, done := check("reconnect")
				if done {
					return s, time.Since(start), rerr
				}
				continue
			}
			sawHook = true
			if ev.failed {
				return nil, 0, reqErr(http.StatusBadGateway, "session failed on Edgegap: "+ev.status, nil)
			}
			if !ev.ready {
				send(protocol.Progress(ev.status))
				continue
			}
			s, rerr, done := check("webhook")
			if done {
				return s, time.Since(start), rerr
			}
		case <-poll.C:
			if !(skippable && sawHook) {
				s, rerr, done := check("poll")
				if done {
					if s != nil && withHook {
						m.hooks.markPollFoundReady()
						m.met.webhookHealthy.Set(0)
					}
					return s, time.Since(start), rerr
				}
			}
			var at time.Duration
			var ok bool
			if at, skippable, ok = plan.next(); ok {
				poll.Reset(max(0, at-time.Since(createdAt)))
			}
		case <-progress.C:
			send(protocol.Progress(fmt.Sprintf("Waiting for game server (%ds)", int(time.Since(createdAt).Seconds()))))
		case <-limit.C:
			m.met.readyTimeouts.Inc()
			return nil, 0, reqErr(http.StatusGatewayTimeout, "session still not ready, timed out.", nil)
		case <-ctx.Done():
			return nil, 0, m.contextError(ctx, ctx.Err())
		}
		if m.hooks.isHealthy() {
			m.met.webhookHealthy.Set(1)
		}
	}
}

func failedStatus(s string) bool {
	return edgegap.StatusIs(s, edgegap.SessionStatusError) || edgegap.StatusIs(s, edgegap.SessionStatusUnprocessable)
}

// pickAddress returns the game server's public IP and the external port of the configured
// port (or the only/first one by name).
func (m *Matchmaker) pickAddress(s *edgegap.Session) (netip.Addr, uint16, *requestError) {
	d := s.Deployment
	ip, err := netip.ParseAddr(d.PublicIP)
	if err != nil {
		return netip.Addr{}, 0, reqErr(http.StatusBadGateway, "deployment public_ip is not an IP address", err)
	}
	if len(d.Ports) == 0 {
		return netip.Addr{}, 0, reqErr(http.StatusBadGateway, "No ports found in deployment", nil)
	}
	name := m.cfg.PortName
	if name == "" {
		names := make([]string, 0, len(d.Ports))
		for n := range d.Ports {
			names = append(names, n)
		}
		sort.Strings(names)
		name = names[0]
		if len(names) > 1 {
			m.log.Warn("deployment has several ports, using the first by name; set the port name to choose", "port", name, "ports", names)
		}
	}
	pm, ok := d.Ports[name]
	if !ok {
		return netip.Addr{}, 0, reqErr(http.StatusBadGateway, fmt.Sprintf("deployment has no port named %q", name), nil)
	}
	if pm.External == nil || *pm.External <= 0 || *pm.External > 65535 {
		return netip.Addr{}, 0, reqErr(http.StatusBadGateway, fmt.Sprintf("deployment port %q has no external port", name), nil)
	}
	return ip.Unmap(), uint16(*pm.External), nil
}

// freshDeploymentWait: a readiness wait at least this long means the game server has just
// booted and may not have published its cert digest yet.
const freshDeploymentWait = 500 * time.Millisecond

// certDigest returns the game server's certificate digest: cert_digests[<ip>.<request id>],
// the deployment's own key (written by Go game servers, which may share an IP), else
// cert_digests[<ip>], the Rust plugin's key (the newest deployment on the IP wrote it). For a
// session that had to boot (the game server may not have published yet), an IP key written
// before the session was created may be another deployment's: then both keys are watched for
// up to CertDigestWait, and the first fresh write wins (the old IP value is the fallback).
// The running matchmaker answers from its watched copy of the bucket (certcache.go), with the
// same rules; the bucket is read directly only while that copy is not ready.
func (m *Matchmaker) certDigest(ctx context.Context, ip netip.Addr, requestID string, createdAt time.Time, waited time.Duration) string {
	depKey, _ := protocol.CertDigestDeploymentKey(ip, requestID)
	ipKey, _ := protocol.CertDigestIPKey(ip)
	fresh := m.cfg.CertDigestWait > 0 && waited >= freshDeploymentWait
	if c := m.certs; c != nil {
		if d, ok := c.digest(ctx, depKey, ipKey, createdAt, fresh, m.cfg.CertDigestWait); ok {
			return d
		}
	}
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	get := func(ctx context.Context, key string) (jetstream.KeyValueEntry, bool) {
		if key == "" {
			return nil, false
		}
		e, err := m.b.CertDigests.Get(ctx, key)
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyNotFound) {
				m.log.Warn("cert digest lookup failed", "key", key, logkey.Err, err)
			}
			return nil, false
		}
		return e, true
	}
	if e, ok := get(gctx, depKey); ok {
		return string(e.Value())
	}
	fallback := ""
	if e, ok := get(gctx, ipKey); ok {
		fallback = string(e.Value())
		if !fresh || e.Created().After(createdAt) {
			return fallback
		}
	}
	if !fresh {
		return "" // a warm deployment published its digest long ago: it has none
	}
	var keys []string
	for _, k := range []string{depKey, ipKey} {
		if k != "" {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return fallback
	}
	wctx, wcancel := context.WithTimeout(ctx, m.cfg.CertDigestWait)
	defer wcancel()
	w, err := m.b.CertDigests.WatchFiltered(wctx, keys, jetstream.UpdatesOnly())
	if err != nil {
		return fallback
	}
	defer func() { _ = w.Stop() }()
	// The digest may have arrived between Get and Watch.
	if e, ok := get(wctx, depKey); ok {
		return string(e.Value())
	}
	if e, ok := get(wctx, ipKey); ok && e.Created().After(createdAt) {
		return string(e.Value())
	}
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fallback
			}
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				return string(e.Value())
			}
		case <-wctx.Done():
			return fallback
		}
	}
}

// abandon gives a session up: it is queued for deletion and dropped from unclaimed_sessions
// (where rev is its entry's revision: a reaper queuing the same entry is deduplicated). If
// queuing fails, the unclaimed entry stays and a reaper deletes the session later.
func (m *Matchmaker) abandon(sid string, rev uint64, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := retryNATS(ctx, 200*time.Millisecond, func(ctx context.Context) error {
		return m.b.EnqueueSessionDelete(ctx, sid, unclaimedIncarnation(rev))
	})
	if err != nil {
		m.log.Error("could not queue session deletion; the unclaimed reaper will delete it", logkey.SessionID, sid, logkey.Err, err)
		return
	}
	m.met.deleteEnqueued.WithLabelValues("abandoned").Inc()
	m.log.Info("session abandoned, deletion queued", logkey.SessionID, sid, "reason", reason)
	_ = m.b.UnclaimedSessions.Delete(ctx, sid)
}

// deleteDirectly deletes a session through the API, bypassing NATS (used when NATS itself is
// failing right after a create).
func (m *Matchmaker) deleteDirectly(sid string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := retryNATS(ctx, 500*time.Millisecond, func(ctx context.Context) error {
		cctx, c := context.WithTimeout(ctx, m.cfg.EdgegapCallTimeout)
		defer c()
		_, err := m.api.DeleteSession(cctx, sid)
		if errors.Is(err, edgegap.ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		m.log.Error("direct session delete failed; reconciliation will catch it", logkey.SessionID, sid, logkey.Err, err)
	}
}

// edgegapError maps an Edgegap failure to the client's error.
func (m *Matchmaker) edgegapError(what string, err error) *requestError {
	code := edgegap.StatusCode(err)
	msg := what + " failed"
	var ae *edgegap.APIError
	if errors.As(err, &ae) && ae.Message != "" {
		msg = ae.Message
	}
	switch {
	case code == http.StatusBadRequest, code == http.StatusUnauthorized, code == http.StatusForbidden,
		code == http.StatusConflict, code == http.StatusTooManyRequests, code == http.StatusNotFound,
		code == http.StatusUnprocessableEntity:
		return reqErr(uint16(code), msg, err)
	case code >= 500:
		return reqErr(http.StatusBadGateway, "Edgegap error: "+msg, err)
	case code != 0:
		return reqErr(http.StatusBadGateway, "Edgegap error: "+msg, err)
	case errors.Is(err, context.DeadlineExceeded):
		return reqErr(http.StatusGatewayTimeout, "Edgegap did not answer in time", err)
	default:
		return reqErr(http.StatusServiceUnavailable, "Edgegap unreachable", err)
	}
}

// contextError maps the end of a request context (player gone, shutdown) to an error.
func (m *Matchmaker) contextError(ctx context.Context, err error) *requestError {
	if isAbandoned(ctx) {
		return abandonedError()
	}
	if errors.Is(context.Cause(ctx), errShuttingDown) || m.reqCtx.Err() != nil {
		return reqErr(http.StatusServiceUnavailable, "matchmaker shutting down", err)
	}
	return reqErr(http.StatusServiceUnavailable, "request canceled", err)
}

func (m *Matchmaker) contextOr(ctx context.Context, e *requestError) *requestError {
	if ctx.Err() != nil {
		return m.contextError(ctx, ctx.Err())
	}
	return e
}

var errShuttingDown = errors.New("matchmaker shutting down")

// randomClientID returns a random non-zero u64.
func randomClientID() (uint64, error) {
	var b [8]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return 0, err
		}
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id, nil
		}
	}
}

// retryNATS calls op until it succeeds or ctx ends, waiting from base doubling up to 2 s between
// calls (NATS may be reconnecting). A closed connection is final: this process lost NATS for
// good.
func retryNATS(ctx context.Context, base time.Duration, op func(context.Context) error) error {
	return backoff.Retry(ctx, backoff.Policy{Base: base, Max: 2 * time.Second}, func(ctx context.Context) error {
		err := op(ctx)
		if errors.Is(err, nats.ErrConnectionClosed) {
			return backoff.Permanent(err)
		}
		return err
	}, nil)
}
