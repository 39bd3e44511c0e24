package edgegapsim

import (
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"sort"
	"sync"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/internal/serve"
)

// Simulator is a local stand-in for the Edgegap API. It is an http.Handler; serve it with
// Serve, or mount it in an httptest.Server (then call SetBaseURL). It is safe for concurrent
// use. Close stops every game server it started.
type Simulator struct {
	cfg      Config
	clock    Clock
	log      *slog.Logger
	launcher Launcher
	hooks    *webhookSender
	mux      *http.ServeMux
	// bodies holds *jsonBody: API answers are encoded into reused buffers (http.go writeAPI).
	bodies sync.Pool

	runCtx    context.Context
	runCancel context.CancelFunc
	procs     sync.WaitGroup
	// stopping is closed when Serve's context ends or Close is called: calls waiting out an
	// injected latency then answer at once, so the HTTP shutdown does not wait for them.
	stopping chan struct{}
	stopOnce sync.Once
	// listed is the session list in list order, kept between GET /v1/sessions pages (see
	// listedSessionsLocked).
	listed []*session

	mu          sync.Mutex
	baseURL     string
	rng         *rand.Rand
	apps        map[string]*appState
	appOrder    []string
	nextVerID   int
	sessions    map[string]*session
	gone        map[string]time.Time // sessions whose deployment was terminated -> when
	deployments map[string]*deployment
	ports       map[int]bool // ports of live deployments
	faults      Faults
	calls       map[edgegap.Endpoint]map[int]uint64
	closed      bool
}

type appState struct {
	cfg      AppConfig
	created  time.Time
	versions map[string]*versionState
	order    []string
}

type versionState struct {
	cfg     VersionConfig
	id      int
	created time.Time
}

type session struct {
	id         string
	app        string
	version    *versionState
	versionNm  string
	users      []string
	sockets    int
	created    time.Time
	webhookURL string
	dep        *deployment
}

type deployment struct {
	id          string
	app         string
	versionName string
	version     *versionState
	status      string
	errMsg      string
	created     time.Time
	ports       map[string]edgegap.EnvPort
	portOrder   []string
	sessions    map[string]*session
	usage       int
	contextTok  string
	deleteTok   string
	securityNum int
	accessPoint int
	neverReady  bool
	cancel      context.CancelFunc
	ctx         context.Context
	bootTimer   Timer
	ttlTimer    Timer
	ttlGen      int
	running     bool // a game server process is running
}

// New returns a simulator configured by cfg.
func New(cfg Config) (*Simulator, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	seed := cfg.Seed
	if seed == 0 {
		var b [8]byte
		if _, err := crand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("edgegapsim: seed: %w", err)
		}
		seed = binary.LittleEndian.Uint64(b[:])
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Simulator{
		cfg:         cfg,
		clock:       cfg.Clock,
		log:         cfg.Logger,
		launcher:    cfg.Launcher,
		runCtx:      ctx,
		runCancel:   cancel,
		stopping:    make(chan struct{}),
		baseURL:     cfg.BaseURL,
		rng:         rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		apps:        map[string]*appState{},
		nextVerID:   1000,
		sessions:    map[string]*session{},
		gone:        map[string]time.Time{},
		deployments: map[string]*deployment{},
		ports:       map[int]bool{},
		faults:      cfg.Faults.clone(),
		calls:       map[edgegap.Endpoint]map[int]uint64{},
	}
	s.hooks = newWebhookSender(ctx, cfg.HTTPClient, cfg.WebhookTimeout.D(), cfg.Logger)
	s.mux = s.newMux()
	for _, a := range cfg.Apps {
		if err := s.addAppLocked(a); err != nil {
			cancel()
			s.hooks.close()
			return nil, err
		}
	}
	return s, nil
}

// AddApp registers an application and its versions, or adds versions to a known application
// (replacing versions of the same name).
func (s *Simulator) AddApp(a AppConfig) error {
	a, err := a.withDefaults()
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addAppLocked(a)
}

func (s *Simulator) addAppLocked(a AppConfig) error {
	now := s.clock.Now()
	st, ok := s.apps[a.Name]
	if !ok {
		st = &appState{cfg: a, created: now, versions: map[string]*versionState{}}
		s.apps[a.Name] = st
		s.appOrder = append(s.appOrder, a.Name)
	}
	st.cfg.Active = a.Active
	for _, v := range a.Versions {
		if _, exists := st.versions[v.Name]; !exists {
			st.order = append(st.order, v.Name)
		}
		s.nextVerID++
		st.versions[v.Name] = &versionState{cfg: v, id: s.nextVerID, created: now}
	}
	return nil
}

