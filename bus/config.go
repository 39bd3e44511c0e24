// Package bus is bevygap's one way to reach NATS: connection config from flags and the reference's
// environment variables, connecting with bounded retries, and the JetStream KV buckets and
// streams the services share. (The embedded nats-server of `bevygap dev` and the tests is
// internal/natsembed, so that SDK binaries do not link nats-server.)
package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
	"unicode"
)

// DefaultInboxPrefix is nats.go's (and async-nats') reply inbox prefix, used when
// [Config.InboxPrefix] is empty.
const DefaultInboxPrefix = "_INBOX"

// maxInboxPrefixLen bounds [Config.InboxPrefix]; every reply subject carries it.
const maxInboxPrefixLen = 128

// ErrInboxPrefix is returned (wrapped) for an invalid [Config.InboxPrefix].
var ErrInboxPrefix = errors.New("bus: invalid NATS inbox prefix")

// Config says how to reach NATS. Fill it with [ConfigFromEnv] and override with flags.
// The zero value connects to nats://127.0.0.1:4222 with TLS required, which is rarely what you want:
// set Host, or Insecure for a local server.
type Config struct {
	// Host is NATS_HOST: "host", "host:port", or a URL (nats://, tls://, ws://, wss://). Several
	// servers may be given separated by commas.
	Host string
	// User and Password are NATS_USER and NATS_PASSWORD (NATS_PASS is accepted too).
	User     string
	Password string
	// CAFile is NATS_CA: a path to a PEM file with the CA that signed the server's certificate.
	CAFile string
	// CAContents is NATS_CA_CONTENTS: the CA PEM itself (used when CAFile is empty).
	CAContents string
	// Insecure is NATS_INSECURE (set to anything): plain TCP, no TLS.
	Insecure bool
	// Name is the client connection name shown by the server (e.g. "bevygap-matchmaker").
	Name string
	// ConnectWait bounds how long [Connect] keeps retrying the first connection. Zero means 30 s.
	ConnectWait time.Duration
	// InboxPrefix is NATS_INBOX_PREFIX: the first token(s) of every reply subject this
	// connection creates (requests, JetStream API calls and acks, KV watches, consumer
	// fetches), e.g. "_INBOX_httpd" gives replies on "_INBOX_httpd.<id>...". Empty means
	// [DefaultInboxPrefix], "_INBOX", as in the Rust services. Give each NATS role its own prefix
	// and allow it to subscribe only "<prefix>.>", so that no other role can read its replies
	// (docs/deploy.md). Checked by [ValidateInboxPrefix].
	InboxPrefix string
}

// ValidateInboxPrefix checks an inbox prefix ([Config.InboxPrefix]): empty (the default), or
// one or more NATS subject tokens separated by single dots, without wildcards ('*', '>'),
// whitespace or control characters, at most 128 bytes, not ending in a dot. The error wraps
// [ErrInboxPrefix].
func ValidateInboxPrefix(p string) error {
	if p == "" {
		return nil
	}
	if len(p) > maxInboxPrefixLen {
		return fmt.Errorf("%w: NATS_INBOX_PREFIX is %d bytes, at most %d", ErrInboxPrefix, len(p), maxInboxPrefixLen)
	}
	for _, r := range p {
		switch {
		case r == '*' || r == '>':
			return fmt.Errorf("%w %q: no wildcards ('*', '>'); use subject tokens like _INBOX_httpd", ErrInboxPrefix, p)
		case unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar:
			return fmt.Errorf("%w %q: no spaces or control characters; use subject tokens like _INBOX_httpd", ErrInboxPrefix, p)
		}
	}
	for _, tok := range strings.Split(p, ".") {
		if tok == "" {
			return fmt.Errorf("%w %q: empty token (leading, trailing or double '.'); use e.g. _INBOX_httpd", ErrInboxPrefix, p)
		}
	}
	return nil
}

// inboxPrefix is the prefix the connection uses: InboxPrefix or the default.
func (c Config) inboxPrefix() string {
	if c.InboxPrefix == "" {
		return DefaultInboxPrefix
	}
	return c.InboxPrefix
}

