package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/httpd"
	"github.com/bevygap-go/bevygap/internal/names"
	"github.com/bevygap-go/bevygap/internal/svcmetrics"
)

// httpdEnvPrefix prefixes the environment variable of every httpd flag: --stream-timeout is
// BEVYGAP_HTTPD_STREAM_TIMEOUT. A flag on the command line wins over the variable.
const httpdEnvPrefix = "BEVYGAP_HTTPD_"

// statusfeedInterval is the default of --status-interval (httpd.StatusConfig.PublishInterval).
const statusfeedInterval = 5 * time.Second

// httpdStatusTokenEnv holds the bearer token of the /status page (environment only).
const httpdStatusTokenEnv = "BEVYGAP_HTTPD_STATUS_TOKEN"

// httpdCommand is "bevygap httpd": the HTTP/WebSocket front door of the matchmaker.
type httpdCommand struct {
	env  *Env
	bind string
	cfg  httpd.Config
	nats bus.Config
	log  *slog.Logger

	natsListener // opened by Run
}

// ParseFlags reads the flags, BEVYGAP_HTTPD_<FLAG>, NATS_* and the log settings, and refuses a
// bad configuration, --bind or NATS inbox prefix.
func (c *httpdCommand) ParseFlags(args []string) error {
	fs := newFlagSet(c.env, "httpd", "[flags]")
	fs.StringVar(&c.bind, "bind", httpd.DefaultBind, "ip:port to listen on")
	cors := fs.String("cors", httpd.DefaultAllowedOrigin, `allowed browser origins, comma separated ("*" = any origin)`)
	fakeIP := fs.String("fake-ip", httpd.DefaultStandInIP.String(), "stand-in client IP for loopback/private clients (Edgegap places the server near it)")
	trusted := fs.String("trusted-proxies", "", "CIDRs/IPs of reverse proxies whose X-Forwarded-For is believed, comma separated")
	fs.BoolVar(&c.cfg.DisableClientIPOverride, "no-client-ip-override", false, "ignore ?client_ip= and the client_ip of WebSocket requests")
	fs.DurationVar(&c.cfg.FirstMessageTimeout, "first-message-timeout", httpd.DefaultFirstMessageTimeout, "time a WebSocket client has to send its request")
	fs.DurationVar(&c.cfg.StreamTimeout, "stream-timeout", httpd.DefaultStreamTimeout, "limit for one whole session request stream")
	fs.DurationVar(&c.cfg.PlayStreamTimeout, "play-stream-timeout", httpd.DefaultPlayStreamTimeout, "limit for one whole play-together request stream (queue, props or party: it waits for other players first)")
	fs.DurationVar(&c.cfg.StreamIdleTimeout, "stream-idle-timeout", httpd.DefaultStreamIdleTimeout, "end a request stream whose matchmaker sent nothing this long (it is gone); negative = never")
	fs.DurationVar(&c.cfg.ResendUnanswered, "resend-unanswered", httpd.DefaultResendUnanswered, "send a request stream once more when no matchmaker said anything this long (the request was lost with a NATS node); negative = never")
	fs.DurationVar(&c.cfg.GenSessionTimeout, "gensession-timeout", httpd.DefaultGenSessionTimeout, "limit for one wannaplay (session.gensession) request")
	fs.DurationVar(&c.cfg.WriteTimeout, "write-timeout", httpd.DefaultWriteTimeout, "limit for writing one frame or chunk to a client")
	fs.Float64Var(&c.cfg.SessionsPerMinute, "rate", httpd.DefaultSessionsPerMinute, "session requests per minute per client IP (negative = unlimited)")
	fs.IntVar(&c.cfg.SessionBurst, "burst", httpd.DefaultSessionBurst, "session request burst per client IP")
	fs.IntVar(&c.cfg.MaxStreams, "max-streams", httpd.DefaultMaxStreams, "open WebSockets + chunked streams in total (negative = unlimited)")
	fs.IntVar(&c.cfg.MaxStreamsPerIP, "max-streams-per-ip", httpd.DefaultMaxStreamsPerIP, "open WebSockets + chunked streams per client IP, IPv6 per /64 (negative = unlimited)")
	fs.Float64Var(&c.cfg.PartyOpsPerMinute, "party-rate", httpd.DefaultPartyOpsPerMinute, "party operations (create, join, leave, kick, get) per minute per client IP (negative = unlimited)")
	fs.IntVar(&c.cfg.PartyOpsBurst, "party-burst", httpd.DefaultPartyOpsBurst, "party operation burst per client IP")
	fs.DurationVar(&c.cfg.PartyTimeout, "party-timeout", httpd.DefaultPartyTimeout, "limit for one party operation's answer from the matchmaker")
	fs.Int64Var(&c.cfg.MaxBodyBytes, "max-body", httpd.DefaultMaxBodyBytes, "request body limit in bytes")
	fs.Int64Var(&c.cfg.MaxMessageBytes, "max-message", httpd.DefaultMaxMessageBytes, "WebSocket message limit in bytes")
	fs.DurationVar(&c.cfg.Status.PublishInterval, "status-interval", statusfeedInterval, "how often to publish this front door's open streams on NATS bevygap.status.httpd.<id> for /status pages (negative = never)")
	statusAllow := fs.String("status-allow", "", "CIDRs/IPs that may see the /status page, comma separated (the page is off unless this or "+httpdStatusTokenEnv+" is set)")
	natsCfg := addNATSClientFlags(fs, c.env, "bevygap-httpd")
	logs := addLogFlags(fs, c.env)
	if err := flagsFromEnv(fs, c.env, httpdEnvPrefix); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := logs.logger(c.env.Stderr)
	if err != nil {
		return err
	}
	c.log = log
	if fs.NArg() > 0 {
		return &usageError{message: fmt.Sprintf("unexpected argument %q", fs.Arg(0)), hint: "bevygap httpd -h"}
	}
	standIn, err := netip.ParseAddr(strings.TrimSpace(*fakeIP))
	if err != nil {
		return &usageError{message: fmt.Sprintf("--fake-ip %q is not an IP address", *fakeIP), hint: "--fake-ip 81.128.157.100"}
	}
	c.cfg.StandInIP = standIn
	if c.cfg.TrustedProxies, err = httpd.ParsePrefixes(*trusted); err != nil {
		return &usageError{message: err.Error(), hint: "--trusted-proxies 10.0.0.0/8,127.0.0.1"}
	}
	c.cfg.AllowedOrigins = httpd.ParseOrigins(*cors)
	if c.cfg.Status.AllowFrom, err = httpd.ParsePrefixes(*statusAllow); err != nil {
		return &usageError{message: "--status-allow: " + err.Error(), hint: "--status-allow 10.0.0.0/8,127.0.0.1"}
	}
	c.cfg.Status.Token = strings.TrimSpace(c.env.Getenv(httpdStatusTokenEnv)) // environment only: never in a process list
	if err := c.cfg.Validate(); err != nil {
		return &usageError{message: err.Error(), hint: "--cors https://game.example.com,http://localhost:8000"}
	}
	if err := checkBindFlag("bevygap httpd", c.bind, httpd.DefaultBind); err != nil {
		return err
	}
	c.nats = natsCfg()
	return bus.ValidateInboxPrefix(c.nats.InboxPrefix)
}

