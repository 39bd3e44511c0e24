package matchmaker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// groupPlayer is one player of a group that runGroup puts on one game server: the address the
// front door saw, the reply inbox of the player's streaming request, and (for a party) the
// member id, used in logs only.
type groupPlayer struct {
	ip     netip.Addr
	inbox  string
	member string
}

// errGroupFailed is returned (wrapped, with the players' error) by runGroup when the group got
// no server.
var errGroupFailed = errors.New("matchmaker: group session failed")

// groupSession is one Edgegap session created for a group: its id, the revision of its
// unclaimed_sessions entry and when it was created.
type groupSession struct {
	sid     string
	rev     uint64
	created time.Time
}

// runGroup puts players on one game server and answers every player's streaming request: it
// streams progress to all of them, then sends each its own SessionReady (its own connect
// token and client id, the same server address) and ends every stream with the empty message.
//
// kind match.KindSeat (the default, for game servers as the Rust plugin runs them): one lead
// session carrying every player's IP (Edgegap places the deployment for all of them); once it
// is ready, the other players' IPs are taken out of it (their sockets freed) and each of them
// gets a session of its own linked to the lead's deployment (deployment_request_id), so that
// active_connections keeps the reference's meaning. The lead session is the first player's. A
// player whose seat cannot be had (409 twice: the freed socket was taken) gets its own Error;
// the others keep the server.
// kind match.KindMatch: one session carrying every IP; every player's client id maps to it in
// sessions_ly2eg (the game server keeps active_connections[session] until the last player of
// the session leaves).
//
// Every session is recorded in unclaimed_sessions right after its create. On a failure before
// the players have their tokens, every session of the group is abandoned and every player gets
// the same Error; runGroup then returns an error wrapping errGroupFailed. Once the tokens are
// handed out, a player who vanished follows the unclaimed-session rules on its own: its seat
// session (or, kind match, the shared session if nobody connects) is reaped, the others keep
// their server. ctx bounds the whole group (with the matchmaker's request context); a
// matchmaker that is shutting down answers 503 at once.
func (m *Matchmaker) runGroup(ctx context.Context, kind match.Kind, players []groupPlayer) error {
	if !m.beginRequest() {
		rerr := reqErr(http.StatusServiceUnavailable, "matchmaker shutting down", nil)
		for _, p := range players {
			r := streamReply{nc: m.nc, inbox: p.inbox, m: m}
			r.send(protocol.Error(rerr.Code, rerr.Message))
			r.finish()
		}
		return fmt.Errorf("%w: %w", errGroupFailed, rerr)
	}
	defer m.inflight.Done()
	return m.groupSessions(ctx, kind, "", players)
}

