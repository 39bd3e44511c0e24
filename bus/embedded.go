package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// EmbeddedConfig configures an in-process nats-server with JetStream.
type EmbeddedConfig struct {
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

// Embedded is a running in-process nats-server.
type Embedded struct {
	srv      *server.Server
	tmpDir   string
	user     string
	password string
}

// StartEmbedded starts a nats-server with JetStream in this process and waits until it accepts
// connections (at most 10 s).
func StartEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	e := &Embedded{user: cfg.User, password: cfg.Password}
	store := cfg.StoreDir
	if store == "" {
		dir, err := os.MkdirTemp("", "bevygap-nats-*")
		if err != nil {
			return nil, fmt.Errorf("bus: embedded NATS store dir: %w", err)
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
		return nil, fmt.Errorf("bus: embedded NATS: %w", err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(&slogAdapter{log: cfg.Logger}, false, false, false)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		e.cleanup()
		return nil, errors.New("bus: embedded NATS did not become ready within 10s")
	}
	e.srv = srv
	return e, nil
}

// ClientURL is the nats:// URL clients use to reach the server.
func (e *Embedded) ClientURL() string { return e.srv.ClientURL() }

// Config returns a client Config that reaches this server (plain TCP on loopback).
func (e *Embedded) Config(name string) Config {
	return Config{Host: e.ClientURL(), User: e.user, Password: e.password, Insecure: true, Name: name}
}

// Server exposes the underlying nats-server, e.g. for tests that restart it.
func (e *Embedded) Server() *server.Server { return e.srv }

// Shutdown stops the server, waits for it to finish and removes a temporary store dir.
func (e *Embedded) Shutdown() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
	}
	e.cleanup()
}

func (e *Embedded) cleanup() {
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