// Run listens (a busy --bind fails at once, before the NATS connect wait), connects to NATS
// and serves until ctx ends.
func (c *httpdCommand) Run(ctx context.Context) error {
	logStart(c.log, "httpd")
	if err := c.open(ctx, c.bind, c.nats, c.log); err != nil {
		return err
	}
	srv, err := httpd.New(c.cfg, c.nc, c.log, svcmetrics.NewRegistry())
	if err != nil {
		return err
	}
	c.log.Info("bevygap httpd listening", "addr", c.ln.Addr().String())
	return srv.Serve(ctx, c.ln)
}

// natsListener is what the NATS-connected HTTP services (httpd, webhook-sink) open before they
// serve: the listener first (a busy --bind fails at once, before the NATS connect wait), then the
// NATS connection. Close releases both.
type natsListener struct {
	ln net.Listener
	nc *nats.Conn
}

// open listens on bind and connects to NATS as cfg says.
func (l *natsListener) open(ctx context.Context, bind string, cfg bus.Config, log *slog.Logger) error {
	ln, err := listen(ctx, bind)
	if err != nil {
		return err
	}
	l.ln = ln
	l.nc, err = bus.Connect(ctx, cfg, log)
	return err
}

// Close closes the NATS connection and the listener (Serve closes it too; this covers the
// errors before Serve).
func (l *natsListener) Close() error {
	if l.nc != nil {
		l.nc.Close()
	}
	if l.ln != nil {
		_ = l.ln.Close()
	}
	return nil
}

// checkBindFlag returns a usage error when bind (the --bind of command) is not a listen
// address; its hint shows example, the command's default.
func checkBindFlag(command, bind, example string) error {
	if err := checkBind(bind); err != nil {
		return &usageError{message: fmt.Sprintf("--bind %q: %v", bind, err), hint: command + " --bind " + example}
	}
	return nil
}

// listen listens on the TCP address bind (checked by checkBindFlag). A failure (port in use,
// address not on this machine) is an ordinary error, not a usage error.
func listen(ctx context.Context, bind string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", bind, err)
	}
	return ln, nil
}

// checkBind reports why bind is not a listen address of the form ip:port, [ipv6]:port,
// host:port or :port, with a numeric port.
func checkBind(bind string) error {
	host, port, err := net.SplitHostPort(bind)
	if err != nil {
		return errors.New("not an ip:port address")
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q is not a number from 0 to 65535", port)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !validHostname(host) {
		return fmt.Errorf("%q is neither an IP address nor a host name", host)
	}
	return nil
}

// validHostname reports whether h looks like a DNS host name: dot-separated labels of 1 to 63
// letters, digits and hyphens, not starting or ending with a hyphen, 253 characters at most.
func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if !names.Valid(label, 63, "-") || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
	}
	return true
}
