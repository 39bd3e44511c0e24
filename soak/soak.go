package soak

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/internal/logkey"
)

// Soak is a running soak, as its faults see it.
type Soak struct {
	cfg   Config
	log   *slog.Logger
	quiet *slog.Logger // for the netcode clients: nothing
	sim   *simAdmin    // nil without Config.Simulator
	start time.Time

	faultMu    sync.Mutex
	activeSim  map[string]bool
	baseFaults edgegapsim.Faults

	mu          sync.Mutex
	byIP        map[netip.Addr]*player
	sessions    map[string]*session
	preexisting map[string]bool
	crashed     map[string]time.Time // deployment -> when it was crashed on purpose
	deployments []edgegapsim.DeploymentInfo
	windows     []window
	events      []string // notable events, for the report (bounded)
	pollErrors  int
	lastPollErr error
	polled      chan struct{} // closed and replaced after every poll
}

// session is a session seen in the simulator's list.
type session struct {
	id         string
	ip         netip.Addr
	deployment string
	player     *player // nil for a session of an IP no player of this run has
	created    time.Time
	firstSeen  time.Time
	gone       time.Time // zero while listed
	// underPlayer: deleted while its player was connected and had not chosen to leave.
	underPlayer bool
	// beforeConnect: deleted while its player held the token and had not connected yet.
	beforeConnect bool
}

// window is the time a fault was active.
type window struct {
	name       string
	start, end time.Time
	err        error
}

// maxEvents bounds the notable events kept for the report.
const maxEvents = 50

func (s *Soak) event(msg string, args ...any) {
	s.log.Warn("soak: "+msg, args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.events) < maxEvents {
		s.events = append(s.events, msg+attrText(args))
	}
}

func attrText(args []any) string {
	out := ""
	for i := 0; i+1 < len(args); i += 2 {
		out += " " + toString(args[i]) + "=" + toString(args[i+1])
	}
	return out
}

func toString(v any) string {
	return slog.AnyValue(v).String()
}

// Run runs the players of cfg against the stack, fires cfg.Faults, waits up to cfg.Grace for
// the sessions to be deleted, and reports. It returns an error only when it could not run at
// all (bad config, the simulator not answering at the start); what went wrong during the run is
// in the report. Cancelling ctx stops starting players and ends the running ones (they count
// as interrupted); the report is still returned.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	s := &Soak{cfg: cfg, log: cfg.Logger, quiet: slog.New(slog.DiscardHandler), activeSim: map[string]bool{},
		byIP: map[netip.Addr]*player{}, sessions: map[string]*session{}, preexisting: map[string]bool{},
		crashed: map[string]time.Time{}, polled: make(chan struct{})}
	if cfg.Simulator != "" {
		s.sim = newSimAdmin(cfg.Simulator)
		st, err := s.sim.state(ctx)
		if err != nil {
			return nil, err
		}
		for _, ss := range st.Sessions {
			s.preexisting[ss.SessionID] = true
		}
		if s.baseFaults, err = s.sim.faults(ctx); err != nil {
			return nil, err
		}
	}
	s.start = time.Now()
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	var watchWG sync.WaitGroup
	if s.sim != nil {
		watchWG.Go(func() { s.watch(watchCtx) })
	}
	if cfg.ProgressInterval > 0 {
		watchWG.Go(func() { s.progress(watchCtx) })
	}

	playCtx, stopPlay := context.WithCancel(ctx)
	defer stopPlay()
	var faultWG sync.WaitGroup
	faultsDone := make(chan struct{})
	for _, f := range cfg.Faults {
		faultWG.Go(func() { s.runFault(ctx, f, faultsDone) })
	}

	players := s.runPlayers(playCtx, seed)
	playersDone := time.Now()
	close(faultsDone)
	faultWG.Wait()
	s.log.Info("soak: players done", "players", len(players), "elapsed", playersDone.Sub(s.start).Round(time.Millisecond))

	rep := &Report{Started: s.start, Seed: seed}
	if s.sim != nil {
		// sessions alive when the last player finished, then the grace period
		s.waitPoll(watchCtx)
		rep.aliveAtEnd = s.liveOurs()
		graceEnd := time.Now().Add(cfg.Grace)
		for s.liveOurs() > 0 && time.Now().Before(graceEnd) && ctx.Err() == nil {
			s.waitPoll(watchCtx)
		}
		s.waitPoll(watchCtx)
	}
	stopWatch()
	watchWG.Wait()
	rep.elapsed = time.Since(s.start)
	rep.playTime = playersDone.Sub(s.start)
	if cfg.Buckets != nil {
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		rep.Buckets, err = cfg.Buckets(bctx)
		cancel()
		if err != nil {
			rep.BucketsError = err.Error()
		}
	}
	s.fill(rep, players)
	return rep, nil
}

