package soak

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is what a soak measured. Its JSON form is what `bevygap soak --json` prints.
type Report struct {
	// Started is when the first player started; Seed what the players' choices came from.
	Started time.Time `json:"started"`
	Seed    uint64    `json:"seed"`
	// PlaySeconds is how long the players ran; ElapsedSeconds includes the grace period.
	PlaySeconds    float64 `json:"play_seconds"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	// Players counts the players by kind.
	Players map[Kind]int `json:"players"`
	// Requested session requests, Granted (SessionReady), Abandoned on purpose, Interrupted
	// (the run was cancelled), Failed (everything else: Refused by class).
	Requested   int            `json:"requested"`
	Granted     int            `json:"granted"`
	Abandoned   int            `json:"abandoned"`
	Interrupted int            `json:"interrupted"`
	Failed      int            `json:"failed"`
	Refused     map[string]int `json:"refused"`
	// Unclear counts the failures without a clear error (see Clear): a player left guessing.
	Unclear int `json:"unclear"`
	// Connected players (netcode connection with the token established); ConnectFailed the
	// players whose granted token did not get them in, by reason.
	Connected     int            `json:"connected"`
	ConnectFailed map[string]int `json:"connect_failed"`
	// DisconnectedByServer counts connected players whose connection ended (disconnect or
	// timeout) before they chose to leave, not counting game servers crashed on purpose:
	// LostToCrash counts those players, and the granted tokens of crashed game servers that
	// could not connect any more.
	DisconnectedByServer int `json:"disconnected_by_server"`
	LostToCrash          int `json:"lost_to_crash"`
	// TimeToReady is request start to SessionReady over every grant; NoFault over the requests
	// that overlapped no fault's window.
	TimeToReady        Latency `json:"time_to_ready"`
	TimeToReadyNoFault Latency `json:"time_to_ready_no_fault"`
	// Faults are the faults that fired, with the requests that overlapped each.
	Faults []FaultReport `json:"faults"`
	// Sessions is the simulator's side (nil without Config.Simulator).
	Sessions *SessionReport `json:"sessions,omitempty"`
	// Buckets is what the NATS buckets held at the end (nil without Config.Buckets).
	Buckets      *BucketCounts `json:"buckets,omitempty"`
	BucketsError string        `json:"buckets_error,omitempty"`
	// Events are notable things that happened (at most 50).
	Events []string `json:"events,omitempty"`

	aliveAtEnd        int
	playTime, elapsed time.Duration
}

// Latency summarizes durations in milliseconds.
type Latency struct {
	N     int     `json:"n"`
	P50MS float64 `json:"p50_ms"`
	P99MS float64 `json:"p99_ms"`
	MaxMS float64 `json:"max_ms"`
}

func latencyOf(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return Latency{N: len(s), P50MS: ms(percentile(s, 50)), P99MS: ms(percentile(s, 99)), MaxMS: ms(s[len(s)-1])}
}

// percentile is the nearest-rank percentile of sorted.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(float64(len(sorted))*p/100+0.9999999) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// String renders l as "p50 … p99 … max … (n=…)", or "-" without samples.
func (l Latency) String() string {
	if l.N == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %s  p99 %s  max %s  (n=%d)", fmtMS(l.P50MS), fmtMS(l.P99MS), fmtMS(l.MaxMS), l.N)
}

func fmtMS(v float64) string {
	return (time.Duration(v * float64(time.Millisecond))).Round(time.Millisecond).String()
}

// FaultReport is one fault's window and the requests that overlapped it.
type FaultReport struct {
	Name string `json:"name"`
	// StartS and EndS are seconds since the run started.
	StartS float64 `json:"start_s"`
	EndS   float64 `json:"end_s"`
	Error  string  `json:"error,omitempty"`
	// Requested and Granted count the requests in flight during the window (abandoned and
	// interrupted ones not counted); Failed the requests that started during it, or failed
	// during it or within failSettle after it: the grants lost to the fault.
	Requested   int            `json:"requested"`
	Granted     int            `json:"granted"`
	Failed      int            `json:"failed"`
	Refused     map[string]int `json:"refused,omitempty"`
	TimeToReady Latency        `json:"time_to_ready"`
	// ConnectFailed counts the granted tokens whose netcode connection attempt overlapped the
	// window and failed (by reason).
	ConnectFailed map[string]int `json:"connect_failed,omitempty"`
	// LeaveToDelete is, for the players who left during the window, their leaving to their
	// session's deletion (with a simulator).
	LeaveToDelete Latency `json:"leave_to_delete"`
}

// failSettle is how long after a fault's window a failure still counts as the fault's: the
// answer of a request that failed because of it may take a moment to arrive.
const failSettle = 2 * time.Second

// SessionReport is the simulator's side of the run.
type SessionReport struct {
	// Created counts the sessions created during the run; Foreign those with a client IP
	// that no player of the run had.
	Created int `json:"created"`
	Foreign int `json:"foreign"`
	// AliveAtEnd counts the sessions still listed when the last player finished.
	AliveAtEnd int `json:"alive_at_end"`
	// Leaked are the sessions still listed after the grace period.
	Leaked []SessionLife `json:"leaked"`
	// DeletedUnderPlayer are the sessions deleted while their player was connected and had
	// not chosen to leave (game servers crashed on purpose not counted).
	DeletedUnderPlayer []string `json:"deleted_under_player"`
	// DeletedBeforeConnect counts sessions deleted after SessionReady but before their player
	// (one that meant to connect) connected.
	DeletedBeforeConnect int `json:"deleted_before_connect"`
	// LeaveToDelete is a player's disconnect to its session's disappearance.
	LeaveToDelete Latency `json:"leave_to_delete"`
	// Abandoned: sessions of requests abandoned while waiting (creation to deletion, each
	// listed); NoConnect: sessions whose token was never used; Vanished: a player's vanishing
	// to its session's deletion; FailedRequests: sessions of requests that failed or of
	// players that never connected otherwise; Crashed: crash to deletion, for the sessions of
	// game servers crashed on purpose.
	Abandoned Lives `json:"abandoned"`
	// AbandonToDelete is the time from a player's abandon to its session's deletion (the
	// goal: within 2 s).
	AbandonToDelete Latency `json:"abandon_to_delete"`
	NoConnect       Lives   `json:"no_connect"`
	Vanished        Lives   `json:"vanished"`
	FailedRequests  Lives   `json:"failed_requests"`
	Crashed         Lives   `json:"crashed"`
	// PollErrors counts failed reads of the session list.
	PollErrors    int    `json:"poll_errors"`
	LastPollError string `json:"last_poll_error,omitempty"`
}

// Lives summarizes how long a group of sessions lived.
type Lives struct {
	// Sessions in the group; Alive those never deleted (also counted in Leaked).
	Sessions int     `json:"sessions"`
	Alive    int     `json:"alive"`
	Lived    Latency `json:"lived"`
	// Each lists every session of the group, longest-lived first (for abandoned and failed
	// requests only).
	Each []SessionLife `json:"each,omitempty"`
	// Unseen counts the group's sessions the player learnt the id of (SessionRequestAccepted)
	// that were gone before the session list was read: they lived less than a poll interval
	// (abandoned requests only).
	Unseen int `json:"unseen,omitempty"`
}

// SessionLife is one session and how long it lived (until the end of the run if not deleted).
type SessionLife struct {
	ID      string  `json:"id"`
	IP      string  `json:"ip,omitempty"`
	LivedMS float64 `json:"lived_ms"`
	Deleted bool    `json:"deleted"`
}

// fill computes the report from the players and sessions.
func (s *Soak) fill(rep *Report, players []*player) {
	end := time.Now()
	rep.PlaySeconds = rep.playTime.Seconds()
	rep.ElapsedSeconds = rep.elapsed.Seconds()
	rep.Players = map[Kind]int{}
	rep.Refused = map[string]int{}
	rep.ConnectFailed = map[string]int{}
	s.mu.Lock()
	defer s.mu.Unlock()
	windows := slices.Clone(s.windows)
	slices.SortFunc(windows, func(a, b window) int { return a.start.Compare(b.start) })
	faults := make([]FaultReport, len(windows))
	var ttr []time.Duration
	ttrNoFault := []time.Duration{}
	ttrFault := make([][]time.Duration, len(windows))
	for i, w := range windows {
		faults[i] = FaultReport{Name: w.name, StartS: w.start.Sub(s.start).Seconds(), EndS: w.end.Sub(s.start).Seconds(), Refused: map[string]int{}, ConnectFailed: map[string]int{}}
		if w.err != nil {
			faults[i].Error = w.err.Error()
		}
	}
	for _, p := range players {
		p.mu.Lock()
		rep.Players[p.kind]++
		rep.Requested++
		switch {
		case p.granted:
			rep.Granted++
			ttr = append(ttr, p.readyAfter)
		case p.abandoned:
			rep.Abandoned++
		case p.interrupted:
			rep.Interrupted++
		case p.failClass != "":
			rep.Failed++
			rep.Refused[p.failClass]++
			if !Clear(p.failClass) {
				rep.Unclear++
			}
		}
		if p.connected {
			rep.Connected++
		}
		crashed := false
		if ss, ok := s.sessions[p.sessionID]; ok {
			_, crashed = s.crashed[ss.deployment]
		}
		switch {
		case p.connectErr != "" && crashed:
			rep.LostToCrash++ // its game server was crashed on purpose before it got in
		case p.connectErr != "":
			rep.ConnectFailed[p.connectErr]++
		}
		if p.dropped != nil {
			if crashed {
				rep.LostToCrash++
			} else {
				rep.DisconnectedByServer++
				if len(rep.Events) < maxEvents {
					rep.Events = append(rep.Events, fmt.Sprintf("player %s (session %s) lost its connection: %v", p.ip, p.sessionID, p.dropped))
				}
			}
		}
		counted := (p.granted || p.failClass != "") && !p.abandoned && !p.interrupted
		inFault := false
		for i, w := range windows {
			if !counted || p.reqStart.After(w.end) || p.reqEnd.Before(w.start) {
				continue
			}
			inFault = true
			f := &faults[i]
			f.Requested++
			switch {
			case p.granted:
				f.Granted++
				ttrFault[i] = append(ttrFault[i], p.readyAfter)
			case within(p.reqStart, w.start, w.end) || within(p.reqEnd, w.start, w.end.Add(failSettle)):
				f.Failed++
				f.Refused[p.failClass]++
			}
		}
		if p.connectErr != "" {
			for i, w := range windows {
				if !p.connStart.After(w.end) && !p.connEnd.Before(w.start) {
					faults[i].ConnectFailed[p.connectErr]++
				}
			}
		}
		if p.granted && !inFault {
			ttrNoFault = append(ttrNoFault, p.readyAfter)
		}
		p.mu.Unlock()
	}
	rep.TimeToReady = latencyOf(ttr)
	rep.TimeToReadyNoFault = latencyOf(ttrNoFault)
	for i := range faults {
		faults[i].TimeToReady = latencyOf(ttrFault[i])
	}
	leaves := make([][]time.Duration, len(windows))
	for _, ss := range s.sessions {
		p := ss.player
		if p == nil || ss.gone.IsZero() {
			continue
		}
		p.mu.Lock()
		left, ok := p.leftAt, p.kind == KindPlay && p.sessionID == ss.id && !p.leftAt.IsZero()
		p.mu.Unlock()
		for i, w := range windows {
			if ok && !left.Before(w.start) && !left.After(w.end) {
				leaves[i] = append(leaves[i], ss.gone.Sub(left))
			}
		}
	}
	for i := range faults {
		faults[i].LeaveToDelete = latencyOf(leaves[i])
	}
	rep.Faults = faults
	rep.Events = append(rep.Events, s.events...)
	if s.sim != nil {
		rep.Sessions = s.sessionReport(rep.aliveAtEnd, end)
	}
}

func (s *Soak) sessionReport(aliveAtEnd int, end time.Time) *SessionReport {
	sr := &SessionReport{AliveAtEnd: aliveAtEnd, Leaked: []SessionLife{}, DeletedUnderPlayer: []string{},
		PollErrors: s.pollErrors}
	if s.lastPollErr != nil {
		sr.LastPollError = s.lastPollErr.Error()
	}
	var leave, abandoned, abandonToDelete, noConnect, vanished, failed, crashed []time.Duration
	ids := slices.Sorted(maps.Keys(s.sessions))
	for _, id := range ids {
		ss := s.sessions[id]
		sr.Created++
		born := ss.created
		if born.IsZero() || born.After(ss.firstSeen) {
			born = ss.firstSeen
		}
		deleted := !ss.gone.IsZero()
		until := ss.gone
		if !deleted {
			until = end
		}
		life := SessionLife{ID: ss.id, IP: ss.ip.String(), LivedMS: ms(until.Sub(born)), Deleted: deleted}
		if !deleted {
			sr.Leaked = append(sr.Leaked, life)
		}
		if ss.underPlayer {
			sr.DeletedUnderPlayer = append(sr.DeletedUnderPlayer, ss.id)
		}
		if ss.beforeConnect {
			sr.DeletedBeforeConnect++
		}
		p := ss.player
		if p == nil {
			sr.Foreign++
			continue
		}
		p.mu.Lock()
		mine := p.sessionID == ss.id
		kind, leftAt, granted, isAbandoned, reqEnd := p.kind, p.leftAt, p.granted, p.abandoned, p.reqEnd
		p.mu.Unlock()
		add := func(l *Lives, ds *[]time.Duration, from time.Time, each bool) {
			l.Sessions++
			if !deleted {
				l.Alive++
				return
			}
			*ds = append(*ds, until.Sub(from))
			if each {
				l.Each = append(l.Each, life)
			}
		}
		if crashAt, ok := s.crashed[ss.deployment]; ok && (!deleted || ss.gone.After(crashAt)) {
			add(&sr.Crashed, &crashed, crashAt, false)
			continue
		}
		switch {
		case isAbandoned:
			add(&sr.Abandoned, &abandoned, born, true)
			if deleted {
				abandonToDelete = append(abandonToDelete, max(0, until.Sub(reqEnd)))
			}
		case mine && granted && kind == KindNoConnect:
			add(&sr.NoConnect, &noConnect, born, false)
		case mine && kind == KindVanish && !leftAt.IsZero():
			add(&sr.Vanished, &vanished, leftAt, false)
		case mine && kind == KindPlay && !leftAt.IsZero():
			if deleted {
				leave = append(leave, until.Sub(leftAt))
			}
		default:
			add(&sr.FailedRequests, &failed, born, true)
		}
	}
	for _, l := range []*Lives{&sr.Abandoned, &sr.FailedRequests} {
		slices.SortFunc(l.Each, func(a, b SessionLife) int { return cmp.Compare(b.LivedMS, a.LivedMS) })
	}
	for _, p := range s.byIP {
		p.mu.Lock()
		id, ab := p.acceptedID, p.abandoned
		p.mu.Unlock()
		if _, seen := s.sessions[id]; ab && id != "" && !seen && !s.preexisting[id] {
			sr.Abandoned.Unseen++
		}
	}
	sr.LeaveToDelete = latencyOf(leave)
	sr.Abandoned.Lived = latencyOf(abandoned)
	sr.AbandonToDelete = latencyOf(abandonToDelete)
	sr.NoConnect.Lived = latencyOf(noConnect)
	sr.Vanished.Lived = latencyOf(vanished)
	sr.FailedRequests.Lived = latencyOf(failed)
	sr.Crashed.Lived = latencyOf(crashed)
	return sr
}

// Leaked returns the number of sessions still alive after the grace period (0 without a
// simulator).
func (r *Report) Leaked() int {
	if r.Sessions == nil {
		return 0
	}
	return len(r.Sessions.Leaked)
}

// DeletedUnderPlayer returns the number of sessions deleted under a connected player.
func (r *Report) DeletedUnderPlayer() int {
	if r.Sessions == nil {
		return 0
	}
	return len(r.Sessions.DeletedUnderPlayer)
}

// Problems lists what the chaos tests require to be zero, as sentences: leaked sessions,
// sessions deleted under a connected player, players disconnected by the server, failures
// without a clear error, granted tokens that did not connect. Empty when all is well.
func (r *Report) Problems() []string {
	var out []string
	if n := r.Leaked(); n > 0 {
		out = append(out, fmt.Sprintf("%d leaked sessions (alive after the grace period): %v", n, lifeIDs(r.Sessions.Leaked, 10)))
	}
	if n := r.DeletedUnderPlayer(); n > 0 {
		out = append(out, fmt.Sprintf("%d sessions deleted under a connected player: %v", n, first(r.Sessions.DeletedUnderPlayer, 10)))
	}
	if r.DisconnectedByServer > 0 {
		out = append(out, fmt.Sprintf("%d players disconnected by the server before they left", r.DisconnectedByServer))
	}
	if r.Unclear > 0 {
		var classes []string
		for c, n := range r.Refused {
			if !Clear(c) {
				classes = append(classes, fmt.Sprintf("%s: %d", c, n))
			}
		}
		slices.Sort(classes)
		out = append(out, fmt.Sprintf("%d requests failed without a clear error (%s)", r.Unclear, strings.Join(classes, ", ")))
	}
	if n := sum(r.ConnectFailed); n > 0 {
		out = append(out, fmt.Sprintf("%d granted tokens did not connect: %v", n, r.ConnectFailed))
	}
	return out
}

func lifeIDs(ls []SessionLife, n int) []string {
	var out []string
	for _, l := range ls[:min(n, len(ls))] {
		out = append(out, l.ID)
	}
	return out
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	pf := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	pf("soak: %d players in %s (%s with the grace period), seed %d\n", r.Requested,
		time.Duration(r.PlaySeconds*float64(time.Second)).Round(time.Millisecond),
		time.Duration(r.ElapsedSeconds*float64(time.Second)).Round(time.Millisecond), r.Seed)
	pf("  players:        %s\n", kinds(r.Players))
	pf("  requested       %d\n", r.Requested)
	pf("  granted         %d\n", r.Granted)
	pf("  abandoned       %d (on purpose)\n", r.Abandoned)
	if r.Interrupted > 0 {
		pf("  interrupted     %d\n", r.Interrupted)
	}
	pf("  failed          %d%s\n", r.Failed, classes(r.Refused))
	pf("  unclear errors  %d\n", r.Unclear)
	pf("  connected       %d (token refused or unusable: %d%s)\n", r.Connected, sum(r.ConnectFailed), classes(r.ConnectFailed))
	pf("  disconnected by the server before leaving: %d (lost to game servers crashed on purpose: %d)\n", r.DisconnectedByServer, r.LostToCrash)
	pf("time to ready:    %s\n", r.TimeToReady)
	pf("  without faults: %s\n", r.TimeToReadyNoFault)
	for _, f := range r.Faults {
		pf("  during %-14s [%5.1fs..%5.1fs]: %s; requests %d, failed %d%s", f.Name, f.StartS, f.EndS, f.TimeToReady, f.Requested, f.Failed, classes(f.Refused))
		if n := sum(f.ConnectFailed); n > 0 {
			pf("; tokens refused %d%s", n, classes(f.ConnectFailed))
		}
		if f.LeaveToDelete.N > 0 {
			pf("; leave -> deleted %s", f.LeaveToDelete)
		}
		if f.Error != "" {
			pf("  (fault error: %s)", f.Error)
		}
		pf("\n")
	}
	if s := r.Sessions; s != nil {
		pf("sessions (simulator): %d created during the run (%d of unknown players)\n", s.Created, s.Foreign)
		pf("  alive when the players finished: %d\n", s.AliveAtEnd)
		pf("  leaked (alive after the grace period): %d%s\n", len(s.Leaked), idList(lifeIDs(s.Leaked, 10)))
		pf("  deleted under a connected player:      %d%s\n", len(s.DeletedUnderPlayer), idList(first(s.DeletedUnderPlayer, 10)))
		pf("  deleted before their player connected: %d\n", s.DeletedBeforeConnect)
		pf("  leave -> deleted:              %s\n", s.LeaveToDelete)
		pf("  abandoned requests' sessions:  %d, lived %s, alive at the end %d", s.Abandoned.Sessions, s.Abandoned.Lived, s.Abandoned.Alive)
		if s.Abandoned.Unseen > 0 {
			pf(" (+%d deleted before the session list showed them)", s.Abandoned.Unseen)
		}
		pf("\n")
		pf("    abandon -> deleted:          %s\n", s.AbandonToDelete)
		pf("  unused tokens' sessions:       %d, lived %s, alive at the end %d\n", s.NoConnect.Sessions, s.NoConnect.Lived, s.NoConnect.Alive)
		pf("  vanished players -> deleted:   %d, %s, alive at the end %d\n", s.Vanished.Sessions, s.Vanished.Lived, s.Vanished.Alive)
		pf("  failed requests' sessions:     %d, lived %s, alive at the end %d\n", s.FailedRequests.Sessions, s.FailedRequests.Lived, s.FailedRequests.Alive)
		if len(s.FailedRequests.Each) > 0 {
			l := s.FailedRequests.Each[0]
			pf("    longest-lived: %s (player %s) %s\n", l.ID, l.IP, fmtMS(l.LivedMS))
		}
		if s.Crashed.Sessions > 0 {
			pf("  crashed game servers' sessions: %d, crash -> deleted %s, alive at the end %d\n", s.Crashed.Sessions, s.Crashed.Lived, s.Crashed.Alive)
		}
		if s.PollErrors > 0 {
			pf("  session list read errors: %d (last: %s)\n", s.PollErrors, s.LastPollError)
		}
	}
	if bc := r.Buckets; bc != nil {
		pf("buckets at the end: %s\n", bc)
	}
	if r.BucketsError != "" {
		pf("buckets: %s\n", r.BucketsError)
	}
	for _, e := range r.Events {
		pf("  ! %s\n", e)
	}
	if p := r.Problems(); len(p) > 0 {
		pf("PROBLEMS:\n")
		for _, x := range p {
			pf("  - %s\n", x)
		}
	} else {
		pf("no leaked sessions, none deleted under a player, every player got a working token or a clear error\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func kinds(m map[Kind]int) string {
	var parts []string
	for _, k := range []Kind{KindPlay, KindAbandon, KindAbandonAccepted, KindNoConnect, KindVanish} {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
		}
	}
	return strings.Join(parts, ", ")
}

func classes(m map[string]int) string {
	if len(m) == 0 {
		return ""
	}
	keys := slices.Sorted(maps.Keys(m))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, m[k])
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

func idList(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return " " + strings.Join(ids, " ")
}

// within reports whether t is in [from, to].
func within(t, from, to time.Time) bool { return !t.Before(from) && !t.After(to) }