// ConfigFromEnv reads the reference's environment variables with getenv (usually os.Getenv),
// plus NATS_INBOX_PREFIX (a Go addition; unset keeps the reference's "_INBOX").
func ConfigFromEnv(getenv func(string) string) Config {
	c := Config{
		Host:        getenv("NATS_HOST"),
		User:        getenv("NATS_USER"),
		Password:    getenv("NATS_PASSWORD"),
		CAFile:      getenv("NATS_CA"),
		CAContents:  getenv("NATS_CA_CONTENTS"),
		InboxPrefix: getenv("NATS_INBOX_PREFIX"),
	}
	if c.Password == "" {
		c.Password = getenv("NATS_PASS")
	}
	// The reference tests std::env::var("NATS_INSECURE").is_ok(): set at all, even empty, means
	// insecure. getenv cannot tell empty from unset, so any non-empty value counts, and so does
	// the explicit word for an empty-looking value.
	c.Insecure = getenv("NATS_INSECURE") != ""
	return c
}

// servers turns Host into the URL list nats.go wants. Without a scheme, "tls://" is used unless
// Insecure is set (the reference requires TLS by default).
func (c Config) servers() ([]string, error) {
	host := strings.TrimSpace(c.Host)
	if host == "" {
		host = "127.0.0.1"
	}
	var out []string
	for _, h := range strings.Split(host, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if !strings.Contains(h, "://") {
			scheme := "tls://"
			if c.Insecure {
				scheme = "nats://"
			}
			h = scheme + h
		}
		switch scheme := h[:strings.Index(h, "://")]; scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return nil, fmt.Errorf("bus: NATS_HOST %q: unsupported scheme %q (want nats, tls, ws or wss)", redactURL(h), scheme)
		}
		out = append(out, h)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("bus: NATS_HOST %q names no server", c.Host)
	}
	return out, nil
}

// String describes c without its password or CA contents.
func (c Config) String() string {
	pw := ""
	if c.Password != "" {
		pw = "[REDACTED]"
	}
	ca := c.CAFile
	if ca == "" && c.CAContents != "" {
		ca = fmt.Sprintf("(inline PEM, %d bytes)", len(c.CAContents))
	}
	return fmt.Sprintf("bus.Config{Host:%q User:%q Password:%q CA:%q Insecure:%t Name:%q InboxPrefix:%q}",
		redactURL(c.Host), c.User, pw, ca, c.Insecure, c.Name, c.InboxPrefix)
}

// GoString is String, so that %#v does not print the password either.
func (c Config) GoString() string { return c.String() }

// LogValue makes slog print c without secrets.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("host", redactURL(c.Host)),
		slog.String("user", c.User),
		slog.Bool("password_set", c.Password != ""),
		slog.Bool("tls", !c.Insecure),
		slog.Bool("custom_ca", c.CAFile != "" || c.CAContents != ""),
		slog.String("inbox_prefix", c.inboxPrefix()),
	)
}

// redactURL hides a password embedded in a URL such as nats://user:pass@host.
func redactURL(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		parts[i] = redactOneURL(p)
	}
	return strings.Join(parts, ",")
}

// userInfo returns where the user info of a server URL starts and where its '@' is (ok false
// when it has none).
func userInfo(s string) (start, at int, ok bool) {
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	at = strings.LastIndex(s[start:], "@")
	if at < 0 {
		return 0, 0, false
	}
	return start, start + at, true
}

// redactOneURL hides the user info of one server URL: "user:pass@" becomes "user:[REDACTED]@",
// and a token ("token@", no colon) becomes "[REDACTED]@".
func redactOneURL(s string) string {
	start, at, ok := userInfo(s)
	if !ok {
		return s
	}
	if i := strings.Index(s[start:at], ":"); i >= 0 {
		return s[:start+i] + ":[REDACTED]" + s[at:]
	}
	return s[:start] + "[REDACTED]" + s[at:]
}

// urlSecrets returns the secrets the server URLs of host carry: tokens and passwords in their
// user info.
func urlSecrets(host string) []string {
	var out []string
	for _, h := range strings.Split(host, ",") {
		h = strings.TrimSpace(h)
		start, at, ok := userInfo(h)
		if !ok {
			continue
		}
		creds := h[start:at]
		if i := strings.Index(creds, ":"); i >= 0 {
			creds = creds[i+1:]
		}
		if creds != "" {
			out = append(out, creds)
		}
	}
	return out
}

// redactedError is an error whose message has had secrets replaced. It unwraps to the
// original, so errors.Is/As keep working; only its text changes.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// redactErr returns err with every secret in its message replaced by [REDACTED] (err itself
// when its message contains none). nats.go and net/url quote whole URLs, user info included,
// in their errors.
func redactErr(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	red := msg
	for _, s := range secrets {
		if s != "" {
			red = strings.ReplaceAll(red, s, "[REDACTED]")
		}
	}
	if red == msg {
		return err
	}
	return &redactedError{msg: red, err: err}
}