// SetBaseURL sets the URL game servers use to reach the simulator (for ARBITRIUM_CONTEXT_URL
// and ARBITRIUM_DELETE_URL), e.g. an httptest.Server's URL.
func (s *Simulator) SetBaseURL(u string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.baseURL = trimSlash(u)
}

// shutdownGrace bounds each of the two steps of Serve's shutdown: finishing in-flight requests,
// then stopping the game servers.
const shutdownGrace = 5 * time.Second

// Serve serves the simulator on ln until ctx is done, then shuts the HTTP server down
// gracefully and closes the simulator (stopping every game server). If no base URL is set yet,
// it becomes http://<ln address>.
func (s *Simulator) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if s.baseURL == "" {
		s.baseURL = "http://" + ln.Addr().String()
	}
	s.mu.Unlock()
	defer context.AfterFunc(ctx, s.stopServing)()
	err := serve.HTTP(ctx, serve.NewServer(s, s.log), ln, shutdownGrace, nil)
	if err != nil {
		err = fmt.Errorf("edgegapsim: %w", err)
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	return errors.Join(err, s.Close(cctx))
}

// Close terminates every deployment (stopping their game servers), stops webhook delivery and
// waits, until ctx is done, for game servers to exit.
func (s *Simulator) Close(ctx context.Context) error {
	s.stopServing()
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for _, d := range s.sortedDeployments() {
			s.terminateLocked(d, "simulator closed")
		}
	}
	s.mu.Unlock()
	s.runCancel()
	s.hooks.close()
	done := make(chan struct{})
	go func() {
		s.procs.Wait()
		s.hooks.wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("edgegapsim: close: %w", ctx.Err())
	}
}

// SetFaults replaces the fault injection setting.
func (s *Simulator) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f.clone()
}

// Faults returns the current fault injection setting.
func (s *Simulator) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults.clone()
}

// errAPI is an error answer of the simulated API.
type errAPI struct {
	status  int
	message string
}

func (e *errAPI) Error() string { return e.message }

func apiErr(status int, msg string) error { return &errAPI{status: status, message: msg} }

// randHex returns n random hex digits from the seeded generator. Caller holds s.mu.
func (s *Simulator) randHex(n int) string {
	b := make([]byte, (n+1)/2)
	for i := range b {
		b[i] = byte(s.rng.UintN(256))
	}
	return hex.EncodeToString(b)[:n]
}

// version resolves app + optional version name. Caller holds s.mu.
func (s *Simulator) version(appName, versionName string, status int) (*appState, *versionState, error) {
	a, ok := s.apps[appName]
	if !ok {
		return nil, nil, apiErr(status, edgegap.MessageAppNotFound)
	}
	if versionName == "" {
		for i := len(a.order) - 1; i >= 0; i-- {
			if v := a.versions[a.order[i]]; *v.cfg.Active {
				return a, v, nil
			}
		}
		return nil, nil, apiErr(http.StatusBadRequest, edgegap.MessageVersionInactive)
	}
	v, ok := a.versions[versionName]
	if !ok {
		return nil, nil, apiErr(status, edgegap.MessageVersionNotFound)
	}
	return a, v, nil
}

