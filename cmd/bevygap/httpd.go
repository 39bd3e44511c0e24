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

	// Refuse a bad NATS configuration, then listen, both before connecting to NATS: a bad or
	// busy --bind is reported at once, not after the NATS connect wait.
	busCfg := natsCfg()
	if err := bus.ValidateInboxPrefix(busCfg.InboxPrefix); err != nil {
		return err
	}
	ln, err := listenBind(ctx, "bevygap httpd", *bind, httpd.DefaultBind)
	if err != nil {
		return err
	}
	defer ln.Close() // Serve closes it too; this covers the errors before Serve
	log := slog.New(slog.NewTextHandler(env.Stderr, nil))
	nc, err := bus.Connect(ctx, busCfg, log)
	if err != nil {
		return err
	}
	defer nc.Close()
	reg := svcmetrics.NewRegistry()
	srv, err := httpd.New(cfg, nc, log, reg)
	if err != nil {
		return err
	}
	log.Info("bevygap httpd listening", "addr", ln.Addr().String())
	return srv.Serve(ctx, ln)
}

// listenBind checks that bind is an ip:port (or host:port) address, then listens on it. An
// address that cannot be parsed is a usage error whose hint shows example, the command's
// default; a failure to listen (port in use, address not on this machine) is an ordinary error.
func listenBind(ctx context.Context, command, bind, example string) (net.Listener, error) {
	if err := checkBind(bind); err != nil {
		return nil, &usageError{message: fmt.Sprintf("--bind %q: %v", bind, err), hint: command + " --bind " + example}
	}
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
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
