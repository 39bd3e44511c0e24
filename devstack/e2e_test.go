package devstack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/examples/dotroom/room"
	"github.com/bevygap-go/bevygap/examples/dotroom/roomclient"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/netcode"
)

// Short limits so that the whole lifecycle runs in seconds; generous enough for a loaded 2-core
// machine. The players' stack has a long readiness limit (50 players boot servers at once); the
// reaper's own stack a short one (it waits that long for the reap), still ten times the boot.
const (
	testBoot               = 200 * time.Millisecond
	testReadinessLimit     = 8 * time.Second
	testClaimGrace         = time.Second
	testReapReadinessLimit = 3 * time.Second
	testReapClaimGrace     = 500 * time.Millisecond
	testPlayers            = 50
	testPlayerTimeout      = 45 * time.Second
	testShutdownLimit      = 30 * time.Second
)

// startTestStack starts a stack with the test's short timings (readiness limit and claim grace
// as given) and shuts it down when the test ends.
func startTestStack(t *testing.T, readinessLimit, claimGrace time.Duration) *Stack {
	t.Helper()
	st, err := Start(t.Context(), Config{
		BootTime:        testBoot,
		BootJitter:      100 * time.Millisecond,
		EmptyTTL:        3 * time.Second,
		ReadinessLimit:  readinessLimit,
		ClaimGrace:      claimGrace,
		ShutdownTimeout: 2 * time.Second,
		GameTick:        50 * time.Millisecond,
		Logger:          slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), testShutdownLimit)
		defer cancel()
		_ = st.Shutdown(cctx)
	})
	return st
}

// TestUnclaimedSessionReaped: a player gets a token and never connects; the reaper deletes its
// session after the readiness limit plus the claim grace. It has a stack of its own, with a
// short readiness limit, so that it runs beside TestEndToEnd instead of setting its pace.
func TestUnclaimedSessionReaped(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	t.Parallel()
	testUnclaimedReaped(t, startTestStack(t, testReapReadinessLimit, testReapClaimGrace), testReapReadinessLimit, testReapClaimGrace)
}

// TestEndToEnd runs one stack (embedded NATS, simulator with in-process dotroom servers, webhook
// sink, matchmaker, httpd) and drives it like players would: over WebSocket and netcode UDP.
func TestEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	t.Parallel()
	st := startTestStack(t, testReadinessLimit, testClaimGrace)

	t.Run("lifecycle", func(t *testing.T) {
		t.Run("forged_client_refused", func(t *testing.T) { t.Parallel(); testForgedRefused(t, st) })
		t.Run("players", func(t *testing.T) { t.Parallel(); testPlayersConcurrently(t, st, testPlayers) })
	})
	if t.Failed() {
		return
	}
	t.Run("metrics", func(t *testing.T) { testMetrics(t, st) })
	t.Run("no_leftovers", func(t *testing.T) {
		eventually.NoError(t, 20*time.Second, func() error {
			live := st.Sim().LiveSessions()
			active := activeConnections(t, st)
			if live == 0 && len(active) == 0 {
				return nil
			}
			return fmt.Errorf("%d live sessions, active_connections %v", live, active)
		}, "zero live sessions and an empty active_connections")
	})
	t.Run("shutdown_mid_flight", func(t *testing.T) { testShutdownMidFlight(t, st) })
}

