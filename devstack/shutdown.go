package devstack

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
)

// DefaultShutdownBudget bounds a Shutdown whose context has no deadline.
const DefaultShutdownBudget = 30 * time.Second

// sweepWorkers is how many sessions the shutdown sweep deletes at once.
const sweepWorkers = 32

// sweepShare is the part of the shutdown's time kept for deleting the sessions left and
// stopping the simulator: the front door and the matchmaker must be done before the rest runs
// out (a matchmaker still finishing requests when its share ends is left behind, its requests
// failed, and the sweep deletes what it created).
const sweepShare = 3 // one third

// ShutdownError says what a Shutdown left undone. It matches ErrLeakedSessions when sessions
// were left in the simulator.
type ShutdownError struct {
	// Sessions is how many sessions the simulator still had after the sweep.
	Sessions int
	// Problems are the steps that failed or ran out of time, and the components that stopped
	// with an error.
	Problems []error
}

// Error says what was left undone, in one line.
func (e *ShutdownError) Error() string { return "devstack: shutdown: " + e.Summary() }

// Summary is Error without the package prefix: "3 sessions could not be deleted; …".
func (e *ShutdownError) Summary() string {
	var parts []string
	switch e.Sessions {
	case 0:
	case 1:
		parts = append(parts, "1 session could not be deleted")
	default:
		parts = append(parts, strconv.Itoa(e.Sessions)+" sessions could not be deleted")
	}
	for _, p := range e.Problems {
		parts = append(parts, p.Error())
	}
	return strings.Join(parts, "; ")
}

// Unwrap returns the problems, and ErrLeakedSessions when sessions were left.
func (e *ShutdownError) Unwrap() []error {
	errs := append([]error(nil), e.Problems...)
	if e.Sessions > 0 {
		errs = append(errs, ErrLeakedSessions)
	}
	return errs
}

// stopFailed records a component that stopped with an error during Shutdown.
func (s *Stack) stopFailed(err error) {
	s.stopMu.Lock()
	s.stopErrs = append(s.stopErrs, err)
	s.stopMu.Unlock()
}

func (s *Stack) shutdown(ctx context.Context) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, DefaultShutdownBudget) // the earlier deadline wins
	defer cancel()
	deadline, _ := ctx.Deadline()
	// The front door and the matchmaker share the first two thirds; the sweep and the
	// simulator get the rest.
	early, cancelEarly := context.WithDeadline(ctx, deadline.Add(-time.Until(deadline)/sweepShare))
	defer cancelEarly()

	var problems []error
	step := start
	stepDone := func(name string) { // how long each step took, for a slow shutdown's log
		s.log.Debug("shutdown step done", "step", name, "took", time.Since(step).Round(time.Millisecond))
		step = time.Now()
	}
	late := func(what string) {
		problems = append(problems, fmt.Errorf("%s did not stop in time (after %v)", what, time.Since(start).Round(100*time.Millisecond)))
	}
	wait := func(ctx context.Context, done <-chan struct{}) bool {
		select {
		case <-done:
			return true
		case <-ctx.Done():
			return false
		}
	}
	// 1. No new requests.
	if s.httpStop != nil {
		s.httpStop()
		if !wait(early, s.httpDone) {
			late("the front door")
		}
		stepDone("front door")
	}
	// 2. In-flight requests finish or fail; the matchmaker's workers stop. A matchmaker that
	// is not done when its share of the time ends is left behind (its requests failed).
	if s.mm != nil {
		done := make(chan error, 1)
		go func() { done <- s.mm.Shutdown(early) }()
		select {
		case err := <-done:
			if err != nil {
				problems = append(problems, fmt.Errorf("matchmaker: %w", err))
			}
		case <-early.Done():
			late("the matchmaker")
		}
		stepDone("matchmaker")
	}
	// 3. Delete what is left on "Edgegap".
	leaked := 0
	if s.sim != nil {
		leaked = s.deleteAllSessions(ctx)
		stepDone("session sweep")
	}
	// 4. Game servers and the simulator.
	if s.simStop != nil {
		s.simStop()
		if !wait(ctx, s.simDone) {
			late("the simulator and its game servers")
		}
		stepDone("simulator")
	}
	// 5. The rest.
	if s.play != nil {
		if err := s.play.Close(); err != nil {
			problems = append(problems, fmt.Errorf("browser client files: %w", err))
		}
	}
	if s.sinkStop != nil {
		s.sinkStop()
		if !wait(ctx, s.sinkDone) {
			late("the webhook sink")
		}
	}
	for _, nc := range s.conns {
		nc.Close()
	}
	if s.nats != nil {
		s.nats.Shutdown()
	}
	s.stopMu.Lock()
	problems = append(problems, s.stopErrs...)
	s.stopMu.Unlock()
	if s.nats != nil { // else nothing had started (e.g. a port in use)
		s.log.Info("bevygap dev stack stopped", "took", time.Since(start).Round(time.Millisecond),
			"sessions_left", leaked, "problems", len(problems))
	}
	if leaked == 0 && len(problems) == 0 {
		return nil
	}
	return &ShutdownError{Sessions: leaked, Problems: problems}
}

// deleteAllSessions deletes every session the simulator has, through its API (as an operator
// would), sweepWorkers at a time, and returns how many are left. It looks again while sessions
// remain (a matchmaker left behind may still create some), at most 5 times, within ctx, and
// gives up when a round deleted nothing (the client has retried each delete already). The
// sessions are taken from the simulator's snapshot (it runs in this process): one sorted pass,
// where the paged list API sorts every session for each page of 100 (seconds at 60k sessions).
func (s *Stack) deleteAllSessions(ctx context.Context) int {
	for attempt := 0; attempt < 5 && s.sim.LiveSessions() > 0 && ctx.Err() == nil; attempt++ {
		sessions := s.sim.State().Sessions
		ids := make(chan string)
		var deleted sync.WaitGroup
		var mu sync.Mutex
		n := 0
		var lastErr error
		for range min(sweepWorkers, len(sessions)) {
			deleted.Go(func() {
				for id := range ids {
					_, err := s.api.DeleteSession(ctx, id)
					mu.Lock()
					if err != nil && !errors.Is(err, edgegap.ErrNotFound) {
						lastErr = err
					} else {
						n++
					}
					mu.Unlock()
				}
			})
		}
	feed:
		for _, ss := range sessions {
			select {
			case ids <- ss.SessionID:
			case <-ctx.Done():
				break feed
			}
		}
		close(ids)
		deleted.Wait()
		if lastErr != nil {
			s.log.Warn("deleting sessions left at shutdown", "failed", len(sessions)-n, "err", lastErr)
		}
		if n == 0 {
			break
		}
		s.log.Info("deleted sessions left at shutdown (players still connected or requests cut short)", "count", n)
	}
	return s.sim.LiveSessions()
}