// runPlayers starts players until Config.Players were started or Config.Duration passed (or ctx
// ended), at most Config.Concurrency at once and Config.Rate per second, and waits for them.
func (s *Soak) runPlayers(ctx context.Context, seed uint64) []*player {
	cfg := s.cfg
	rng := rand.New(rand.NewPCG(seed, 0x50a4))
	ipBase := uint32(rng.Uint64N(1 << 16))
	sem := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	var players []*player
	var deadline <-chan time.Time
	if cfg.Duration > 0 {
		t := time.NewTimer(cfg.Duration)
		defer t.Stop()
		deadline = t.C
	}
loop:
	for i := 0; cfg.Players == 0 || i < cfg.Players; i++ {
		if cfg.Rate > 0 {
			next := s.start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
			if d := time.Until(next); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-deadline:
					t.Stop()
					break loop
				case <-ctx.Done():
					t.Stop()
					break loop
				}
			}
		}
		select {
		case sem <- struct{}{}:
		case <-deadline:
			break loop
		case <-ctx.Done():
			break loop
		}
		p := &player{id: i, kind: pickKind(rng, cfg.Mix), ip: playerIP(ipBase, i), url: cfg.URLs[i%len(cfg.URLs)]}
		if rng.Float64() < cfg.Mix.HTTP {
			p.transport = client.TransportHTTP
		}
		s.mu.Lock()
		s.byIP[p.ip] = p
		s.mu.Unlock()
		players = append(players, p)
		prng := rand.New(rand.NewPCG(seed, uint64(i)+1))
		wg.Go(func() {
			defer func() { <-sem }()
			s.play(ctx, p, prng)
		})
	}
	wg.Wait()
	return players
}

func pickKind(rng *rand.Rand, m Mix) Kind {
	x := rng.Float64()
	switch {
	case x < m.Abandon:
		return KindAbandon
	case x < m.Abandon+m.AbandonAccepted:
		return KindAbandonAccepted
	case x < m.Abandon+m.AbandonAccepted+m.NoConnect:
		return KindNoConnect
	case x < m.Abandon+m.AbandonAccepted+m.NoConnect+m.Vanish:
		return KindVanish
	}
	return KindPlay
}

// runFault waits until the fault's time, starts it, waits its duration, stops it. A fault
// whose time comes after the players finished is not fired.
func (s *Soak) runFault(ctx context.Context, f Fault, playersDone <-chan struct{}) {
	t := time.NewTimer(time.Until(s.start.Add(f.At)))
	defer t.Stop()
	select {
	case <-t.C:
	case <-playersDone:
		s.log.Info("soak: fault not fired: the players finished first", "fault", f.Name)
		return
	case <-ctx.Done():
		return
	}
	w := window{name: f.Name, start: time.Now()}
	s.log.Info("soak: fault starts", "fault", f.Name)
	if err := f.Start(ctx, s); err != nil {
		w.err = err
		s.event("fault failed to start", "fault", f.Name, logkey.Err, err)
	}
	if f.For > 0 {
		t := time.NewTimer(f.For)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
	}
	if f.Stop != nil {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		if err := f.Stop(sctx, s); err != nil {
			w.err = errors.Join(w.err, err)
			s.event("fault failed to stop", "fault", f.Name, logkey.Err, err)
		}
		cancel()
	}
	w.end = time.Now()
	s.log.Info("soak: fault ends", "fault", f.Name, "lasted", w.end.Sub(w.start).Round(time.Millisecond))
	s.mu.Lock()
	s.windows = append(s.windows, w)
	s.mu.Unlock()
}

