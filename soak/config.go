package soak

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// Defaults of Config.
const (
	DefaultConcurrency    = 32
	DefaultPlayMin        = time.Second
	DefaultPlayMax        = 5 * time.Second
	DefaultRequestTimeout = 90 * time.Second
	DefaultConnectTimeout = 10 * time.Second
	DefaultPollInterval   = 250 * time.Millisecond
	// DefaultGrace is how long Run waits after the last player for sessions to be deleted: the
	// matchmaker's default readiness limit (60 s) plus its claim grace (2 s), the game servers'
	// netcode timeout (15 s, for vanished players) and a margin. Stacks with a shorter readiness
	// limit may pass a shorter grace.
	DefaultGrace = 90 * time.Second
)

// Mix is the share (0..1 each, sum at most 1) of players that do not play normally; the rest
// request, connect, play and leave.
type Mix struct {
	// Abandon: close the request stream right after "Acknowledged".
	Abandon float64 `json:"abandon"`
	// AbandonAccepted: close the request stream right after "SessionRequestAccepted" (the
	// session exists and its game server is booting).
	AbandonAccepted float64 `json:"abandon_accepted"`
	// NoConnect: take the token and never use it.
	NoConnect float64 `json:"no_connect"`
	// Vanish: connect, play, then stop sending without a disconnect.
	Vanish float64 `json:"vanish"`
	// HTTP: share of requests over the chunked HTTP route instead of the WebSocket route
	// (independent of the other shares).
	HTTP float64 `json:"http"`
}

func (m Mix) validate() error {
	for _, v := range []float64{m.Abandon, m.AbandonAccepted, m.NoConnect, m.Vanish, m.HTTP} {
		if v < 0 || v > 1 {
			return fmt.Errorf("soak: shares must be between 0 and 1, got %v", v)
		}
	}
	if s := m.Abandon + m.AbandonAccepted + m.NoConnect + m.Vanish; s > 1+1e-9 {
		return fmt.Errorf("soak: abandon + abandon-accepted + no-connect + vanish shares add up to %v, more than 1", s)
	}
	return nil
}

// Config configures Run. URLs, Game and Version are required, and Players or Duration.
type Config struct {
	// URLs are the front doors (http://host:port or their WebSocket URL); players use them in
	// turn.
	URLs []string
	// Game and Version are what the players ask for.
	Game, Version string
	// Players is how many players to run in all (0: as many as Duration allows).
	Players int
	// Duration stops starting players after this long (0: until Players were started).
	Duration time.Duration
	// Concurrency is how many players run at once (0: DefaultConcurrency).
	Concurrency int
	// Rate, when positive, caps how many players start per second (a steady load instead of
	// a closed loop).
	Rate float64
	// Mix says which players misbehave, and which use the chunked HTTP route.
	Mix Mix
	// PlayMin and PlayMax bound the random time a connected player stays (0: 1 s and 5 s).
	PlayMin, PlayMax time.Duration
	// RequestTimeout bounds one session request (0: DefaultRequestTimeout); ConnectTimeout the
	// netcode connection to the game server (0: DefaultConnectTimeout).
	RequestTimeout, ConnectTimeout time.Duration

	// Simulator is the Edgegap simulator's base URL: its session list (GET /admin/state) is
	// polled to tie sessions to players, time their deletion and find leaks. Empty: no session
	// accounting (the report then only has the players' side).
	Simulator string
	// PollInterval is how often the session list is read (0: DefaultPollInterval).
	PollInterval time.Duration
	// Grace is how long to wait after the last player for every session to be deleted before
	// the rest are counted as leaked (0: DefaultGrace; negative: no wait).
	Grace time.Duration

	// Faults fire on a schedule while the players run.
	Faults []Fault
	// Buckets, when set, is called at the end to count what the NATS buckets still hold
	// (see InspectBuckets); its result goes into the report.
	Buckets func(ctx context.Context) (*BucketCounts, error)

	// ProgressInterval, when positive, writes a progress line to Logger this often.
	ProgressInterval time.Duration
	// HTTPClient makes the front door requests (nil: a client with pooled connections).
	HTTPClient *http.Client
	// Seed makes the players' choices reproducible (0: random).
	Seed uint64
	// Logger receives progress and fault logs (nil: discarded).
	Logger *slog.Logger
}

// Check reports what is wrong with c (what Run would refuse), or nil.
func (c Config) Check() error {
	_, err := c.withDefaults()
	return err
}

// withDefaults checks c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	switch {
	case len(c.URLs) == 0:
		return c, errors.New("soak: no front door URL")
	case c.Game == "" || c.Version == "":
		return c, errors.New("soak: game and version are required")
	case c.Players < 0:
		return c, errors.New("soak: players must not be negative")
	case c.Players == 0 && c.Duration <= 0:
		return c, errors.New("soak: give a number of players or a duration")
	case c.Concurrency < 0 || c.Rate < 0:
		return c, errors.New("soak: concurrency and rate must not be negative")
	}
	if err := c.Mix.validate(); err != nil {
		return c, err
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.PlayMin <= 0 {
		c.PlayMin = DefaultPlayMin
	}
	if c.PlayMax <= 0 {
		c.PlayMax = max(DefaultPlayMax, c.PlayMin)
	}
	if c.PlayMax < c.PlayMin {
		return c, fmt.Errorf("soak: play time max %v is below min %v", c.PlayMax, c.PlayMin)
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.PollInterval <= 0 {
		c.PollInterval = DefaultPollInterval
	}
	if c.Grace == 0 {
		c.Grace = DefaultGrace
	}
	if c.Grace < 0 {
		c.Grace = 0
	}
	for i, f := range c.Faults {
		if f.Name == "" || f.Start == nil {
			return c, fmt.Errorf("soak: fault %d needs a name and a Start function", i)
		}
		if f.At < 0 || f.For < 0 {
			return c, fmt.Errorf("soak: fault %s: negative time", f.Name)
		}
	}
	if c.HTTPClient == nil {
		c.HTTPClient = &http.Client{Transport: &http.Transport{
			MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 30 * time.Second,
		}}
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
