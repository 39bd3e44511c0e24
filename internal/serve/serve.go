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
	"sync"
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
	fresh := trackFreshConns(srv)
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
	stopFresh := fresh.closeAfter(min(FreshConnGrace, grace))
	shutErr := srv.Shutdown(sctx)
	stopFresh()
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

// FreshConnGrace is how long [HTTP]'s shutdown lets a connection that has not sent a request
// yet (a browser's or HTTP client's spare connection) live before closing it. net/http itself
// waits 5 s for those, which made every shutdown with such a client take 5 s; a request whose
// bytes were on the way when shutdown began has arrived by then.
const FreshConnGrace = 500 * time.Millisecond

// freshConns tracks the connections of a server that are in http.StateNew.
type freshConns struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// trackFreshConns installs a ConnState hook on srv (calling any hook already there) that keeps
// the set of connections that have not sent a request yet.
func trackFreshConns(srv *http.Server) *freshConns {
	f := &freshConns{conns: make(map[net.Conn]struct{})}
	prev := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		f.mu.Lock()
		if st == http.StateNew {
			f.conns[c] = struct{}{}
		} else {
			delete(f.conns, c)
		}
		f.mu.Unlock()
		if prev != nil {
			prev(c, st)
		}
	}
	return f
}

// closeAfter closes, after d, every connection still fresh then. The returned function cancels
// it (and waits for it to finish if it is running).
func (f *freshConns) closeAfter(d time.Duration) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-done:
			return
		case <-t.C:
		}
		f.mu.Lock()
		for c := range f.conns {
			_ = c.Close()
		}
		f.mu.Unlock()
	}()
	return func() {
		close(done)
		<-finished
	}
}
