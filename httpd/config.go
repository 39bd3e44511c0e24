package httpd

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Defaults for a public deployment. A zero field of [Config] takes the default listed here.
const (
	// DefaultBind is the reference's listen address.
	DefaultBind = "0.0.0.0:3000"
	// DefaultAllowedOrigin is the one CORS origin the reference allowed.
	DefaultAllowedOrigin = "http://localhost:8000"
	// DefaultFirstMessageTimeout is how long a WebSocket client has to send its request.
	DefaultFirstMessageTimeout = 10 * time.Second
	// DefaultStreamTimeout bounds one whole session request: long, because a request may queue
	// for admission before its session's readiness limit (60 s) even starts; a dead matchmaker
	// is caught by DefaultStreamIdleTimeout instead.
	DefaultStreamTimeout = 5 * time.Minute
	// DefaultStreamIdleTimeout ends a streaming request whose matchmaker sent nothing for this
	// long: a live bevygap matchmaker sends a message at least every 5 s
	// (matchmaker.StreamKeepalive), so silence means it is gone (killed, cut off).
	DefaultStreamIdleTimeout = 30 * time.Second
	// DefaultResendUnanswered is how long a streaming request may go without any message (a
	// matchmaker answers "Acknowledged" at once) before it is sent once more (resend.go).
	DefaultResendUnanswered = 3 * time.Second
	// DefaultGenSessionTimeout bounds a one-shot session.gensession request (reference: 60 s).
	DefaultGenSessionTimeout = 60 * time.Second
	// DefaultWriteTimeout bounds writing one frame or chunk to a client.
	DefaultWriteTimeout = 10 * time.Second
	// DefaultSessionsPerMinute is the steady per-IP rate of session requests.
	DefaultSessionsPerMinute = 6
	// DefaultSessionBurst is how many session requests one IP may make at once.
	DefaultSessionBurst = 5
	// DefaultMaxStreams caps open WebSockets plus open chunked streams in total.
	DefaultMaxStreams = 10000
	// DefaultMaxStreamsPerIP caps open WebSockets plus chunked streams per client IP
	// (per /64 for IPv6).
	DefaultMaxStreamsPerIP = 8
	// DefaultMaxBodyBytes limits HTTP request bodies (the routes need none).
	DefaultMaxBodyBytes = 4 << 10
	// DefaultMaxMessageBytes limits the WebSocket request message.
	DefaultMaxMessageBytes = 4 << 10
	// DefaultPartyOpsPerMinute is the steady per-IP rate of party operations (create, join,
	// leave, kick, get): a waiting leader polls the party about once a second.
	DefaultPartyOpsPerMinute = 120
	// DefaultPartyOpsBurst is how many party operations one IP may make at once.
	DefaultPartyOpsBurst = 20
	// DefaultPartyTimeout bounds one party operation's NATS request.
	DefaultPartyTimeout = 5 * time.Second
	// DefaultPlayStreamTimeout bounds a whole play-together request (one with a queue, props or
	// a party): it waits for other players (a queue's wait limit, a party's 60 s) before the
	// session is even created.
	DefaultPlayStreamTimeout = 10 * time.Minute
)

// defaultReadyCacheTTL is how long /readyz reuses its last matchmaker probe.
const defaultReadyCacheTTL = 2 * time.Second

// DefaultStandInIP is the reference's stand-in for loopback clients (near London, UK).
var DefaultStandInIP = netip.MustParseAddr("81.128.157.100")