// createSession implements POST /v1/session. Caller holds s.mu.
func (s *Simulator) createSessionLocked(req edgegap.SessionCreateRequest) (*session, error) {
	if req.AppName == "" {
		return nil, apiErr(http.StatusBadRequest, "app_name is required")
	}
	a, v, err := s.version(req.AppName, req.VersionName, edgegap.StatusUnknownAppOnCreate)
	if err != nil {
		return nil, err
	}
	if !*a.cfg.Active {
		return nil, apiErr(http.StatusBadRequest, edgegap.MessageAppInactive)
	}
	if !*v.cfg.Active {
		return nil, apiErr(http.StatusBadRequest, edgegap.MessageVersionInactive)
	}
	users := make([]string, 0, len(req.IPList)+len(req.GeoIPList))
	for _, ip := range req.IPList {
		if _, err := netipParse(ip); err != nil {
			return nil, apiErr(http.StatusBadRequest, fmt.Sprintf("invalid IP in ip_list: %q", ip))
		}
		users = append(users, ip)
	}
	for _, g := range req.GeoIPList {
		if _, err := netipParse(g.IP); err != nil {
			return nil, apiErr(http.StatusBadRequest, fmt.Sprintf("invalid IP in geo_ip_list: %q", g.IP))
		}
		users = append(users, g.IP)
	}
	if req.WebhookURL != "" {
		u, err := url.Parse(req.WebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, apiErr(http.StatusBadRequest, "webhook_url must be an http(s) URL")
		}
	}
	need := 1
	if v.cfg.Kind == edgegap.SessionKindSeat && len(users) > 1 {
		need = len(users)
	}
	if need > v.cfg.Sockets {
		return nil, apiErr(http.StatusBadRequest, fmt.Sprintf("session needs %d sockets, deployments have %d", need, v.cfg.Sockets))
	}
	var dep *deployment
	if req.DeploymentRequestID != "" {
		d, ok := s.deployments[req.DeploymentRequestID]
		if !ok || d.app != a.cfg.Name || d.versionName != v.cfg.Name {
			return nil, apiErr(http.StatusBadRequest, edgegap.MessageDeploymentNotFound)
		}
		if !joinable(d) || d.usage+need > v.cfg.Sockets {
			return nil, apiErr(http.StatusConflict, "deployment has no free socket")
		}
		dep = d
	} else if v.cfg.Kind != edgegap.SessionKindMatch {
		// A Match session without deployment_request_id gets a fresh deployment of its own
		// (the simulator's choice, see VersionConfig.Kind): dep stays nil.
		dep = s.pickDeploymentLocked(a.cfg.Name, v.cfg.Name, need)
	}
	if dep == nil {
		if s.cfg.MaxDeployments > 0 && len(s.deployments) >= s.cfg.MaxDeployments {
			return nil, apiErr(edgegap.StatusNoCapacity, edgegap.MessageNoCapacity)
		}
		dep, err = s.newDeploymentLocked(a, v)
		if err != nil {
			return nil, apiErr(http.StatusServiceUnavailable, err.Error())
		}
	}
	id := s.randHex(12) + "-S"
	for s.sessions[id] != nil {
		id = s.randHex(12) + "-S"
	}
	sess := &session{id: id, app: a.cfg.Name, version: v, versionNm: v.cfg.Name, users: users,
		sockets: need, created: s.clock.Now(), webhookURL: req.WebhookURL, dep: dep}
	s.sessions[id] = sess
	dep.sessions[id] = sess
	dep.usage += need
	if dep.ttlTimer != nil {
		dep.ttlTimer.Stop()
		dep.ttlTimer = nil
	}
	dep.ttlGen++
	s.webhookLocked(sess)
	return sess, nil
}

// joinable reports whether new sessions may be linked to d.
func joinable(d *deployment) bool {
	return d.status == edgegap.DeploymentStatusReady || d.status == edgegap.DeploymentStatusDeploying
}

// pickDeploymentLocked returns a deployment of app/version with need free sockets, preferring
// ready ones, then the oldest. Caller holds s.mu.
func (s *Simulator) pickDeploymentLocked(app, version string, need int) *deployment {
	var best *deployment
	for _, d := range s.sortedDeployments() {
		if d.app != app || d.versionName != version || !joinable(d) || d.usage+need > d.version.cfg.Sockets {
			continue
		}
		if d.status == edgegap.DeploymentStatusReady {
			return d
		}
		if best == nil {
			best = d
		}
	}
	return best
}

// sortedDeployments returns the live deployments, oldest first. Caller holds s.mu.
func (s *Simulator) sortedDeployments() []*deployment {
	out := make([]*deployment, 0, len(s.deployments))
	for _, d := range s.deployments {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].created.Equal(out[j].created) {
			return out[i].id < out[j].id
		}
		return out[i].created.Before(out[j].created)
	})
	return out
}

