// Package bus is bevygap's one way to reach NATS: connection config from flags and the reference's
// environment variables, connecting with bounded retries, an embedded nats-server for `bevygap dev`
// and tests, and the JetStream KV buckets and streams the services share.
package bus

import (
	"fmt"
	"log/slog"
	"strings"
	"time"
)

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
}

// ConfigFromEnv reads the reference's environment variables with getenv (usually os.Getenv).
func ConfigFromEnv(getenv func(string) string) Config {
	c := Config{
		Host:       getenv("NATS_HOST"),
		User:       getenv("NATS_USER"),
		Password:   getenv("NATS_PASSWORD"),
		CAFile:     getenv("NATS_CA"),
		CAContents: getenv("NATS_CA_CONTENTS"),
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
	return fmt.Sprintf("bus.Config{Host:%q User:%q Password:%q CA:%q Insecure:%t Name:%q}",
		redactURL(c.Host), c.User, pw, ca, c.Insecure, c.Name)
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
	)
}

// redactURL hides a password embedded in a URL such as nats://user:pass@host.
func redactURL(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	start := strings.Index(s, "://")
	if start < 0 {
		start = 0
	} else {
		start += 3
	}
	creds := s[start:at]
	if i := strings.Index(creds, ":"); i >= 0 {
		return s[:start] + creds[:i] + ":[REDACTED]" + s[at:]
	}
	return s
}