// groupSessions is runGroup for a caller that counts the request in flight itself
// (beginRequest). With a deployment (a backfill: a running game server asked for players),
// every player gets a Seat session linked to that deployment and no lead session is created.
func (m *Matchmaker) groupSessions(ctx context.Context, kind match.Kind, deployment string, players []groupPlayer) error {
	start := time.Now()
	if len(players) == 0 {
		return fmt.Errorf("%w: no players", errGroupFailed)
	}
	out := newGroupReplies(m, players)
	fail := func(rerr *requestError) error {
		for i := range players {
			if out.end(i, protocol.Error(rerr.Code, rerr.Message)) {
				m.finishMetrics("group", rerr.Code, start)
			}
		}
		m.status.Failed(time.Now(), int(rerr.Code), rerr.Message)
		m.log.Warn("group session failed", "players", len(players), "kind", string(kind), "code", rerr.Code, "reason", rerr.Message, logkey.Err, rerr.Err)
		return fmt.Errorf("%w: %w", errGroupFailed, rerr)
	}
	m.met.inFlight.Add(float64(len(players)))
	defer m.met.inFlight.Sub(float64(len(players)))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stop := context.AfterFunc(m.reqCtx, func() { cancel(errShuttingDown) })
	defer stop()
	// Every player hears from us at least every groupProgressEvery, whatever step is slow (the
	// front door ends a stream that stays silent, docs/httpd.md).
	go out.keepalive(ctx, start)

	var sessions []groupSession
	var mu sync.Mutex // guards sessions while the seats are created in parallel
	abandonAll := func(reason string) {
		mu.Lock()
		defer mu.Unlock()
		for _, s := range sessions {
			m.abandon(s.sid, s.rev, reason)
		}
	}
	create := func(ips []netip.Addr, deployment string) (groupSession, *requestError) {
		list := make([]string, len(ips))
		for i, ip := range ips {
			list[i] = ip.String()
		}
		s, rerr := m.createTracked(ctx, list, deployment)
		if rerr == nil {
			mu.Lock()
			sessions = append(sessions, s)
			mu.Unlock()
		}
		return s, rerr
	}

	ips := make([]netip.Addr, len(players))
	for i, p := range players {
		ips[i] = p.ip
	}
	leadIPs := ips
	if deployment != "" {
		kind, leadIPs = match.KindSeat, ips[:1]
	}
	lead, rerr := create(leadIPs, deployment)
	if rerr != nil {
		return fail(rerr)
	}
	out.broadcast(protocol.Accepted(lead.sid))
	sess, waited, rerr := m.waitReady(ctx, lead.sid, lead.created, out.broadcast)
	if rerr != nil {
		abandonAll("group failed: " + rerr.Message)
		return fail(rerr)
	}
	ip, port, rerr := m.pickAddress(sess)
	if rerr != nil {
		abandonAll("group failed: " + rerr.Message)
		return fail(rerr)
	}
	digest := m.certDigest(ctx, ip, sess.Deployment.RequestID, lead.created, waited)

	// The session id of each player: kind match shares the lead's; kind seat links one more
	// session per other player to the lead's deployment, once the lead session gave their
	// sockets back (it was created with every IP, for placement).
	sids := make([]string, len(players))
	for i := range sids {
		sids[i] = lead.sid
	}
	seated := make([]bool, len(players))
	for i := range seated {
		seated[i] = true
	}
	if (kind != match.KindMatch || deployment != "") && len(players) > 1 {
		out.broadcast(protocol.Progress(fmt.Sprintf("Game server ready; reserving %d seats", len(players))))
		if deployment == "" {
			m.freeLeadSeats(ctx, lead.sid, players)
		}
		errs := make([]*requestError, len(players))
		var wg sync.WaitGroup
		for i := 1; i < len(players); i++ {
			wg.Go(func() {
				sids[i], errs[i] = m.linkSeat(ctx, create, sess.Deployment.RequestID, players[i].ip, func(f protocol.Feedback) { out.send(i, f) })
			})
		}
		wg.Wait()
		if ctx.Err() != nil {
			abandonAll("group failed: " + context.Cause(ctx).Error())
			return fail(m.contextError(ctx, ctx.Err()))
		}
		// A player whose seat could not be had is told so; the others keep the server.
		for i, e := range errs {
			if e == nil {
				continue
			}
			seated[i] = false
			if out.end(i, protocol.Error(e.Code, e.Message)) {
				m.finishMetrics("group", e.Code, start)
			}
			m.log.Warn("group: no seat for a player; the others keep the server", logkey.ClientIP, players[i].ip.String(),
				"member", players[i].member, "code", e.Code, "reason", e.Message, logkey.Err, e.Err)
		}
	}

	// Tokens and mappings for everyone before anyone is answered: a failure here still fails
	// the whole group.
	grants := make([]protocol.SessionReady, len(players))
	clientIDs := make([]uint64, len(players))
	var regSids []string
	var regIDs []uint64
	for i := range players {
		if !seated[i] {
			continue
		}
		cid, err := randomClientID()
		if err != nil {
			abandonAll("group failed: client id")
			return fail(reqErr(http.StatusInternalServerError, "could not pick a client id", err))
		}
		tok, err := m.minter.Mint(netcode.TokenParams{
			ProtocolID:    m.cfg.ProtocolID,
			ClientID:      cid,
			ServerAddrs:   []netip.AddrPort{netip.AddrPortFrom(ip, port)},
			ExpireSeconds: m.cfg.TokenExpireSeconds,
		})
		if err != nil {
			abandonAll("group failed: token")
			return fail(reqErr(http.StatusInternalServerError, "could not mint connect token", err))
		}
		clientIDs[i] = cid
		grants[i] = protocol.SessionReady{Token: tok.Base64(), IP: ip.String(), Port: port, CertDigest: digest}
		regSids, regIDs = append(regSids, sids[i]), append(regIDs, cid)
	}
	mu.Lock()
	entries := make(map[string]tracked, len(sessions))
	for _, s := range sessions {
		entries[s.sid] = tracked{rev: s.rev, created: s.created}
	}
	mu.Unlock()
	if err := m.registerGroupIDs(ctx, regSids, regIDs, entries); err != nil {
		abandonAll("group failed: session store")
		if errors.Is(err, errReaped) {
			return fail(reqErr(http.StatusGatewayTimeout, "session still not ready, timed out.", err))
		}
		return fail(m.contextOr(ctx, reqErr(http.StatusServiceUnavailable, "session store unavailable", err)))
	}
	server := ip.String() + ":" + strconv.Itoa(int(port))
	for i := range players {
		if !seated[i] {
			continue
		}
		if out.end(i, protocol.Ready(grants[i])) {
			m.finishMetrics("group", http.StatusOK, start)
		}
		m.log.Info("session granted", logkey.SessionID, sids[i], logkey.ClientID, clientIDs[i],
			logkey.ClientIP, players[i].ip.String(), "server", server, "group", lead.sid, "member", players[i].member)
	}
	return nil
}

