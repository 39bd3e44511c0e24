package edgegapsim_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

// TestSeatReuse: sessions fill the sockets of a deployment (booting or ready) before a new one
// is started; a freed socket is reused, ready at once.
func TestSeatReuse(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	s1 := f.create(t, edgegap.SessionCreateRequest{IPList: []string{"1.1.1.1"}})
	s2 := f.create(t, edgegap.SessionCreateRequest{IPList: []string{"2.2.2.2"}})
	s3 := f.create(t, edgegap.SessionCreateRequest{IPList: []string{"3.3.3.3"}})
	g1, g2, g3 := f.get(t, s1), f.get(t, s2), f.get(t, s3)
	if g1.Deployment.RequestID != g2.Deployment.RequestID {
		t.Errorf("second session should share the first deployment")
	}
	if g3.Deployment.RequestID == g1.Deployment.RequestID {
		t.Errorf("third session must get a new deployment (2 sockets)")
	}
	for _, g := range []*edgegap.Session{g1, g2, g3} {
		if g.Ready || !g.Linked || !edgegap.StatusIs(g.Status, edgegap.SessionStatusLinked) ||
			!edgegap.StatusIs(g.Deployment.Status, edgegap.DeploymentStatusDeploying) {
			t.Errorf("before boot: %+v", g)
		}
	}
	f.clock.Advance(2 * time.Second)
	if g := f.get(t, s1); g.Ready || g.Elapsed != 2 {
		t.Errorf("at 2 s: ready=%v elapsed=%d, want false 2", g.Ready, g.Elapsed)
	}
	f.clock.Advance(time.Second)
	for _, id := range []string{s1, s2, s3} {
		if g := f.get(t, id); !g.Ready || !edgegap.StatusIs(g.Status, "READY") {
			t.Errorf("after boot %s: %+v", id, g)
		}
	}
	if _, err := f.client.DeleteSession(context.Background(), s1); err != nil {
		t.Fatal(err)
	}
	s4 := f.create(t, edgegap.SessionCreateRequest{IPList: []string{"4.4.4.4"}})
	g4 := f.get(t, s4)
	if !g4.Ready || g4.Deployment.RequestID != g1.Deployment.RequestID {
		t.Errorf("reused socket should be ready at once on %s: %+v", g1.Deployment.RequestID, g4)
	}
	st := f.sim.State()
	if st.LiveSessions != 3 || st.LiveDeployments != 2 {
		t.Errorf("state: %d sessions %d deployments, want 3 and 2", st.LiveSessions, st.LiveDeployments)
	}
}

// TestSessionKinds: a Seat session takes one socket per user, a Match session one socket; a
// Match session gets a deployment of its own unless it names one (deployment_request_id).
func TestSessionKinds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *edgegapsim.Config) {
		c.Apps = append(c.Apps, edgegapsim.AppConfig{Name: "match", Versions: []edgegapsim.VersionConfig{{
			Name: "m1", Kind: "Match", Sockets: 2}}})
	})
	users := []string{"1.1.1.1", "2.2.2.2", "3.3.3.3"}
	_, err := f.client.CreateSession(context.Background(), edgegap.SessionCreateRequest{AppName: "game", IPList: users})
	if !errors.Is(err, edgegap.ErrBadRequest) {
		t.Errorf("3-user seat session on 2 sockets: err %v, want 400", err)
	}
	m1 := f.create(t, edgegap.SessionCreateRequest{AppName: "match", IPList: users})
	m2 := f.create(t, edgegap.SessionCreateRequest{AppName: "match", IPList: users})
	g1, g2 := f.get(t, m1), f.get(t, m2)
	if g1.Kind != "Match" || g1.UserCount != 3 || g1.Deployment.RequestID == g2.Deployment.RequestID ||
		*g1.Deployment.SocketsUsage != 1 || *g2.Deployment.SocketsUsage != 1 {
		t.Errorf("match sessions: %+v / %+v", g1, g2.Deployment)
	}
	m3 := f.create(t, edgegap.SessionCreateRequest{AppName: "match", IPList: users[:1], DeploymentRequestID: g1.Deployment.RequestID})
	if g3 := f.get(t, m3); g3.Deployment.RequestID != g1.Deployment.RequestID || *g3.Deployment.SocketsUsage != 2 {
		t.Errorf("linked match session: %+v", g3.Deployment)
	}
}

