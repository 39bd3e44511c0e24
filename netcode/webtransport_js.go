//go:build js

package netcode

// The WebTransport transport in a browser (GOOS=js GOARCH=wasm): the client's datagrams go
// through the browser's WebTransport API (syscall/js), since a page cannot open UDP sockets.
// Browsers only accept a self-signed certificate pinned by digest (serverCertificateHashes:
// ECDSA, valid at most 14 days), so ClientConfig.CertDigest is required here. The netcode
// protocol on top is the same Client as everywhere else.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall/js"
	"time"
)

// jsInQueue bounds the datagrams waiting for the client's reads (more are dropped).
const jsInQueue = 256

// jsWTNetwork dials WebTransport sessions with the browser's API.
type jsWTNetwork struct {
	digest *CertDigest
}

// webTransportNetwork returns the clientNetwork of ClientConfig{Transport:
// TransportWebTransport} in the browser.
func webTransportNetwork(cfg ClientConfig) clientNetwork {
	return jsWTNetwork{digest: cfg.CertDigest}
}

// jsResult is a settled promise.
type jsResult struct {
	v   js.Value
	err error
}

// await waits until promise p settles or ctx ends.
func await(ctx context.Context, p js.Value) (js.Value, error) {
	ch := make(chan jsResult, 1)
	then := js.FuncOf(func(_ js.Value, args []js.Value) any {
		v := js.Undefined()
		if len(args) > 0 {
			v = args[0]
		}
		ch <- jsResult{v: v}
		return nil
	})
	catch := js.FuncOf(func(_ js.Value, args []js.Value) any {
		msg := "promise rejected"
		if len(args) > 0 {
			msg = jsErrorText(args[0])
		}
		ch <- jsResult{err: errors.New(msg)}
		return nil
	})
	p.Call("then", then, catch)
	select {
	case r := <-ch:
		then.Release()
		catch.Release()
		return r.v, r.err
	case <-ctx.Done():
		// The callbacks must outlive the promise: release them once it settles.
		go func() {
			<-ch
			then.Release()
			catch.Release()
		}()
		return js.Undefined(), context.Cause(ctx)
	}
}

// jsErrorText renders a JS error (or any value) as text.
func jsErrorText(v js.Value) string {
	if v.Type() == js.TypeObject {
		if m := v.Get("message"); m.Type() == js.TypeString {
			if n := v.Get("name"); n.Type() == js.TypeString {
				return n.String() + ": " + m.String()
			}
			return m.String()
		}
	}
	return js.Global().Get("String").Invoke(v).String()
}

// dial opens a WebTransport session to https://addr/ with the browser's API.
func (n jsWTNetwork) dial(ctx context.Context, addr netip.AddrPort) (clientConn, error) {
	ctor := js.Global().Get("WebTransport")
	if ctor.Type() != js.TypeFunction {
		return nil, errors.New("netcode: this browser has no WebTransport")
	}
	if n.digest == nil {
		return nil, fmt.Errorf("%w: a browser accepts a self-signed certificate only pinned by its digest; set ClientConfig.CertDigest", ErrCertMismatch)
	}
	hash := js.Global().Get("Uint8Array").New(len(n.digest))
	js.CopyBytesToJS(hash, n.digest[:])
	opts := map[string]any{
		"serverCertificateHashes": []any{map[string]any{"algorithm": "sha-256", "value": hash}},
	}
	url := "https://" + addr.String() + "/"
	var wt js.Value
	if err := jsTry(func() { wt = ctor.New(url, opts) }); err != nil {
		return nil, fmt.Errorf("netcode: new WebTransport(%s): %w", url, err)
	}
	c := &jsWTConn{
		wt:     wt,
		in:     make(chan []byte, jsInQueue),
		dead:   make(chan struct{}),
		closed: make(chan struct{}),
	}
	// Every promise the session hands out is observed, so none is reported as an unhandled
	// rejection in the console.
	c.ignore = js.FuncOf(func(js.Value, []js.Value) any { return nil })
	wt.Get("closed").Call("catch", c.ignore)
	if _, err := await(ctx, wt.Get("ready")); err != nil {
		c.closeJS()
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		// The browser does not say why (a wrong pin and an unreachable server look the same).
		return nil, fmt.Errorf("netcode: WebTransport session to %s failed (server unreachable, or its certificate does not match the pinned digest %s): %w", url, n.digest, err)
	}
	c.writer = wt.Get("datagrams").Get("writable").Call("getWriter")
	c.reader = wt.Get("datagrams").Get("readable").Call("getReader")
	c.writer.Get("closed").Call("catch", c.ignore)
	c.reader.Get("closed").Call("catch", c.ignore)
	go c.readLoop()
	return c, nil
}

