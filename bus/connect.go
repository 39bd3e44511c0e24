package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/internal/backoff"
	"github.com/bevygap-go/bevygap/internal/logkey"
)

// ErrBadCA is returned (wrapped) when the configured CA cannot be read or holds no certificate.
var ErrBadCA = errors.New("bus: bad NATS CA")

// ErrAuth is returned (wrapped) when the server refuses the credentials; retrying will not help.
var ErrAuth = errors.New("bus: NATS authorization failed")

// Connect dials NATS as cfg says. It retries the first connection with backoff for at most
// cfg.ConnectWait (30 s by default) or until ctx ends, and fails fast on errors that retrying cannot
// fix (bad CA, wrong password). Once connected, nats.go reconnects forever on its own and every
// disconnect/reconnect is logged. An invalid cfg.InboxPrefix is refused before dialing (the
// error wraps [ErrInboxPrefix]).
func Connect(ctx context.Context, cfg Config, log *slog.Logger) (*nats.Conn, error) {
	if log == nil {
		log = slog.Default()
	}
	servers, err := cfg.servers()
	if err != nil {
		return nil, err
	}
	hint := ""
	if strings.TrimSpace(cfg.Host) == "" {
		// The reference refused to start without NATS_HOST; we fall back to a local server, but say
		// so, because a TLS connection to a plain local nats-server only ever fails.
		hint = " (NATS_HOST is not set: set it to your NATS server, and NATS_INSECURE=1 for a server without TLS)"
		log.Warn("NATS_HOST is not set; trying a local NATS server", "servers", redactURL(joinServers(servers)), "tls", !cfg.Insecure)
	}
	if err := ValidateInboxPrefix(cfg.InboxPrefix); err != nil {
		return nil, err
	}
	// Tokens and passwords inside NATS_HOST URLs: nats.go quotes whole URLs in its errors.
	secrets := append(urlSecrets(cfg.Host), cfg.Password)
	opts := []nats.Option{
		nats.Name(cfg.Name),
		nats.Timeout(5 * time.Second),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("NATS disconnected", logkey.Err, redactErr(err, secrets))
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info("NATS reconnected", "server", redactURL(nc.ConnectedUrl()))
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Error("NATS async error", logkey.Subject, subj, logkey.Err, redactErr(err, secrets))
		}),
	}
	if cfg.User != "" || cfg.Password != "" {
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	if cfg.InboxPrefix != "" {
		// Every reply subject of this connection: nc.NewInbox, the request mux, and through
		// them JetStream API replies, publish acks, KV watch and pull consumer inboxes.
		opts = append(opts, nats.CustomInboxPrefix(cfg.InboxPrefix))
	}
	if !cfg.Insecure {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}

	wait := cfg.ConnectWait
	if wait <= 0 {
		wait = defaultConnectWait
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var (
		nc       *nats.Conn
		attempts int
		lastErr  error // of the last attempt
		fatal    error // an error retrying cannot fix
	)
	err = backoff.Retry(ctx, connectBackoff, func(context.Context) error {
		attempts++
		c, err := nats.Connect(joinServers(servers), opts...)
		if err != nil {
			err = redactErr(err, secrets)
			lastErr = err
			if fatal = fatalConnectError(err, cfg.User); fatal != nil {
				return backoff.Permanent(fatal)
			}
			return err
		}
		nc = c
		return nil
	}, func(attempt int, wait time.Duration, err error) {
		log.Warn("NATS connect failed, retrying", logkey.Attempt, attempt, "servers", redactURL(joinServers(servers)), logkey.Err, err, logkey.RetryIn, wait)
	})
	switch {
	case err == nil:
		log.Info("NATS connected", "server", redactURL(nc.ConnectedUrl()), "tls", !cfg.Insecure, "user", cfg.User,
			"inbox_prefix", cfg.inboxPrefix())
		return nc, nil
	case fatal != nil:
		return nil, fatal
	default: // ctx ended (ConnectWait or the caller's)
		return nil, fmt.Errorf("bus: could not connect to NATS at %s after %d attempts: %w (last error: %v)%s",
			redactURL(joinServers(servers)), attempts, ctx.Err(), lastErr, hint)
	}
}

// defaultConnectWait is how long Connect retries the first connection when Config.ConnectWait
// is zero.
const defaultConnectWait = 30 * time.Second

// connectBackoff spaces the first-connection attempts of Connect: 250 ms, doubling to 5 s.
var connectBackoff = backoff.Policy{Base: 250 * time.Millisecond, Max: 5 * time.Second}

// fatalConnectError returns the error to fail with when retrying cannot fix err (the server
// refused the credentials of user, offers no TLS although TLS is required, or its certificate
// is not trusted), and nil when another
// attempt may succeed.
func fatalConnectError(err error, user string) error {
	if errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) || errors.Is(err, nats.ErrAuthRevoked) {
		return fmt.Errorf("%w as user %q: %v", ErrAuth, user, err)
	}
	if errors.Is(err, nats.ErrSecureConnWanted) {
		// TLS was asked for (the default) and the server offers none: every retry ends the same.
		return fmt.Errorf("bus: the NATS server does not offer TLS: set NATS_INSECURE=1 for a plain connection: %w", err)
	}
	var certErr *tls.CertificateVerificationError
	if errors.As(err, &certErr) {
		return fmt.Errorf("bus: NATS server certificate not trusted (set NATS_CA or NATS_CA_CONTENTS?): %w", err)
	}
	return nil
}

func joinServers(s []string) string {
	out := ""
	for i, v := range s {
		if i > 0 {
			out += ","
		}
		out += v
	}
	return out
}

// tlsConfig builds the TLS config: system roots, or the configured CA.
func tlsConfig(cfg Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	var pem []byte
	switch {
	case cfg.CAFile != "":
		b, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%w: NATS_CA %q: %v", ErrBadCA, cfg.CAFile, err)
		}
		pem = b
	case cfg.CAContents != "":
		pem = []byte(cfg.CAContents)
	default:
		return tc, nil
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: no PEM certificate found in %s", ErrBadCA, caSource(cfg))
	}
	tc.RootCAs = pool
	return tc, nil
}

func caSource(cfg Config) string {
	if cfg.CAFile != "" {
		return fmt.Sprintf("NATS_CA %q", cfg.CAFile)
	}
	return "NATS_CA_CONTENTS"
}