// testPlayersConcurrently: n players at once get a token over WebSocket, connect over netcode
// UDP, move, chat and ping, and disconnect; then their sessions are deleted and their
// active_connections entries are gone.
func testPlayersConcurrently(t *testing.T, st *Stack, n int) {
	type result struct {
		session string
		server  netip.AddrPort
		err     error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), testPlayerTimeout)
			defer cancel()
			results[i].session, results[i].server, results[i].err = playOneRound(ctx, st, i)
		})
	}
	wg.Wait()
	sessions := map[string]bool{}
	servers := map[netip.AddrPort]bool{}
	for i, r := range results {
		servers[r.server] = true
		if r.err != nil {
			t.Errorf("player %d: %v", i, r.err)
			continue
		}
		if sessions[r.session] {
			t.Errorf("player %d: session %s handed out twice", i, r.session)
		}
		sessions[r.session] = true
	}
	if t.Failed() {
		return
	}
	// Seat sessions, 6 sockets per deployment: the players were spread over several servers.
	if want := (n + edgegapsim.DefaultSockets - 1) / edgegapsim.DefaultSockets; len(servers) < want {
		t.Errorf("%d players played on %d game servers, want at least %d", n, len(servers), want)
	}
	t.Logf("%d players, %d sessions, %d game servers", n, len(sessions), len(servers))
	// Disconnect → game server deletes active_connections[session] → matchmaker deletes the
	// Edgegap session.
	eventually.NoError(t, 20*time.Second, func() error {
		var live []string
		for _, s := range st.Sim().State().Sessions {
			if sessions[s.SessionID] {
				live = append(live, s.SessionID)
			}
		}
		var active []string
		for _, k := range activeConnections(t, st) {
			if sessions[k] {
				active = append(active, k)
			}
		}
		if len(live) == 0 && len(active) == 0 {
			return nil
		}
		return fmt.Errorf("live %v, active_connections %v", live, active)
	}, "every player's session deleted")
}

// playOneRound is one player's whole game: matchmaking, connect, move, chat, ping, leave. It
// returns the session id and the game server's address.
func playOneRound(ctx context.Context, st *Stack, i int) (string, netip.AddrPort, error) {
	p, sess, err := roomclient.Join(ctx, st.Info().HTTPURL, st.Info().AppName, st.Info().AppVersion, client.Options{})
	if err != nil {
		return "", netip.AddrPort{}, err
	}
	defer p.Close()
	if sess.SessionID == "" {
		return "", sess.ServerAddr, errors.New("no session id in the feedback")
	}
	return sess.SessionID, sess.ServerAddr, exchange(ctx, p, i)
}

// exchange moves the player's dot and sees it move, chats and sees its line relayed, pings and
// gets the echo, then disconnects. Payloads are datagrams: each request is resent until its
// effect shows, as a game would.
func exchange(ctx context.Context, p *roomclient.Player, i int) error {
	w, _ := p.RoomSize()
	// The first snapshot with my dot, then a move, seen in a later snapshot.
	me, err := nextRoomWith(ctx, p, func(r room.Snapshot) bool { _, ok := r.Find(p.ID()); return ok })
	if err != nil {
		return fmt.Errorf("waiting for my dot: %w", err)
	}
	start, _ := me.Find(p.ID())
	dx := 1
	if int(start.X) == w-1 {
		dx = -1
	}
	moved := func(m room.Message) bool {
		r, ok := m.(room.Snapshot)
		if !ok {
			return false
		}
		d, ok := r.Find(p.ID())
		return ok && (int(d.X)-int(start.X))*dx > 0 && d.Y == start.Y
	}
	if err := untilSeen(ctx, p, func() error { return p.Move(dx, 0) }, moved); err != nil {
		return fmt.Errorf("waiting for my move: %w", err)
	}

	// Chat comes back to the sender too.
	line := fmt.Sprintf("hello from player %d", i)
	if err := untilSeen(ctx, p, func() error { return p.Say(line) }, func(m room.Message) bool {
		c, ok := m.(room.Chat)
		return ok && c.From == p.ID() && c.Text == line
	}); err != nil {
		return fmt.Errorf("waiting for my chat line: %w", err)
	}
	// Any other payload is echoed.
	ping := []byte(fmt.Sprintf("ping %d", i))
	if err := untilSeen(ctx, p, func() error { return p.Send(ping) }, func(m room.Message) bool {
		e, ok := m.(roomclient.Echo)
		return ok && string(e.Data) == string(ping)
	}); err != nil {
		return fmt.Errorf("waiting for the echo: %w", err)
	}
	return p.Close()
}

// untilSeen sends with send, and again every resendEvery, until a message matching seen
// arrives.
func untilSeen(ctx context.Context, p *roomclient.Player, send func() error, seen func(room.Message) bool) error {
	const resendEvery = 500 * time.Millisecond
	for {
		if err := send(); err != nil {
			return err
		}
		wctx, cancel := context.WithTimeout(ctx, resendEvery)
		for {
			msg, err := p.Next(wctx)
			if err != nil {
				cancel()
				if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
					break // resend
				}
				return err
			}
			if seen(msg) {
				cancel()
				return nil
			}
		}
	}
}