// TestVersionSelection: without version_name the last active version is used; an inactive
// version is refused with 400.
func TestVersionSelection(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *edgegapsim.Config) {
		c.Apps[0].Versions = append(c.Apps[0].Versions,
			edgegapsim.VersionConfig{Name: "v2"},
			edgegapsim.VersionConfig{Name: "v3", Active: edgegap.Ptr(false)})
	})
	c, err := f.client.CreateSession(context.Background(), edgegap.SessionCreateRequest{AppName: "game"})
	if err != nil || c.Version != "v2" {
		t.Fatalf("default version: %+v %v, want v2", c, err)
	}
	_, err = f.client.CreateSession(context.Background(), edgegap.SessionCreateRequest{AppName: "game", VersionName: "v3"})
	if edgegap.StatusCode(err) != 400 {
		t.Errorf("inactive version: %v, want 400", err)
	}
	v, err := f.client.GetAppVersion(context.Background(), "game", "v3")
	if err != nil || v.Active() {
		t.Errorf("GetAppVersion v3: %+v %v", v, err)
	}
}

// TestEmptyTTL: a deployment lives on for its empty time-to-live after its last session is
// deleted, then is terminated; deleted sessions answer 404.
func TestEmptyTTL(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	id := f.create(t, edgegap.SessionCreateRequest{})
	f.clock.Advance(3 * time.Second)
	if _, err := f.client.DeleteSession(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.GetSession(context.Background(), id); edgegap.StatusCode(err) != 404 {
		t.Errorf("deleted session: %v, want 404", err)
	}
	if _, err := f.client.DeleteSession(context.Background(), id); edgegap.StatusCode(err) != 404 || !errors.Is(err, edgegap.ErrNotFound) {
		t.Errorf("second delete: %v, want 404", err)
	}
	f.clock.Advance(10*time.Minute - time.Second)
	if n := f.sim.State().LiveDeployments; n != 1 {
		t.Fatalf("before TTL: %d deployments, want 1", n)
	}
	// A session arriving in time reuses the deployment and cancels the TTL.
	id2 := f.create(t, edgegap.SessionCreateRequest{})
	f.clock.Advance(time.Hour)
	if !f.get(t, id2).Ready {
		t.Fatal("reused deployment not ready")
	}
	if _, err := f.client.DeleteSession(context.Background(), id2); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Minute)
	if st := f.sim.State(); st.LiveDeployments != 0 || st.LiveSessions != 0 {
		t.Errorf("after TTL: %+v", st)
	}
}

// TestWebhooks: linked, ready and error webhooks reach the receiver with the documented body;
// the webhook_loss_rate fault drops them.
func TestWebhooks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *edgegapsim.Config) { c.Apps[0].Versions[0].Sockets = 1 })
	hook := f.hooks.srv.URL + "/hook/session"
	id := f.create(t, edgegap.SessionCreateRequest{WebhookURL: hook})
	w, err := edgegap.ParseSessionWebhook(f.hooks.next(t))
	if err != nil || w.SessionID != id || !edgegap.StatusIs(w.Status, edgegap.SessionStatusLinked) || w.Ready || !w.Linked {
		t.Fatalf("linked webhook: %+v %v", w, err)
	}
	f.clock.Advance(3 * time.Second)
	w, err = edgegap.ParseSessionWebhook(f.hooks.next(t))
	if err != nil || w.Status != "Ready" || !w.Ready || w.DeploymentRequestID == nil {
		t.Fatalf("ready webhook: %+v %v", w, err)
	}
	// Boot failure: linked, then error.
	f.sim.SetFaults(edgegapsim.Faults{BootFailureRate: 1})
	id2 := f.create(t, edgegap.SessionCreateRequest{WebhookURL: hook})
	f.hooks.next(t)
	f.clock.Advance(3 * time.Second)
	w, _ = edgegap.ParseSessionWebhook(f.hooks.next(t))
	if w.SessionID != id2 || w.Status != "Error" || w.Ready {
		t.Errorf("error webhook: %+v", w)
	}
	g := f.get(t, id2)
	if !edgegap.StatusIs(g.Status, edgegap.SessionStatusError) || g.Error == nil || g.Ready {
		t.Errorf("session on failed deployment: %+v", g)
	}
	// Lost webhooks.
	f.sim.SetFaults(edgegapsim.Faults{WebhookLossRate: 1})
	f.create(t, edgegap.SessionCreateRequest{WebhookURL: hook})
	f.clock.Advance(3 * time.Second)
	if st := f.sim.State().Webhooks; st.Lost != 2 {
		t.Errorf("webhook stats %+v, want 2 lost", st)
	}
	f.closeAndCheckWebhooks(t, 4)
}

// TestNeverReady: the never_ready_rate fault leaves a deployment booting forever.
func TestNeverReady(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *edgegapsim.Config) { c.Faults.NeverReadyRate = 1 })
	id := f.create(t, edgegap.SessionCreateRequest{})
	f.clock.Advance(time.Hour)
	if g := f.get(t, id); g.Ready || !edgegap.StatusIs(g.Deployment.Status, edgegap.DeploymentStatusDeploying) || g.Elapsed != 3600 {
		t.Errorf("never-ready session: %+v", g)
	}
}

