package matchmaker

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/internal/natsembed"
	"github.com/bevygap-go/bevygap/protocol"
)

// gameServerDeath is an in-process game server that runs until the test kills it: with an error
// (a crash, kill -9: the simulator puts the deployment in error, like Edgegap, and sends the
// "Error" webhook) or cleanly (the deployment terminates, its sessions answer 410). Either way it
// never removes its active_connections key, as a killed process would not.
type gameServerDeath struct {
	kill  chan struct{}
	crash bool
}

func (g *gameServerDeath) launcher() edgegapsim.Launcher {
	return edgegapsim.FuncLauncher(func(ctx context.Context, _ map[string]string) error {
		select {
		case <-ctx.Done():
			return nil
		case <-g.kill:
			if g.crash {
				return errors.New("signal: killed")
			}
			return nil
		}
	})
}

// grantAndClaim requests a session and plays its game server's player connecting (the
// active_connections put), then waits until the matchmaker has seen the claim.
func (h *harness) grantAndClaim(t *testing.T) string {
	t.Helper()
	r := h.gensession(t, `{"client_ip":"81.2.69.160"}`)
	if r.errCode != "" {
		t.Fatalf("gensession: %s %s", r.errCode, r.errDesc)
	}
	sid := h.claim(t, strconv.FormatUint(h.clientIDOf(t, r.reply.ConnectToken), 10))
	eventually.True(t, 5*time.Second, func() bool {
		for _, mm := range h.mms {
			if mm.claims.count() != 1 || mm.unclaim.has(sid) {
				return false
			}
		}
		return true
	}, "claim of %s seen by the matchmakers", sid)
	return sid
}

// TestDeadGameServerSessionIsDeleted: a game server killed while its player is connected
// leaves its active_connections key behind; its session is still deleted within readiness
// limit + grace, through the "Error" webhook or, without webhooks, through reconciliation
// (session in error, or gone with its terminated deployment), and the stale key is removed.
func TestDeadGameServerSessionIsDeleted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		crash   bool
		webhook bool
		faults  edgegapsim.Faults
		// reconcile is the reconciliation interval: an hour proves the webhook path alone.
		reconcile time.Duration
		via       string // log line that names the path
	}{
		{name: "crash, error webhook", crash: true, webhook: true, reconcile: time.Hour, via: "error webhook"},
		{name: "crash, webhooks lost", crash: true, webhook: true, reconcile: 300 * time.Millisecond,
			faults: edgegapsim.Faults{WebhookLossRate: 1}, via: "reconcile: Status.ERROR"},
		{name: "crash, no webhook url", crash: true, reconcile: 300 * time.Millisecond, via: "reconcile: Status.ERROR"},
		{name: "clean exit, deployment terminated", webhook: true, reconcile: 300 * time.Millisecond, via: "reconcile: session gone on Edgegap (410)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			gs := &gameServerDeath{kill: make(chan struct{}), crash: tt.crash}
			h := newHarness(t, harnessOpts{webhook: tt.webhook, faults: tt.faults, launcher: gs.launcher(),
				configure: func(c *Config) {
					c.ReadinessLimit, c.ClaimGrace = 4*time.Second, time.Second
					c.ReconcileInterval = tt.reconcile
				}})
			ctx := context.Background()
			sid := h.grantAndClaim(t)
			if h.sim.LiveSessions() != 1 {
				t.Fatalf("live sessions %d before the kill", h.sim.LiveSessions())
			}
			killed := time.Now()
			close(gs.kill)
			bound := h.cfg.ReadinessLimit + h.cfg.ClaimGrace
			eventually.True(t, bound, func() bool { return h.sim.LiveSessions() == 0 }, "session of the dead game server deleted within limit + grace")
			t.Logf("session deleted %v after the kill", time.Since(killed).Round(time.Millisecond))
			eventually.True(t, 5*time.Second, func() bool {
				_, err := h.b.ActiveConnections.Get(ctx, sid)
				return errors.Is(err, jetstream.ErrKeyNotFound) && h.deleteQueueEmpty(t)
			}, "stale active_connections key removed, delete queue empty")
			if !strings.Contains(h.logs.String(), tt.via) {
				t.Errorf("no log line naming the path %q", tt.via)
			}
		})
	}
}

