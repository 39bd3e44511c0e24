// Package natsembed runs a nats-server with JetStream inside this process, for `bevygap dev`
// and tests. It lives apart from bus so that SDK binaries (game servers, clients) never link
// nats-server.
package natsembed

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config configures an in-process nats-server with JetStream.
type Config struct {
	// Host to listen on; "" means 127.0.0.1 (loopback only).
	Host string
	// Port to listen on; 0 means a random free port.
	Port int
	// StoreDir is the JetStream store directory; "" means a temporary directory that Shutdown removes.
	StoreDir string
	// User and Password, when set, are required of clients.
	User     string
	Password string
	// Logger receives the server's own log lines at debug level; nil means silent.
	Logger *slog.Logger
}

// Server is a running in-process nats-server.
type Server struct {
	srv      *server.Server
	tmpDir   string
	user     string
	password string
}

// Start starts a nats-server with JetStream in this process and waits until it accepts
// connections (at most 10 s).
func Start(cfg Config) (*Server, error) {
	e := &Server{user: cfg.User, password: cfg.Password}
	store := cfg.StoreDir
	if store == "" {
		dir, err := os.MkdirTemp("", "bevygap-nats-*")
		if err != nil {
			return nil, fmt.Errorf("natsembed: NATS store dir: %w", err)
		}
		e.tmpDir, store = dir, dir
	}
	host := cfg.Host
	if host == "" {
		host = "127.0.0.1"
	}
	port := cfg.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "bevygap-embedded",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   store,
		NoSigs:     true,
		NoLog:      cfg.Logger == nil,
		Username:   cfg.User,
		Password:   cfg.Password,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		e.cleanup()
		return nil, fmt.Errorf("natsembed: NATS: %w", err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(&slogAdapter{log: cfg.Logger}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		e.cleanup()
		return nil, errors.New("natsembed: NATS did not become ready within 10s")
	}
	e.srv = srv
	return e, nil
}

// ClientURL is the nats:// URL clients use to reach the server.
func (e *Server) ClientURL() string { return e.srv.ClientURL() }

// User returns the user name clients must present ("" when none is required).
func (e *Server) User() string { return e.user }

// Password returns the password clients must present ("" when none is required).
func (e *Server) Password() string { return e.password }

// Port is the TCP port the server listens on (to restart a server on the same port).
func (e *Server) Port() int { return e.srv.Addr().(*net.TCPAddr).Port }

// Connz reports the server's client connections (for tests that inspect subscriptions).
func (e *Server) Connz(opts *server.ConnzOptions) (*server.Connz, error) { return e.srv.Connz(opts) }

// Shutdown stops the server, waits for it to finish and removes a temporary store dir.
func (e *Server) Shutdown() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
	}
	e.cleanup()
}

func (e *Server) cleanup() {
	if e.tmpDir != "" {
		_ = os.RemoveAll(e.tmpDir)
	}
}

// slogAdapter forwards nats-server log lines to slog.
type slogAdapter struct{ log *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  {}