func nextRoomWith(ctx context.Context, p *roomclient.Player, ok func(room.Snapshot) bool) (room.Snapshot, error) {
	for {
		msg, err := p.Next(ctx)
		if err != nil {
			return room.Snapshot{}, err
		}
		if r, isRoom := msg.(room.Snapshot); isRoom && ok(r) {
			return r, nil
		}
	}
}

// testUnclaimedReaped: a player gets a token and never connects; the reaper deletes its session
// after the readiness limit plus the claim grace (the stack's limit and grace).
func testUnclaimedReaped(t *testing.T, st *Stack, limit, grace time.Duration) {
	ctx, cancel := context.WithTimeout(t.Context(), testPlayerTimeout)
	defer cancel()
	sess, err := client.Request(ctx, st.Info().HTTPURL, st.Info().AppName, st.Info().AppVersion, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	granted := time.Now()
	if !simHasSession(st, sess.SessionID) {
		t.Fatalf("session %s not in the simulator right after it was granted", sess.SessionID)
	}
	eventually.True(t, limit+grace+15*time.Second, func() bool {
		return !simHasSession(st, sess.SessionID)
	}, "the unclaimed session %s reaped", sess.SessionID)
	// Not before its time: the entry lives the readiness limit + grace from the session's
	// creation, a moment before the grant (half the limit leaves room for a slow machine).
	if took := time.Since(granted); took < limit/2 {
		t.Errorf("reaped %s after the grant; the player should have had about %s", took, limit+grace)
	}
	// The reaper queues the delete before it drops the entry, so the deleter can win the race:
	// the entry goes a moment after the session (seen under -race in CI).
	eventually.True(t, 5*time.Second, func() bool {
		_, err := st.Buckets().UnclaimedSessions.Get(ctx, sess.SessionID)
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}, "unclaimed_sessions[%s] removed after the reap", sess.SessionID)
}

// testForgedRefused: tokens that look right but do not come from the matchmaker do not get in.
func testForgedRefused(t *testing.T, st *Stack) {
	ctx, cancel := context.WithTimeout(t.Context(), testPlayerTimeout)
	defer cancel()
	// A real player, so that a game server runs and its address is known.
	p, sess, err := roomclient.Join(ctx, st.Info().HTTPURL, st.Info().AppName, st.Info().AppVersion, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	server := sess.ServerAddr
	wrongKey, err := netcode.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		key      netcode.Key
		clientID uint64
		check    func(error) error
	}{
		{
			// Right format, wrong key: the server cannot open the token and stays silent.
			name: "wrong_key", key: wrongKey, clientID: p.ID() + 1,
			check: func(err error) error {
				if !errors.Is(err, netcode.ErrConnectionTimedOut) {
					return fmt.Errorf("got %v, want a connection timeout", err)
				}
				return nil
			},
		},
		{
			// Right key, but a client id the matchmaker never issued: no session, denied.
			name: "no_session", key: st.PrivateKey(), clientID: rand.Uint64(),
			check: func(err error) error {
				var de *netcode.DeniedError
				if !errors.As(err, &de) || de.Reason != netcode.DeniedInvalidToken {
					return fmt.Errorf("got %v, want denied (invalid token)", err)
				}
				return nil
			},
		},
		{
			// Right key, the id of a player who is connected right now: ignored (netcode drops
			// a request for a connected client id) or denied, never a second slot.
			name: "connected_client_id", key: st.PrivateKey(), clientID: p.ID(),
			check: func(err error) error {
				if !errors.Is(err, netcode.ErrConnectionTimedOut) && !errors.Is(err, netcode.ErrConnectionDenied) {
					return fmt.Errorf("got %v, want a timeout or denied", err)
				}
				return nil
			},
		},
	}
	// The attempts wait for a connection timeout each: side by side, in goroutines (parallel
	// subtests would queue behind -parallel, GOMAXPROCS by default).
	var attempts sync.WaitGroup
	for _, tt := range tests {
		attempts.Go(func() {
			m := &netcode.Minter{Key: tt.key}
			tok, err := m.Mint(netcode.TokenParams{
				ProtocolID: st.Info().ProtocolID, ClientID: tt.clientID,
				ServerAddrs: []netip.AddrPort{server}, ExpireSeconds: 10, TimeoutSeconds: 2,
			})
			if err != nil {
				t.Errorf("%s: %v", tt.name, err)
				return
			}
			dctx, cancel := context.WithTimeout(ctx, 8*time.Second)
			defer cancel()
			c, err := netcode.DialToken(dctx, tok, netcode.ClientConfig{Logger: slog.New(slog.DiscardHandler)})
			if err == nil {
				_ = c.Close()
				t.Errorf("%s: a forged token (client id %d) was let in", tt.name, tt.clientID)
				return
			}
			if cerr := tt.check(err); cerr != nil {
				t.Errorf("%s: %v", tt.name, cerr)
			}
		})
	}
	attempts.Wait()
	// The real player is still in and the forged ids never reached active_connections.
	select {
	case <-p.Done():
		t.Error("the real player was disconnected by the forged attempts")
	default:
	}
	if v, err := st.Buckets().ActiveConnections.Get(ctx, sess.SessionID); err != nil || string(v.Value()) != fmt.Sprint(p.ID()) {
		t.Errorf("active_connections[%s] = %v, %v; want the real player %d", sess.SessionID, v, err, p.ID())
	}
}

// testShutdownMidFlight: players connected, tokens unclaimed and requests in flight when the
// stack is shut down (what Ctrl-C does in `bevygap dev`): nothing leaks, nobody hangs.
func testShutdownMidFlight(t *testing.T, st *Stack) {
	ctx, cancel := context.WithTimeout(t.Context(), testPlayerTimeout)
	defer cancel()
	info := st.Info()
	var connected []*roomclient.Player
	for range 3 {
		p, _, err := roomclient.Join(ctx, info.HTTPURL, info.AppName, info.AppVersion, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		connected = append(connected, p)
	}
	if _, err := client.Request(ctx, info.HTTPURL, info.AppName, info.AppVersion, client.Options{}); err != nil {
		t.Fatal(err) // granted, never claimed
	}
	// Slow Edgegap down so that the next requests are in the middle of their session create.
	st.Sim().SetFaults(edgegapsim.Faults{Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{
		edgegap.EndpointSessionCreate: {Latency: edgegapsim.Duration(time.Second)},
	}})
	inflight := make(chan error, 5)
	for range cap(inflight) {
		go func() {
			_, err := client.Request(ctx, info.HTTPURL, info.AppName, info.AppVersion, client.Options{})
			inflight <- err
		}()
	}
	eventually.NoError(t, 10*time.Second, func() error {
		if n := inflightRequests(t, st); n < float64(cap(inflight)) {
			return fmt.Errorf("%v requests in flight", n)
		}
		return nil
	}, "requests in flight")

	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	start := time.Now()
	if err := st.Shutdown(sctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	t.Logf("shutdown took %s", time.Since(start))
	if n := st.Sim().LiveSessions(); n != 0 {
		t.Fatalf("%d sessions leaked: %+v", n, st.Sim().State().Sessions)
	}
	for range cap(inflight) {
		select {
		case <-inflight: // granted or failed: either way it returned
		case <-time.After(10 * time.Second):
			t.Fatal("an in-flight request still hangs after the shutdown")
		}
	}
	for i, p := range connected {
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Errorf("player %d still connected after the shutdown", i)
		}
	}
}

// inflightRequests reads the matchmaker's requests_in_flight gauge.
func inflightRequests(t *testing.T, st *Stack) float64 {
	t.Helper()
	mfs, err := st.Metrics().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "bevygap_matchmaker_requests_in_flight" && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no bevygap_matchmaker_requests_in_flight metric")
	return 0
}

func simHasSession(st *Stack, id string) bool {
	return slices.ContainsFunc(st.Sim().State().Sessions, func(s edgegapsim.SessionInfo) bool { return s.SessionID == id })
}

// activeConnections lists the keys of active_connections.
func activeConnections(t *testing.T, st *Stack) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	keys, err := st.Buckets().ActiveConnections.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil
	}
	if err != nil {
		t.Fatalf("listing active_connections: %v", err)
	}
	return keys
}