// groupProgressEvery is the longest a group's player waits without a message (the front
// door ends a silent stream after 30 s by default).
const groupProgressEvery = 4 * time.Second

// groupReplies are the streams of a group's players. A stream that got its final message
// and end gets nothing more.
type groupReplies struct {
	mu    sync.Mutex
	rs    []streamReply
	ended []bool
}

func newGroupReplies(m *Matchmaker, players []groupPlayer) *groupReplies {
	g := &groupReplies{rs: make([]streamReply, len(players)), ended: make([]bool, len(players))}
	for i, p := range players {
		g.rs[i] = streamReply{nc: m.nc, inbox: p.inbox, m: m}
	}
	return g
}

// send sends f to player i unless its stream ended.
func (g *groupReplies) send(i int, f protocol.Feedback) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.ended[i] {
		g.rs[i].send(f)
	}
}

// broadcast sends f to every player whose stream has not ended.
func (g *groupReplies) broadcast(f protocol.Feedback) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, r := range g.rs {
		if !g.ended[i] {
			r.send(f)
		}
	}
}

// end sends player i its final message and the end of the stream; false if it had ended.
func (g *groupReplies) end(i int, f protocol.Feedback) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ended[i] {
		return false
	}
	g.rs[i].send(f)
	g.rs[i].finish()
	g.rs[i].resendFinal(f)
	g.ended[i] = true
	return true
}

// keepalive tells every waiting player that the group is being set up, every
// groupProgressEvery, until ctx ends.
func (g *groupReplies) keepalive(ctx context.Context, start time.Time) {
	t := time.NewTicker(groupProgressEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.broadcast(protocol.Progress(fmt.Sprintf("Setting up the game server for the group (%ds)", int(time.Since(start).Seconds()))))
		}
	}
}

// sessionUserRemover is the Edgegap call that takes users out of a session
// (*edgegap.Client has it; an EdgegapAPI without it leaves the lead session's users alone).
type sessionUserRemover interface {
	RemoveSessionUsers(ctx context.Context, sessionID string, ips []string) (*edgegap.SessionUsers, error)
}

// freeLeadSeats removes the other players' IPs from the lead session of a seat group
// (DELETE /v1/session/{id}/users): in a Seat app version each IP of a session holds a socket,
// and each of those players is about to get a Seat session of its own on the deployment.
// Without it a group of N would hold 2N-1 sockets. An IP the first player shares (same NAT)
// stays. A failure is logged: the seats are tried anyway (they fit if the deployment has room).
func (m *Matchmaker) freeLeadSeats(ctx context.Context, sid string, players []groupPlayer) {
	r, ok := m.api.(sessionUserRemover)
	if !ok {
		return
	}
	seen := map[netip.Addr]bool{players[0].ip: true}
	var ips []string
	for _, p := range players[1:] {
		if !seen[p.ip] {
			seen[p.ip] = true
			ips = append(ips, p.ip.String())
		}
	}
	if len(ips) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, m.cfg.EdgegapCallTimeout)
	defer cancel()
	if _, err := r.RemoveSessionUsers(cctx, sid, ips); err != nil {
		m.log.Warn("could not take the other players out of the group's lead session; their seats need sockets of their own",
			logkey.SessionID, sid, logkey.Err, err)
	}
}