// jsTry runs f and returns a JS exception it threw as an error.
func jsTry(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			if je, ok := r.(js.Error); ok {
				err = errors.New(jsErrorText(je.Value))
				return
			}
			err = fmt.Errorf("%v", r)
		}
	}()
	f()
	return nil
}

// jsWTConn is a client's clientConn over one browser WebTransport session.
type jsWTConn struct {
	wt     js.Value
	writer js.Value // WritableStreamDefaultWriter of the datagrams
	reader js.Value // ReadableStreamDefaultReader of the datagrams
	ignore js.Func  // a no-op rejection handler
	in     chan []byte

	dead    chan struct{} // closed when the session ended
	deadErr error         // why, set before dead is closed

	closeOnce sync.Once
	closed    chan struct{}

	deadline readDeadline
}

// readLoop queues received datagrams until the session ends.
func (c *jsWTConn) readLoop() {
	ctx := context.Background()
	for {
		r, err := await(ctx, c.reader.Call("read"))
		if err == nil && r.Get("done").Bool() {
			err = errors.New("datagram stream closed")
		}
		if err != nil {
			c.deadErr = fmt.Errorf("%w: webtransport session ended: %w", ErrDisconnected, err)
			close(c.dead)
			return
		}
		v := r.Get("value")
		if n := v.Get("byteLength").Int(); n > maxPacketBytes {
			continue
		}
		b := make([]byte, v.Get("byteLength").Int())
		js.CopyBytesToGo(b, v)
		select {
		case c.in <- b:
		default: // full: dropped, as a full socket buffer drops UDP
		}
	}
}

// Read returns the next datagram: what is queued first, then the session's end (an error
// wrapping ErrDisconnected), a deadline error, or net.ErrClosed.
func (c *jsWTConn) Read(b []byte) (int, error) {
	for {
		select {
		case d := <-c.in:
			return copy(b, d), nil
		default:
		}
		expired, changed, stop, past := c.deadline.Arm()
		if past {
			return 0, os.ErrDeadlineExceeded
		}
		var (
			n    int
			err  error
			done = true
		)
		select {
		case d := <-c.in:
			n = copy(b, d)
		case <-c.closed:
			err = net.ErrClosed
		case <-c.dead:
			select {
			case d := <-c.in:
				n = copy(b, d)
			default:
				err = c.deadErr
			}
		case <-expired:
			err = os.ErrDeadlineExceeded
		case <-changed:
			done = false
		}
		stop()
		if done {
			return n, err
		}
	}
}

// Write sends b as one datagram. It never waits: the browser queues datagrams and drops what it
// cannot send.
func (c *jsWTConn) Write(b []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	case <-c.dead:
		return 0, c.deadErr
	default:
	}
	u8 := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(u8, b)
	c.writer.Call("write", u8).Call("catch", c.ignore)
	return len(b), nil
}

// SetReadDeadline sets the deadline of Read, also of a Read blocked now.
func (c *jsWTConn) SetReadDeadline(t time.Time) error {
	c.deadline.Set(t)
	return nil
}

// LocalAddr returns an unspecified address: a page does not see its socket.
func (c *jsWTConn) LocalAddr() net.Addr { return &net.UDPAddr{IP: net.IPv4zero} }

// Close closes the session.
func (c *jsWTConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.closeJS()
	})
	return nil
}

// closeJS closes the browser's session, ignoring "already closed".
func (c *jsWTConn) closeJS() {
	_ = jsTry(func() { c.wt.Call("close") })
}