// newDeploymentLocked starts a deployment of v: ports are allocated now, the game server is
// launched when the boot time has passed. Caller holds s.mu.
func (s *Simulator) newDeploymentLocked(a *appState, v *versionState) (*deployment, error) {
	id := s.randHex(12)
	for s.deployments[id] != nil {
		id = s.randHex(12)
	}
	ports := make(map[string]edgegap.EnvPort, len(v.cfg.Ports))
	order := make([]string, 0, len(v.cfg.Ports))
	var allocated []int
	for _, p := range v.cfg.Ports {
		var port int
		var err error
		if s.cfg.AllocatePort != nil {
			port, err = s.cfg.AllocatePort(p.Protocol)
		} else {
			port, err = freePort(p.Protocol, s.ports)
		}
		if err != nil {
			for _, q := range allocated {
				delete(s.ports, q)
			}
			return nil, err
		}
		s.ports[port] = true
		allocated = append(allocated, port)
		ports[p.Name] = edgegap.EnvPort{Name: p.Name, Internal: port, External: port, Protocol: p.Protocol}
		order = append(order, p.Name)
	}
	ctx, cancel := context.WithCancel(s.runCtx)
	d := &deployment{
		id: id, app: a.cfg.Name, versionName: v.cfg.Name, version: v,
		status: edgegap.DeploymentStatusDeploying, created: s.clock.Now(),
		ports: ports, portOrder: order, sessions: map[string]*session{},
		contextTok: s.randHex(32), deleteTok: s.randHex(32),
		securityNum: 1 + s.rng.IntN(9999), accessPoint: 1 + s.rng.IntN(999),
		neverReady: s.roll(s.faults.NeverReadyRate),
		ctx:        ctx, cancel: cancel,
	}
	s.deployments[id] = d
	boot := s.cfg.BootTime.D()
	if v.cfg.BootTime != nil {
		boot = v.cfg.BootTime.D()
	}
	if j := s.cfg.BootJitter.D(); j > 0 {
		boot += time.Duration(s.rng.Int64N(int64(j)))
	}
	d.bootTimer = s.clock.AfterFunc(boot, func() { s.bootDone(d) })
	s.log.Info("deployment created", logkey.Deployment, id, logkey.Game, d.app, logkey.Version, d.versionName, "boot", boot)
	return d, nil
}

// roll returns true with probability p. Caller holds s.mu.
func (s *Simulator) roll(p float64) bool {
	return p > 0 && (p >= 1 || s.rng.Float64() < p)
}

// bootDone runs when a deployment's boot time has passed: it launches the game server and
// marks the deployment ready (or in error).
func (s *Simulator) bootDone(d *deployment) {
	s.mu.Lock()
	if s.deployments[d.id] != d || d.status != edgegap.DeploymentStatusDeploying {
		s.mu.Unlock()
		return
	}
	d.bootTimer = nil
	if d.neverReady {
		s.log.Info("deployment never gets ready (injected fault)", logkey.Deployment, d.id)
		s.mu.Unlock()
		return
	}
	if s.roll(s.faults.BootFailureRate) {
		s.failLocked(d, "deployment failed to start (injected fault)")
		s.mu.Unlock()
		return
	}
	if s.launcher == nil {
		s.readyLocked(d)
		s.mu.Unlock()
		return
	}
	if s.baseURL == "" {
		s.failLocked(d, "simulator base URL unknown: call SetBaseURL or Serve")
		s.mu.Unlock()
		return
	}
	spec := s.launchSpecLocked(d)
	ctx := d.ctx
	s.mu.Unlock()

	proc, err := s.launcher.Launch(ctx, spec)

	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.deployments[d.id] == d {
			s.failLocked(d, "game server did not start: "+err.Error())
		}
		return
	}
	d.running = true
	s.procs.Add(1)
	go s.watch(d, proc)
	if s.deployments[d.id] != d || d.status != edgegap.DeploymentStatusDeploying {
		d.cancel() // terminated while launching
		return
	}
	s.readyLocked(d)
}

// watch waits for a game server to exit and marks its deployment accordingly.
func (s *Simulator) watch(d *deployment, proc Process) {
	defer s.procs.Done()
	<-proc.Done()
	err := proc.Err()
	s.mu.Lock()
	defer s.mu.Unlock()
	d.running = false
	if s.deployments[d.id] != d || d.ctx.Err() != nil {
		return // stopped by the simulator
	}
	if err != nil {
		s.log.Warn("game server crashed", logkey.Deployment, d.id, logkey.Err, err)
		s.failLocked(d, "game server exited: "+err.Error())
		return
	}
	s.log.Info("game server exited", logkey.Deployment, d.id)
	s.terminateLocked(d, "game server exited")
}

// readyLocked marks d ready and notifies its sessions. Caller holds s.mu.
func (s *Simulator) readyLocked(d *deployment) {
	d.status = edgegap.DeploymentStatusReady
	s.log.Info("deployment ready", logkey.Deployment, d.id, "sessions", len(d.sessions))
	for _, sess := range sortedSessions(d.sessions) {
		s.webhookLocked(sess)
	}
	if d.usage == 0 {
		s.armTTLLocked(d)
	}
}