// TestForgedErrorWebhookIsIgnored: the webhook sink authenticates nobody, so an "Error" webhook
// for a claimed session ends it only when Edgegap confirms the error.
func TestForgedErrorWebhookIsIgnored(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, configure: func(c *Config) { c.ReconcileInterval = time.Hour }})
	sid := h.grantAndClaim(t)
	body, err := json.Marshal(edgegap.SessionWebhook{SessionID: sid, Status: "Error", Linked: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.nc.Publish(protocol.WebhookSubject("session"), body); err != nil {
		t.Fatal(err)
	}
	eventually.True(t, 5*time.Second, func() bool {
		return strings.Contains(h.logs.String(), "failed-session webhook not confirmed by Edgegap")
	}, "forged webhook checked")
	if h.sim.LiveSessions() != 1 {
		t.Fatal("a forged Error webhook deleted a live session")
	}
	h.disconnect(t, sid)
	h.noLeaks(t, 5*time.Second)
}

// TestWatchesResumeAfterNATSRestart: after a NATS server restart the KV watches start again as
// soon as the connection is back, so a player leaving right after it ends the session at once
// (the watches' ordered consumers would otherwise notice only after two missed idle heartbeats,
// 10 s, and the session would end through the unclaimed reaper or not at all).
func TestWatchesResumeAfterNATSRestart(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	srv, err := natsembed.Start(natsembed.Config{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	port := srv.Port()
	t.Cleanup(func() { srv.Shutdown() })
	h := newHarness(t, harnessOpts{nats: srv, webhook: true, configure: func(c *Config) {
		c.Buckets.Memory = false // survive the restart
		c.ReadinessLimit = 30 * time.Second
		c.ReconcileInterval = time.Hour // only the watch can notice the player leaving
	}})
	srv.Shutdown()
	srv2, err := natsembed.Start(natsembed.Config{StoreDir: dir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv2.Shutdown() })
	eventually.True(t, 10*time.Second, func() bool { return h.nc.IsConnected() && h.mms[0].nc.IsConnected() }, "clients reconnected")
	restarted := time.Now()
	// The matchmaker's subscriptions reach the server a moment after its reconnection.
	var reply *nats.Msg
	eventually.True(t, 10*time.Second, func() bool {
		var err error
		reply, err = h.nc.Request(protocol.SubjectGenSession, []byte(`{"client_ip":"81.2.69.160"}`), 5*time.Second)
		return err == nil
	}, "gensession answered after the restart")
	if code := reply.Header.Get("Nats-Service-Error-Code"); code != "" {
		t.Fatalf("gensession after the restart: %s %s", code, reply.Header.Get("Nats-Service-Error"))
	}
	var r protocol.GenSessionReply
	if err := json.Unmarshal(reply.Data, &r); err != nil {
		t.Fatal(err)
	}
	sid := h.claim(t, strconv.FormatUint(h.clientIDOf(t, r.ConnectToken), 10))
	h.disconnect(t, sid)
	eventually.True(t, 4*time.Second, func() bool { return h.sim.LiveSessions() == 0 }, "session deleted after its player left")
	t.Logf("granted, played and deleted %v after the reconnect", time.Since(restarted).Round(time.Millisecond))
	// Stop the matchmaker while its NATS is up (the cleanups stop the server first).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.mms[0].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestWatchKVRestartsStalledWatch: a watch that delivers nothing while its bucket's stream holds
// a newer entry at two checks in a row is started again (an ordered consumer lost with a
// cluster node while the connection stayed up); one that is merely behind and catches up, or a
// stream whose newest entry was purged after the replay, is left alone.
func TestWatchKVRestartsStalledWatch(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// afterReplay runs once the replay is done, with the stream's last sequence to set and
		// the watch's channel.
		afterReplay func(seq *atomic.Uint64, updates chan jetstream.KeyValueEntry)
		restartAt   time.Duration // 0 = no restart within a minute
	}{
		{name: "stalled", restartAt: 2 * watchStallCheck,
			afterReplay: func(seq *atomic.Uint64, _ chan jetstream.KeyValueEntry) { seq.Store(7) }},
		{name: "behind, then catches up",
			afterReplay: func(seq *atomic.Uint64, updates chan jetstream.KeyValueEntry) {
				seq.Store(7)
				time.Sleep(watchStallCheck + watchStallCheck/2) // one check sees it behind
				updates <- putEntry("k7", 7)
			}},
		{name: "newest entry purged before the replay",
			afterReplay: func(*atomic.Uint64, chan jetstream.KeyValueEntry) {}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				logs := &lockedBuffer{}
				m, _ := newUnitMatchmaker(t, nil, &fakeEdgegap{}, logs)
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var seq atomic.Uint64
				seq.Store(5) // revision 5 was purged: the replay ends at revision 4
				first := &fakeWatcher{updates: make(chan jetstream.KeyValueEntry, 4)}
				second := &fakeWatcher{updates: make(chan jetstream.KeyValueEntry, 4)}
				kv := &fakeKV{lastSeq: seq.Load, watches: []func() (jetstream.KeyWatcher, error){
					func() (jetstream.KeyWatcher, error) { return first, nil },
					func() (jetstream.KeyWatcher, error) { return second, nil },
				}}
				start := time.Now()
				ready := make(chan error, 1)
				go m.watchKV(ctx, kv, "active_connections", ready, nil, func(jetstream.KeyValueEntry, bool) {})
				first.updates <- putEntry("k4", 4)
				first.updates <- nil
				if err := <-ready; err != nil {
					t.Fatal(err)
				}
				tt.afterReplay(&seq, first.updates)
				time.Sleep(time.Minute)
				kv.mu.Lock()
				calls := kv.calls
				kv.mu.Unlock()
				var restarts []time.Duration
				for _, c := range calls[1:] {
					restarts = append(restarts, c.Sub(start))
				}
				switch {
				case tt.restartAt == 0 && len(restarts) != 0:
					t.Errorf("restarted at %v", restarts)
				case tt.restartAt != 0 && (len(restarts) != 1 || restarts[0] != tt.restartAt):
					t.Errorf("restarts at %v, want one at %v", restarts, tt.restartAt)
				}
				if stalled := strings.Contains(logs.String(), "watch delivered nothing while its bucket changed"); stalled != (tt.restartAt != 0) {
					t.Errorf("stall logged: %v", stalled)
				}
				cancel()
				close(first.updates)
				close(second.updates)
			})
		})
	}
}

