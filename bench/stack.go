package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/matchmaker"
	"github.com/bevygap-go/bevygap/protocol"
)

// stack is what the measurements run against: a devstack tuned for measuring (instant-ready
// deployments with room for every session, seats released between points by terminating the
// deployments, no reaping or reconciliation during a run), or a stack running elsewhere
// (Options.External: st is nil).
type stack struct {
	st      *devstack.Stack // nil for an external stack
	nc      *nats.Conn      // the bench's requests
	floorNC *nats.Conn      // the floors' responders
	js      jetstream.JetStream
	wsURL   string
	game    string
	version string
}

// startStack starts the stack with session webhooks, as `bevygap dev` runs; boot is the
// deployments' boot time (negative: instant).
func startStack(ctx context.Context, boot time.Duration) (*stack, error) {
	return startStackOf(ctx, boot, true)
}

// startStackOf starts the stack; without webhooks the matchmaker creates its sessions without
// a webhook URL and finds them ready by polling, its first GET right after the create (as the
// Rust matchmaker does).
func startStackOf(ctx context.Context, boot time.Duration, webhooks bool) (*stack, error) {
	st, err := devstack.Start(ctx, devstack.Config{
		BootTime: boot, BootJitter: -1, Sockets: 1 << 30, EmptyTTL: time.Hour,
		ReadinessLimit: 2 * time.Hour, ClaimGrace: time.Hour,
		ShutdownTimeout: 100 * time.Millisecond, // in-flight requests of gone clients: fail them at once
		Matchmaker: func(c *matchmaker.Config) {
			c.Reconcile = false
			c.CertDigestWait = 0
			if !webhooks {
				c.SessionWebhookURL = ""
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w: starting: %w", errStack, err)
	}
	info := st.Info()
	s := &stack{st: st, js: st.Buckets().JS, wsURL: info.WebSocketURL, game: info.AppName, version: info.AppVersion}
	if s.nc, err = nats.Connect(info.NATSURL, nats.Name("bevygap-bench")); err == nil {
		s.floorNC, err = nats.Connect(info.NATSURL, nats.Name("bevygap-bench-floor"))
	}
	if err != nil {
		_ = s.close(ctx)
		return nil, fmt.Errorf("%w: connecting to NATS: %w", errStack, err)
	}
	return s, nil
}

// target is the stack P1 and P5 measure: the external one of o, or a new in-process one (with
// or without session webhooks).
func target(ctx context.Context, o Options, webhooks bool) (*stack, error) {
	e := o.External
	if e == nil {
		return startStackOf(ctx, -1, webhooks)
	}
	js, err := jetstream.New(e.NATS)
	if err != nil {
		return nil, err
	}
	return &stack{nc: e.NATS, floorNC: e.NATS, js: js, wsURL: e.WebSocketURL, game: e.Game, version: e.Version}, nil
}

func (s *stack) close(ctx context.Context) error {
	if s.st == nil {
		return nil // not ours
	}
	for _, nc := range []*nats.Conn{s.nc, s.floorNC} {
		if nc != nil {
			nc.Close()
		}
	}
	s.release()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 60*time.Second)
	defer cancel()
	return s.st.Shutdown(ctx)
}

// opTimeout bounds every request of the bench: a stuck request fails the run instead of
// hanging it.
const opTimeout = 30 * time.Second

var grantBody = []byte(`{"client_ip":"127.0.0.1"}`)

// grant asks session.gensession for a session.
func grant(ctx context.Context, nc *nats.Conn) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, protocol.SubjectGenSession, grantBody)
	if err != nil {
		return err
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		return fmt.Errorf("%w: gensession error %s: %s", errStack, code, msg.Header.Get("Nats-Service-Error"))
	}
	return nil
}

// release terminates every deployment of the simulator: their sessions end and their seats
// are free again (the next grant starts a new, instantly ready deployment). Not timed. An
// external stack keeps its sessions.
func (s *stack) release() {
	if s.st == nil {
		return
	}
	sim := s.st.Sim()
	for _, d := range sim.State().Deployments {
		_ = sim.TerminateDeployment(d.RequestID)
	}
}