// failLocked puts d in error: its game server is stopped, its sessions report the error.
// Caller holds s.mu.
func (s *Simulator) failLocked(d *deployment, msg string) {
	if d.bootTimer != nil {
		d.bootTimer.Stop()
		d.bootTimer = nil
	}
	d.status = edgegap.DeploymentStatusError
	d.errMsg = msg
	d.cancel()
	s.log.Warn("deployment in error", logkey.Deployment, d.id, logkey.Err, msg)
	for _, sess := range sortedSessions(d.sessions) {
		s.webhookLocked(sess)
	}
	if d.usage == 0 {
		s.armTTLLocked(d)
	}
}

// terminateLocked ends d: its game server is stopped, its sessions become gone (410).
// Caller holds s.mu.
func (s *Simulator) terminateLocked(d *deployment, reason string) {
	if s.deployments[d.id] != d {
		return
	}
	if d.bootTimer != nil {
		d.bootTimer.Stop()
		d.bootTimer = nil
	}
	if d.ttlTimer != nil {
		d.ttlTimer.Stop()
		d.ttlTimer = nil
	}
	d.status = edgegap.DeploymentStatusTerminated
	d.cancel()
	delete(s.deployments, d.id)
	for _, p := range d.ports {
		delete(s.ports, p.External)
	}
	now := s.clock.Now()
	for id := range d.sessions {
		delete(s.sessions, id)
		s.gone[id] = now
	}
	s.pruneGoneLocked(now)
	s.log.Info("deployment terminated", logkey.Deployment, d.id, "reason", reason, "sessions", len(d.sessions))
}

// goneRetention is how long a session of a terminated deployment answers 410 (then 404).
const goneRetention = time.Hour

func (s *Simulator) pruneGoneLocked(now time.Time) {
	for id, t := range s.gone {
		if now.Sub(t) > goneRetention {
			delete(s.gone, id)
		}
	}
}

// armTTLLocked starts d's empty time-to-live. Caller holds s.mu.
func (s *Simulator) armTTLLocked(d *deployment) {
	if d.ttlTimer != nil {
		d.ttlTimer.Stop()
	}
	d.ttlGen++
	gen := d.ttlGen
	d.ttlTimer = s.clock.AfterFunc(d.version.cfg.EmptyTTL.D(), func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.deployments[d.id] != d || d.ttlGen != gen || d.usage != 0 {
			return
		}
		d.ttlTimer = nil
		s.terminateLocked(d, "empty time-to-live expired")
	})
}

// sessionLocked returns the live session id, or Edgegap's error for a session that ended (410)
// or never was (404). Caller holds s.mu.
func (s *Simulator) sessionLocked(id string) (*session, error) {
	sess, ok := s.sessions[id]
	if !ok {
		if _, gone := s.gone[id]; gone {
			return nil, apiErr(edgegap.StatusSessionGone, edgegap.MessageTerminated)
		}
		return nil, apiErr(http.StatusNotFound, edgegap.MessageSessionNotFound)
	}
	return sess, nil
}

// deleteSessionLocked implements DELETE /v1/session/{id}. Caller holds s.mu.
func (s *Simulator) deleteSessionLocked(id string) error {
	sess, err := s.sessionLocked(id)
	if err != nil {
		return err
	}
	delete(s.sessions, id)
	d := sess.dep
	delete(d.sessions, id)
	d.usage -= sess.sockets
	if d.usage <= 0 {
		d.usage = 0
		s.armTTLLocked(d)
	}
	return nil
}

// sessionStatus derives a session's GET status from its deployment.
func sessionStatus(sess *session) (status string, ready bool, errMsg *string) {
	switch sess.dep.status {
	case edgegap.DeploymentStatusReady:
		return edgegap.SessionStatusReady, true, nil
	case edgegap.DeploymentStatusError:
		msg := sess.dep.errMsg
		return edgegap.SessionStatusError, false, &msg
	default:
		return edgegap.SessionStatusLinked, false, nil
	}
}

func sortedSessions(m map[string]*session) []*session {
	out := make([]*session, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].created.Equal(out[j].created) {
			return out[i].id < out[j].id
		}
		return out[i].created.Before(out[j].created)
	})
	return out
}

// errClosed answers calls after Close.
var errClosed = errors.New("edgegapsim: simulator closed")

func trimSlash(u string) string {
	for len(u) > 0 && u[len(u)-1] == '/' {
		u = u[:len(u)-1]
	}
	return u
}
