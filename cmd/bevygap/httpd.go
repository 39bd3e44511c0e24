package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/httpd"
	"github.com/bevygap-go/bevygap/internal/svcmetrics"
)

// httpdEnvPrefix prefixes the environment variable of every httpd flag: --stream-timeout is
// BEVYGAP_HTTPD_STREAM_TIMEOUT. A flag on the command line wins over the variable.
const httpdEnvPrefix = "BEVYGAP_HTTPD_"

func runHTTPD(ctx context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "httpd", "[flags]")
	bind := fs.String("bind", httpd.DefaultBind, "ip:port to listen on")
	cors := fs.String("cors", httpd.DefaultAllowedOrigin, `allowed browser origins, comma separated ("*" = any origin)`)
	fakeIP := fs.String("fake-ip", httpd.DefaultStandInIP.String(), "stand-in client IP for loopback/private clients (Edgegap places the server near it)")
	trusted := fs.String("trusted-proxies", "", "CIDRs/IPs of reverse proxies whose X-Forwarded-For is believed, comma separated")
	noOverride := fs.Bool("no-client-ip-override", false, "ignore ?client_ip= and the client_ip of WebSocket requests")
	firstMsg := fs.Duration("first-message-timeout", httpd.DefaultFirstMessageTimeout, "time a WebSocket client has to send its request")
	streamTimeout := fs.Duration("stream-timeout", httpd.DefaultStreamTimeout, "limit for one whole session request stream")
	genTimeout := fs.Duration("gensession-timeout", httpd.DefaultGenSessionTimeout, "limit for one wannaplay (session.gensession) request")
	writeTimeout := fs.Duration("write-timeout", httpd.DefaultWriteTimeout, "limit for writing one frame or chunk to a client")
	perMinute := fs.Float64("rate", httpd.DefaultSessionsPerMinute, "session requests per minute per client IP (negative = unlimited)")
	burst := fs.Int("burst", httpd.DefaultSessionBurst, "session request burst per client IP")
	maxStreams := fs.Int("max-streams", httpd.DefaultMaxStreams, "open WebSockets + chunked streams in total (negative = unlimited)")
	maxPerIP := fs.Int("max-streams-per-ip", httpd.DefaultMaxStreamsPerIP, "open WebSockets + chunked streams per client IP, IPv6 per /64 (negative = unlimited)")
	maxBody := fs.Int64("max-body", httpd.DefaultMaxBodyBytes, "request body limit in bytes")
	maxMessage := fs.Int64("max-message", httpd.DefaultMaxMessageBytes, "WebSocket message limit in bytes")
	natsCfg := addNATSClientFlags(fs, env, "bevygap-httpd")
	if err := flagsFromEnv(fs, env, httpdEnvPrefix, "nats-"); err != nil {
		return err
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{message: fmt.Sprintf("unexpected argument %q", fs.Arg(0)), hint: "bevygap httpd -h"}
	}
	standIn, err := netip.ParseAddr(strings.TrimSpace(*fakeIP))
	if err != nil {
		return &usageError{message: fmt.Sprintf("--fake-ip %q is not an IP address", *fakeIP), hint: "--fake-ip 81.128.157.100"}
	}
	proxies, err := httpd.ParsePrefixes(*trusted)
	if err != nil {
		return &usageError{message: err.Error(), hint: "--trusted-proxies 10.0.0.0/8,127.0.0.1"}
	}
	cfg := httpd.Config{
		AllowedOrigins:          httpd.ParseOrigins(*cors),
		TrustedProxies:          proxies,
		StandInIP:               standIn,
		DisableClientIPOverride: *noOverride,
		FirstMessageTimeout:     *firstMsg,
		StreamTimeout:           *streamTimeout,
		GenSessionTimeout:       *genTimeout,
		WriteTimeout:            *writeTimeout,
		SessionsPerMinute:       *perMinute,
		SessionBurst:            *burst,
		MaxStreams:              *maxStreams,
		MaxStreamsPerIP:         *maxPerIP,
		MaxBodyBytes:            *maxBody,
		MaxMessageBytes:         *maxMessage,
	}

	if err := cfg.Validate(); err != nil {
		return &usageError{message: err.Error(), hint: "--cors https://game.example.com,http://localhost:8000"}
	}

	log := slog.New(slog.NewTextHandler(env.Stderr, nil))
	nc, err := bus.Connect(ctx, natsCfg(), log)
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := svcmetrics.NewRegistry()
	srv, err := httpd.New(cfg, nc, log, reg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *bind)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", *bind, err)
	}
	log.Info("bevygap httpd listening", "addr", ln.Addr().String())
	return srv.Serve(ctx, ln)
}