// linkSeat creates a player's Seat session on deployment (one retry after a 409: another
// request may have taken a freed socket), waits until it is ready and returns its id. A seat
// that cannot be had is abandoned.
func (m *Matchmaker) linkSeat(ctx context.Context, create func([]netip.Addr, string) (groupSession, *requestError),
	deployment string, ip netip.Addr, send progressFunc) (string, *requestError) {
	s, rerr := create([]netip.Addr{ip}, deployment)
	if rerr != nil && rerr.Code == http.StatusConflict && ctx.Err() == nil {
		s, rerr = create([]netip.Addr{ip}, deployment)
	}
	if rerr != nil {
		if rerr.Code == http.StatusConflict {
			rerr = reqErr(http.StatusConflict, "the game server of your group filled up before your seat was reserved; ask again", rerr)
		}
		return "", rerr
	}
	seat, _, rerr := m.waitReady(ctx, s.sid, s.created, send)
	if rerr == nil && (seat.Deployment == nil || seat.Deployment.RequestID != deployment) {
		rerr = reqErr(http.StatusBadGateway, "Edgegap placed a seat on another deployment", nil)
	}
	if rerr != nil {
		m.abandon(s.sid, s.rev, "seat failed: "+rerr.Message)
		return "", rerr
	}
	return s.sid, nil
}

// createTracked creates a session for ips (linked to deployment when not empty) and records it
// in unclaimed_sessions at once, like a single player's session.
func (m *Matchmaker) createTracked(ctx context.Context, ips []string, deployment string) (groupSession, *requestError) {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.EdgegapCallTimeout)
	m.status.Creating(1)
	created, err := m.api.CreateSession(cctx, edgegap.SessionCreateRequest{
		AppName:             m.cfg.AppName,
		IPList:              ips,
		DeploymentRequestID: deployment,
		WebhookURL:          m.cfg.SessionWebhookURL,
	})
	m.status.Creating(-1)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return groupSession{}, m.contextError(ctx, ctx.Err())
		}
		return groupSession{}, m.edgegapError("session create", err)
	}
	sid := created.SessionID
	if !bus.ValidSessionID(sid) {
		m.deleteDirectly(sid)
		return groupSession{}, reqErr(http.StatusBadGateway, "Edgegap returned an unusable session id", nil)
	}
	rev, err := m.trackUnclaimed(sid)
	if err != nil {
		m.log.Error("could not record session in unclaimed_sessions; deleting it now", logkey.SessionID, sid, logkey.Err, err)
		m.deleteDirectly(sid)
		return groupSession{}, reqErr(http.StatusServiceUnavailable, "session store unavailable", err)
	}
	// The readiness limit counts from the entry's write (admittedSession says why).
	return groupSession{sid: sid, rev: rev, created: time.Now()}, nil
}

// registerGroupIDs writes the mappings of every player: registerIDs for each distinct session
// (its first player), and sessions_ly2eg alone for the further players of a shared session
// (kind match: sessions_eg2ly can name one client id only, the first player's). entries are the
// unclaimed_sessions entries the group's creates wrote.
func (m *Matchmaker) registerGroupIDs(ctx context.Context, sids []string, clientIDs []uint64, entries map[string]tracked) error {
	seen := make(map[string]bool, len(sids))
	errs := make([]error, len(sids))
	var wg sync.WaitGroup
	for i, sid := range sids {
		first := !seen[sid]
		seen[sid] = true
		wg.Go(func() {
			if first {
				errs[i] = m.registerIDs(ctx, sid, clientIDs[i], entries[sid])
				return
			}
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, err := m.b.SessionsLy2Eg.Put(wctx, strconv.FormatUint(clientIDs[i], 10), []byte(sid)); err != nil {
				errs[i] = fmt.Errorf("put sessions_ly2eg: %w", err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