// TestMaxDeployments: beyond the deployment limit a session create is refused.
func TestMaxDeployments(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *edgegapsim.Config) { c.MaxDeployments = 1 })
	f.create(t, edgegap.SessionCreateRequest{})
	f.create(t, edgegap.SessionCreateRequest{})
	_, err := f.client.CreateSession(context.Background(), edgegap.SessionCreateRequest{AppName: "game"})
	if edgegap.StatusCode(err) != edgegap.StatusNoCapacity {
		t.Errorf("third session: %v, want %d", err, edgegap.StatusNoCapacity)
	}
}

// TestInProcessGameServer: a FuncLauncher game server reads its ARBITRIUM_* environment,
// fetches its context and stops its deployment with the delete URL; the sessions on it then
// answer 410.
func TestInProcessGameServer(t *testing.T) {
	t.Parallel()
	type result struct {
		ctx *edgegap.DeploymentContext
		err error
	}
	results := make(chan result, 1)
	stop := make(chan struct{})
	stopped := make(chan struct{}) // closed when the game server's self-stop call has returned
	f := newFixture(t, func(c *edgegapsim.Config) {
		c.Launcher = edgegapsim.FuncLauncher(func(ctx context.Context, env map[string]string) error {
			arb, err := edgegap.ArbitriumFromEnv(envGetter(env))
			if err != nil {
				results <- result{err: err}
				return err
			}
			gs := edgegap.NewClient("", "")
			dc, err := gs.GetContext(ctx, arb.ContextURL, arb.ContextToken)
			results <- result{dc, err}
			select {
			case <-stop:
			case <-ctx.Done():
				return ctx.Err()
			}
			_, err = gs.SelfStop(ctx, arb.DeleteURL, arb.DeleteToken)
			close(stopped) // err may be ctx's: the stop cancels this game server's context
			if err != nil {
				return err
			}
			<-ctx.Done()
			return nil
		})
	})
	id := f.create(t, edgegap.SessionCreateRequest{})
	f.clock.Advance(3 * time.Second)
	r := <-results
	if r.err != nil {
		t.Fatalf("game server: %v", r.err)
	}
	g := f.get(t, id)
	if r.ctx.Deployment.RequestID != g.Deployment.RequestID || r.ctx.Deployment.PublicIP != "127.0.0.1" ||
		r.ctx.Deployment.Location.City != "Montreal" || *r.ctx.Deployment.Sockets != 2 || len(r.ctx.Raw) == 0 {
		t.Errorf("context: %+v", r.ctx.Deployment)
	}
	// Wrong context token: 401.
	_, err := edgegap.NewClient("", "").GetContext(context.Background(),
		f.srv.URL+"/v1/context/"+g.Deployment.RequestID+"/1", "wrong")
	if !errors.Is(err, edgegap.ErrUnauthorized) {
		t.Errorf("wrong context token: %v", err)
	}
	if st := f.sim.State(); !st.Deployments[0].Running {
		t.Errorf("game server not running: %+v", st.Deployments[0])
	}
	close(stop)
	<-stopped
	if n := f.sim.State().LiveDeployments; n != 0 {
		t.Errorf("%d deployments after the self-stop, want 0", n)
	}
	_, err = f.client.GetSession(context.Background(), id)
	if edgegap.StatusCode(err) != http.StatusGone || !errors.Is(err, edgegap.ErrNotFound) {
		t.Errorf("session of a stopped deployment: %v, want 410", err)
	}
	if _, err := f.client.DeleteSession(context.Background(), id); edgegap.StatusCode(err) != http.StatusGone {
		t.Errorf("delete after stop: %v, want 410", err)
	}
}

// TestGameServerCrash: a game server exiting with an error puts its deployment in error.
func TestGameServerCrash(t *testing.T) {
	t.Parallel()
	crash := make(chan struct{})
	f := newFixture(t, func(c *edgegapsim.Config) {
		c.Launcher = edgegapsim.FuncLauncher(func(ctx context.Context, env map[string]string) error {
			select {
			case <-crash:
				return errors.New("segfault")
			case <-ctx.Done():
				return nil
			}
		})
	})
	id := f.create(t, edgegap.SessionCreateRequest{WebhookURL: f.hooks.srv.URL})
	f.hooks.next(t)
	f.clock.Advance(3 * time.Second)
	f.hooks.next(t)
	close(crash)
	w, _ := edgegap.ParseSessionWebhook(f.hooks.next(t))
	if w.Status != "Error" {
		t.Errorf("webhook after crash: %+v", w)
	}
	g := f.get(t, id)
	if !edgegap.StatusIs(g.Deployment.Status, "ERROR") || g.Error == nil {
		t.Errorf("after crash: %+v", g)
	}
	// New sessions do not land on the broken deployment.
	id2 := f.create(t, edgegap.SessionCreateRequest{})
	if f.get(t, id2).Deployment.RequestID == g.Deployment.RequestID {
		t.Error("session linked to a crashed deployment")
	}
}