// watch polls the simulator's session list until ctx ends.
func (s *Soak) watch(ctx context.Context) {
	t := time.NewTicker(s.cfg.PollInterval)
	defer t.Stop()
	for {
		s.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// poll reads the session list once and updates the sessions: new ones are tied to their
// player by IP, missing ones are gone (deleted), and a deletion while the player is connected
// is recorded.
func (s *Soak) poll(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	st, err := s.sim.state(pctx)
	cancel()
	now := time.Now()
	s.mu.Lock()
	defer func() {
		close(s.polled)
		s.polled = make(chan struct{})
		s.mu.Unlock()
	}()
	if err != nil {
		if ctx.Err() == nil {
			s.pollErrors++
			s.lastPollErr = err
		}
		return
	}
	s.deployments = st.Deployments
	listed := make(map[string]bool, len(st.Sessions))
	for _, si := range st.Sessions {
		listed[si.SessionID] = true
		if s.preexisting[si.SessionID] {
			continue
		}
		ss, ok := s.sessions[si.SessionID]
		if !ok {
			ss = &session{id: si.SessionID, deployment: si.DeploymentID, created: si.Created, firstSeen: now}
			if len(si.Users) > 0 {
				if ip, err := netip.ParseAddr(si.Users[0]); err == nil {
					ss.ip = ip
					ss.player = s.byIP[ip]
				}
			}
			s.sessions[si.SessionID] = ss
		}
		ss.deployment = si.DeploymentID
	}
	for _, ss := range s.sessions {
		if !ss.gone.IsZero() || listed[ss.id] {
			continue
		}
		ss.gone = now
		p := ss.player
		if p == nil {
			continue
		}
		p.mu.Lock()
		mine := p.sessionID == ss.id
		ph := p.phase
		p.mu.Unlock()
		if !mine {
			continue
		}
		if _, crashed := s.crashed[ss.deployment]; crashed {
			continue
		}
		switch ph {
		case phaseConnected:
			ss.underPlayer = true
			s.log.Warn("soak: session deleted under a connected player", logkey.SessionID, ss.id, logkey.ClientIP, ss.ip.String())
			if len(s.events) < maxEvents {
				s.events = append(s.events, "session "+ss.id+" deleted under its connected player "+ss.ip.String())
			}
		case phaseGranted:
			if p.kind != KindNoConnect {
				ss.beforeConnect = true
				if len(s.events) < maxEvents {
					s.events = append(s.events, "session "+ss.id+" deleted before its player connected "+ss.ip.String())
				}
			}
		}
	}
}

// waitPoll waits for the next poll (or ctx).
func (s *Soak) waitPoll(ctx context.Context) {
	s.mu.Lock()
	ch := s.polled
	s.mu.Unlock()
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// liveOurs counts the sessions created during the run that are still listed.
func (s *Soak) liveOurs() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, ss := range s.sessions {
		if ss.gone.IsZero() {
			n++
		}
	}
	return n
}

// progress logs counts every Config.ProgressInterval.
func (s *Soak) progress(ctx context.Context) {
	t := time.NewTicker(s.cfg.ProgressInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		var started, granted, failed, live int
		for _, p := range s.byIP {
			started++
			p.mu.Lock()
			if p.granted {
				granted++
			}
			if p.failClass != "" {
				failed++
			}
			p.mu.Unlock()
		}
		for _, ss := range s.sessions {
			if ss.gone.IsZero() {
				live++
			}
		}
		s.mu.Unlock()
		s.log.Info("soak: progress", "elapsed", time.Since(s.start).Round(time.Second), "players", started,
			"granted", granted, "failed", failed, "live_sessions", live)
	}
}

// Elapsed returns the time since the run started.
func (s *Soak) Elapsed() time.Duration { return time.Since(s.start) }

// Logger returns the run's logger.
func (s *Soak) Logger() *slog.Logger { return s.log }

// MarkCrashed records that the deployment's game server was crashed on purpose: its players'
// lost connections and its sessions' deletions are then counted as the crash's, not as
// sessions deleted under a connected player.
func (s *Soak) MarkCrashed(deployment string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.crashed[deployment]; !ok {
		s.crashed[deployment] = time.Now()
	}
}

// DeploymentsWithPlayers returns the running deployments (from the last poll of the
// simulator) that have a session whose player is connected.
func (s *Soak) DeploymentsWithPlayers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	has := map[string]bool{}
	for _, ss := range s.sessions {
		if !ss.gone.IsZero() || ss.player == nil {
			continue
		}
		ss.player.mu.Lock()
		connected := ss.player.phase == phaseConnected && ss.player.sessionID == ss.id
		ss.player.mu.Unlock()
		if connected {
			has[ss.deployment] = true
		}
	}
	var out []string
	for _, d := range s.deployments {
		if d.Running && has[d.RequestID] {
			if _, crashed := s.crashed[d.RequestID]; !crashed {
				out = append(out, d.RequestID)
			}
		}
	}
	slices.Sort(out)
	return out
}