// floorBucket is the configuration of a floor's KV bucket: the matchmaker's session mapping
// bucket (same storage, replicas and TTL) under another name.
func floorBucket(name string) jetstream.KeyValueConfig {
	c := bus.BucketConfigs(bus.BucketOptions{})[0]
	c.Bucket, c.Description = name, "bevygap bench floor"
	return c
}

// wsSession opens a WebSocket to the front door, asks for a session of the stack's game and
// reads until SessionReady. It returns the session id and the time from sending the request
// to SessionReady (the dial is not counted).
func (s *stack) wsSession(ctx context.Context) (string, time.Duration, error) {
	return s.wsSessionOf(ctx, s.game, s.version)
}

// readyPrefix starts every SessionReady feedback (protocol.Marshal's compact encoding).
var readyPrefix = []byte(`{"SessionReady":`)

// wsSessionOf is wsSession for game and version. The client (wsclient.go) runs in the
// measured process, so it does as little as a client must: a SessionReady (2.7 KB of token) is
// recognised by its first bytes, not decoded.
func (s *stack) wsSessionOf(ctx context.Context, game, version string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	c, err := dialWS(ctx, s.wsURL)
	if err != nil {
		return "", 0, fmt.Errorf("%w: dial: %w", errStack, err)
	}
	defer c.close()
	req, _ := json.Marshal(protocol.RequestSession{Game: game, Version: version})
	t0 := time.Now()
	if err := c.writeText(req); err != nil {
		return "", 0, fmt.Errorf("%w: write: %w", errStack, err)
	}
	sid := ""
	for {
		b, err := c.readMessage()
		if err != nil {
			return "", 0, fmt.Errorf("%w: read: %w", errStack, err)
		}
		if bytes.HasPrefix(b, readyPrefix) {
			return sid, time.Since(t0), nil
		}
		var f protocol.Feedback
		if err := json.Unmarshal(b, &f); err != nil {
			return "", 0, fmt.Errorf("%w: %q: %w", errStack, b, err)
		}
		switch f.Kind {
		case protocol.FeedbackSessionRequestAccepted:
			sid = f.Text
		case protocol.FeedbackSessionReady:
			return sid, time.Since(t0), nil
		case protocol.FeedbackError:
			return "", 0, fmt.Errorf("%w: error %d: %s", errStack, f.Code, f.Text)
		}
	}
}

// latencies collects latencies from many goroutines.
type latencies struct {
	mu sync.Mutex
	ds []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.ds = append(l.ds, d)
	l.mu.Unlock()
}

// waitGone polls the simulator's API until the session is gone and returns when it noticed.
func (s *stack) waitGone(ctx context.Context, sid string) (time.Time, error) {
	api := s.st.Edgegap()
	for {
		_, err := api.GetSession(ctx, sid)
		now := time.Now()
		if err != nil {
			if isNotFound(err) {
				return now, nil
			}
			if ctx.Err() != nil {
				return now, ctx.Err()
			}
		}
		time.Sleep(100 * time.Microsecond)
	}
}

func isNotFound(err error) bool {
	return errors.Is(err, edgegap.ErrNotFound) || errors.Is(err, edgegap.ErrGone)
}

// claim writes what a game server writes when the player connects (active_connections put)
// and gives the matchmaker up to 200 ms to drop the session from unclaimed_sessions, so that
// handling the connect is not timed with the disconnect. (It may not: its view of
// unclaimed_sessions can lag behind a fast connect, and then the reaper sorts it out later.)
func (s *stack) claim(ctx context.Context, sid string) error {
	b := s.st.Buckets()
	if _, err := b.ActiveConnections.Put(ctx, sid, []byte(strconv.Itoa(1))); err != nil {
		return err
	}
	for deadline := time.Now().Add(200 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if _, err := b.UnclaimedSessions.Get(ctx, sid); errors.Is(err, jetstream.ErrKeyNotFound) || ctx.Err() != nil {
			break
		}
	}
	return ctx.Err()
}