// Config configures the front door. The zero value is a usable public configuration: every zero
// field takes the documented default. Limits take a negative value to mean "no limit".
type Config struct {
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that may call the routes.
	// Nil means [DefaultAllowedOrigin]; an empty non-nil slice allows no cross-origin browser.
	// "*" allows every origin and must be given explicitly.
	AllowedOrigins []string
	// TrustedProxies lists the peers whose X-Forwarded-For header is believed. Empty: the
	// header is ignored and the TCP peer is the client.
	TrustedProxies []netip.Prefix
	// StandInIP replaces a client address that is not publicly routable (loopback, private,
	// link-local, CGNAT, unspecified), so that local players still get a server near someone.
	// Zero means [DefaultStandInIP].
	StandInIP netip.Addr
	// DisableClientIPOverride ignores ?client_ip= and the client_ip of the WebSocket request.
	// The Rust httpd honours only ?client_ip= and ignores the client_ip of the request message
	// (so the Rust client's fake_client_ip, which travels in the message, had no effect there);
	// this front door honours both unless this is set — a deliberate difference
	// (docs/httpd.md, "Differences from the Rust httpd").
	DisableClientIPOverride bool

	// FirstMessageTimeout is how long a WebSocket client has to send its request message.
	FirstMessageTimeout time.Duration
	// StreamTimeout bounds a whole streaming session request.
	StreamTimeout time.Duration
	// GenSessionTimeout bounds a one-shot session.gensession request.
	GenSessionTimeout time.Duration
	// WriteTimeout bounds writing one WebSocket frame or one chunk.
	WriteTimeout time.Duration

	// SessionsPerMinute is the per-IP token refill rate of session requests; negative: no limit.
	SessionsPerMinute float64
	// SessionBurst is the per-IP token bucket size.
	SessionBurst int
	// MaxStreams caps concurrently open WebSockets and chunked streams; negative: no cap.
	MaxStreams int
	// MaxStreamsPerIP caps them per client IP (IPv6: per /64); negative: no cap.
	MaxStreamsPerIP int
	// MaxBodyBytes limits request bodies.
	MaxBodyBytes int64
	// MaxMessageBytes limits the size of a WebSocket message from the client.
	MaxMessageBytes int64

	// PartyOpsPerMinute is the per-IP token refill rate of party operations (a bucket of their
	// own, apart from session requests); negative: no limit.
	PartyOpsPerMinute float64
	// PartyOpsBurst is the per-IP token bucket size of party operations.
	PartyOpsBurst int
	// PartyTimeout bounds one party operation's request to the matchmaker.
	PartyTimeout time.Duration
	// PlayStreamTimeout replaces StreamTimeout for a play-together request (queue, props or
	// party), which first waits for other players.
	PlayStreamTimeout time.Duration
	// StreamIdleTimeout ends a streaming request (plain or play-together) after this long
	// without any message from the matchmaker, with 503 "matchmaker stopped answering"
	// (idle.go); negative: never (a matchmaker that can be silent longer, e.g. the Rust one
	// during a slow Edgegap create).
	StreamIdleTimeout time.Duration
	// ResendUnanswered sends a streaming request once more, to a fresh reply subject, when no
	// message at all came back for this long (resend.go): the request was lost with a NATS
	// node that died as it passed, or its matchmaker died at once. Negative: never.
	ResendUnanswered time.Duration

	// Status configures the operator status page /status (off by default; status.go).
	Status StatusConfig
}

// withDefaults returns c with every zero field set to its default, or an error for a value that
// cannot work.
func (c Config) withDefaults() (Config, error) {
	if c.AllowedOrigins == nil {
		c.AllowedOrigins = []string{DefaultAllowedOrigin}
	}
	c.AllowedOrigins = append([]string{}, c.AllowedOrigins...) // never edit the caller's slice
	c.TrustedProxies = append([]netip.Prefix(nil), c.TrustedProxies...)
	for i, o := range c.AllowedOrigins {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o != "*" && !strings.Contains(o, "://") {
			return c, fmt.Errorf("httpd: allowed origin %q must be scheme://host[:port] or *", o)
		}
		c.AllowedOrigins[i] = o
	}
	if !c.StandInIP.IsValid() {
		c.StandInIP = DefaultStandInIP
	}
	c.StandInIP = c.StandInIP.Unmap()
	setDur := func(d *time.Duration, def time.Duration) {
		if *d <= 0 {
			*d = def
		}
	}
	setDur(&c.FirstMessageTimeout, DefaultFirstMessageTimeout)
	setDur(&c.StreamTimeout, DefaultStreamTimeout)
	setDur(&c.GenSessionTimeout, DefaultGenSessionTimeout)
	setDur(&c.WriteTimeout, DefaultWriteTimeout)
	if c.SessionsPerMinute == 0 {
		c.SessionsPerMinute = DefaultSessionsPerMinute
	}
	if c.SessionBurst <= 0 {
		c.SessionBurst = DefaultSessionBurst
	}
	if c.MaxStreams == 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.MaxStreamsPerIP == 0 {
		c.MaxStreamsPerIP = DefaultMaxStreamsPerIP
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.PartyOpsPerMinute == 0 {
		c.PartyOpsPerMinute = DefaultPartyOpsPerMinute
	}
	if c.PartyOpsBurst <= 0 {
		c.PartyOpsBurst = DefaultPartyOpsBurst
	}
	setDur(&c.PartyTimeout, DefaultPartyTimeout)
	setDur(&c.PlayStreamTimeout, DefaultPlayStreamTimeout)
	if c.StreamIdleTimeout == 0 {
		c.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if c.ResendUnanswered == 0 {
		c.ResendUnanswered = DefaultResendUnanswered
	}
	return c, nil
}

// ParseOrigins splits a comma-separated origin list (flag or env value).
func ParseOrigins(s string) []string {
	out := []string{}
	for _, o := range strings.Split(s, ",") {
		if o = strings.TrimSpace(o); o != "" {
			out = append(out, o)
		}
	}
	return out
}

// ParsePrefixes parses a comma-separated list of CIDR prefixes or single addresses
// ("10.0.0.0/8, 127.0.0.1, ::1").
func ParsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if strings.Contains(f, "/") {
			p, err := netip.ParsePrefix(f)
			if err != nil {
				return nil, fmt.Errorf("httpd: trusted proxy %q: %w", f, err)
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("httpd: trusted proxy %q: %w", f, err)
		}
		a = a.Unmap()
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// Validate reports a configuration that cannot work (such as an origin without a scheme), so
// that a command can refuse it before connecting to anything.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}
