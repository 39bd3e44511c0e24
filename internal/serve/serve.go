// Package serve runs an http.Server with the one graceful-shutdown sequence every service of
// this module uses: serve until the context ends, stop accepting, let in-flight requests finish
// within a grace period, then close what is left and say so.
package serve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Timeouts of [NewServer]: slow headers and request bodies are cut off, idle keep-alive
// connections closed. There is no write timeout: WebSockets and streamed responses are long.
const (
	ReadHeaderTimeout = 5 * time.Second
	ReadTimeout       = 15 * time.Second
	IdleTimeout       = 60 * time.Second
	MaxHeaderBytes    = 16 << 10
)

// NewServer returns an http.Server for h with the timeouts above, fit for the public internet.
// The server's own error log goes to log at debug level (nil means slog.Default()).
func NewServer(h http.Handler, log *slog.Logger) *http.Server {
	if log == nil {
		log = slog.Default()
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// ErrGraceExceeded is returned (wrapped) by [HTTP] when requests were still running after the
// grace period; they were cut off.
var ErrGraceExceeded = errors.New("serve: requests still running after the grace period")

// HTTP serves srv on ln until ctx ends, then shuts srv down: it stops accepting, runs drain
// (when not nil) beside http.Server.Shutdown so that long streams can be told to finish, and
// waits at most grace for both. Whatever is still open then is closed. It returns nil after a
// clean shutdown, an error wrapping [ErrGraceExceeded] when the grace ran out, and the serve
// error (never http.ErrServerClosed) if serving failed before ctx ended.
func HTTP(ctx context.Context, srv *http.Server, ln net.Listener, grace time.Duration, drain func(context.Context) error) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		if drain != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
			_ = drain(dctx)
			cancel()
		}
		return fmt.Errorf("serve %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	drainErr := make(chan error, 1)
	if drain != nil {
		go func() { drainErr <- drain(sctx) }()
	} else {
		drainErr <- nil
	}
	shutErr := srv.Shutdown(sctx)
	derr := <-drainErr
	if shutErr != nil {
		_ = srv.Close()
	}
	<-errc // http.ErrServerClosed
	if shutErr != nil || derr != nil {
		return fmt.Errorf("%w (%v): %w", ErrGraceExceeded, grace, errors.Join(shutErr, derr))
	}
	return nil
}