// TestKeepalive: a stream silent for the keepalive interval gets a progress report, every
// message re-arms it, and nothing is sent after stop.
func TestKeepalive(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var got []string
		start := time.Now()
		k := newKeepalive(func(f protocol.Feedback) {
			mu.Lock()
			got = append(got, time.Since(start).String()+" "+f.Text)
			mu.Unlock()
		}, StreamKeepalive)
		time.Sleep(7 * time.Second) // report at 5 s
		k.Send(protocol.Progress("Queued: position 2"))
		time.Sleep(12 * time.Second) // reports at 12 s and 17 s
		k.stop()
		time.Sleep(time.Minute)
		want := []string{"5s Still working (5s)", "7s Queued: position 2", "12s Still working (12s)", "17s Still working (17s)"}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(got, want) {
			t.Errorf("sent %q, want %q", got, want)
		}
	})
}

// TestDeadSessionCheckSparesALeftPlayer: when the player leaves while Edgegap is being asked
// about the session, the liveness check queues nothing (the watcher handles the leave): no
// deletion is repeated.
func TestDeadSessionCheckSparesALeftPlayer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{configure: func(c *Config) { c.ReconcileInterval = time.Hour }})
	ctx := context.Background()
	mm := h.mms[0]
	rev, err := h.b.ActiveConnections.Put(ctx, "gone-S", []byte("7"))
	if err != nil {
		t.Fatal(err)
	}
	h.disconnect(t, "gone-S") // the player left after the check began
	mm.endDeadSession(ctx, "gone-S", rev, "test")
	if n := metricSum(t, h.registry(mm), "bevygap_matchmaker_session_deletes_enqueued_total", map[string]string{"reason": "server_gone"}); n != 0 {
		t.Fatalf("%v deletions queued for a session whose player left", n)
	}
	// Still claimed at that revision: queued.
	rev, err = h.b.ActiveConnections.Put(ctx, "dead-S", []byte("8"))
	if err != nil {
		t.Fatal(err)
	}
	mm.endDeadSession(ctx, "dead-S", rev, "test")
	if n := metricSum(t, h.registry(mm), "bevygap_matchmaker_session_deletes_enqueued_total", map[string]string{"reason": "server_gone"}); n != 1 {
		t.Fatalf("%v deletions queued for a dead claimed session, want 1", n)
	}
}

// TestReconcileDeletesOldOrphanSoon: an orphan of ours that Edgegap created long before the
// reconciler first saw it (a create that timed out on our side, answered by Edgegap later) is
// deleted on the next round, a fraction of readiness limit + grace later — not a whole limit +
// grace after its first sighting.
func TestReconcileDeletesOldOrphanSoon(t *testing.T) {
	t.Parallel()
	clock := edgegapsim.NewFakeClock(time.Now())
	h := newHarness(t, harnessOpts{webhook: true, clock: clock, configure: func(c *Config) {
		c.ReadinessLimit, c.ClaimGrace = 6*time.Second, 2*time.Second
		c.ReconcileInterval = time.Second
	}})
	s, err := h.newAPI().CreateSession(context.Background(), edgegap.SessionCreateRequest{AppName: h.cfg.AppName,
		IPList: []string{"1.2.3.4"}, WebhookURL: h.cfg.SessionWebhookURL})
	if err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour) // created an hour ago, as far as Edgegap tells
	// The round that first sees it makes it a suspect (the gauge counts it at that round's end).
	reg := h.registry(h.mms[0])
	eventually.True(t, 10*time.Second, func() bool {
		return metricSum(t, reg, "bevygap_matchmaker_unknown_sessions", nil) == 1
	}, "orphan %s seen by a reconcile round", s.SessionID)
	seen := time.Now()
	eventually.True(t, 10*time.Second, func() bool { return h.sim.LiveSessions() == 0 }, "old orphan %s deleted", s.SessionID)
	// Backdated to its creation, it is deleted on the next round, an interval (1 s) after the
	// first; without the backdating no round could delete it before limit + grace = 8 s after
	// the first sighting. The bound between leaves room for a loaded machine.
	took := time.Since(seen)
	if limit := h.cfg.ReadinessLimit + h.cfg.ClaimGrace; took >= limit*3/4 {
		t.Fatalf("old orphan deleted %v after its first sighting, not well before limit + grace (%v)", took, limit)
	}
	t.Logf("old orphan deleted %v after its first sighting", took.Round(time.Millisecond))
}