// TestLaunchWithoutBaseURL: without a base URL the game server cannot be given its context
// URL, so the deployment fails instead of running with a broken environment.
func TestLaunchWithoutBaseURL(t *testing.T) {
	t.Parallel()
	clock := edgegapsim.NewFakeClock(testStart)
	sim, err := edgegapsim.New(edgegapsim.Config{
		APIKeys: []string{testKey}, Clock: clock, Seed: 1, Logger: discard(),
		Apps:     []edgegapsim.AppConfig{{Name: "game", Versions: []edgegapsim.VersionConfig{{Name: "v1"}}}},
		Launcher: edgegapsim.FuncLauncher(func(ctx context.Context, _ map[string]string) error { <-ctx.Done(); return nil }),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close(context.Background())
	rec := newRecorder(sim, "POST", "/v1/session", `{"app_name":"game"}`)
	if rec.Code != 200 {
		t.Fatalf("create: %d %s", rec.Code, rec.Body)
	}
	clock.Advance(10 * time.Second)
	if st := sim.State(); st.Deployments[0].Status != edgegap.DeploymentStatusError {
		t.Errorf("deployment %+v, want error", st.Deployments[0])
	}
}

// TestNewValidation: unusable configurations are refused.
func TestNewValidation(t *testing.T) {
	t.Parallel()
	app := []edgegapsim.AppConfig{{Name: "a", Versions: []edgegapsim.VersionConfig{{Name: "v"}}}}
	for _, c := range []struct {
		name string
		cfg  edgegapsim.Config
	}{
		{"no api key", edgegapsim.Config{Apps: app}},
		{"empty api key", edgegapsim.Config{APIKeys: []string{""}}},
		{"hostname public ip", edgegapsim.Config{APIKeys: []string{"k"}, PublicIP: "example.com"}},
		{"bad kind", edgegapsim.Config{APIKeys: []string{"k"}, Apps: []edgegapsim.AppConfig{{Name: "a",
			Versions: []edgegapsim.VersionConfig{{Name: "v", Kind: "Default"}}}}}},
		{"bad protocol", edgegapsim.Config{APIKeys: []string{"k"}, Apps: []edgegapsim.AppConfig{{Name: "a",
			Versions: []edgegapsim.VersionConfig{{Name: "v", Ports: []edgegapsim.PortConfig{{Name: "p", Protocol: "SCTP"}}}}}}}},
		{"duplicate version", edgegapsim.Config{APIKeys: []string{"k"}, Apps: []edgegapsim.AppConfig{{Name: "a",
			Versions: []edgegapsim.VersionConfig{{Name: "v"}, {Name: "v"}}}}}},
	} {
		if sim, err := edgegapsim.New(c.cfg); err == nil {
			_ = sim.Close(context.Background())
			t.Errorf("%s: New succeeded", c.name)
		}
	}
}

// TestServe: Serve answers on its listener (and takes its base URL from it) until ctx ends,
// then stops accepting, closes the simulator — stopping every game server — and returns nil.
func TestServe(t *testing.T) {
	t.Parallel()
	clock := edgegapsim.NewFakeClock(testStart)
	running, stopped := make(chan string, 1), make(chan struct{})
	sim, err := edgegapsim.New(edgegapsim.Config{
		APIKeys: []string{testKey}, Clock: clock, Seed: 1, Logger: discard(), BootJitter: -1,
		Apps: []edgegapsim.AppConfig{{Name: "game", Versions: []edgegapsim.VersionConfig{{Name: "v1"}}}},
		Launcher: edgegapsim.FuncLauncher(func(ctx context.Context, env map[string]string) error {
			running <- env[edgegap.EnvContextURL]
			<-ctx.Done()
			close(stopped)
			return nil
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- sim.Serve(ctx, ln) }()
	base := "http://" + ln.Addr().String()
	c := edgegap.NewClient(base, testKey, edgegap.WithRetries(1, 0, 0))
	if _, err := c.CreateSession(t.Context(), edgegap.SessionCreateRequest{AppName: "game"}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(edgegapsim.DefaultBootTime)
	if u := <-running; !strings.HasPrefix(u, base+"/v1/context/") {
		t.Errorf("context URL %q is not on the listener's address %s", u, base)
	}
	cancel()
	select {
	case err := <-served:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	select {
	case <-stopped:
	default:
		t.Error("Serve returned with the game server still running")
	}
	if st := sim.State(); st.LiveDeployments != 0 {
		t.Errorf("%d deployments after Serve returned", st.LiveDeployments)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("still accepting after Serve returned")
	}
}
