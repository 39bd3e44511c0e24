package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/coder/websocket"

	"github.com/bevygap-go/bevygap/protocol"
)

// errPrefix starts the text frame (or chunked line) the front door sends on a failure.
const errPrefix = "ERR"

// requestWebSocket runs the request over GET /matchmaker/ws.
func (r *requester) requestWebSocket(ctx context.Context, u, game, version string) (*Session, error) {
	conn, resp, err := websocket.Dial(ctx, u, r.dialOptions())
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			return nil, statusError(resp)
		}
		if ctx.Err() != nil {
			return nil, ctxError(ctx, "connecting to the matchmaker")
		}
		return nil, fmt.Errorf("%w at %s: %w", ErrConnect, u, err)
	}
	// Until the final feedback is handled, any return drops the connection.
	finished := false
	defer func() {
		if !finished {
			_ = conn.CloseNow()
		}
	}()
	conn.SetReadLimit(maxMessageBytes)

	req := protocol.RequestSession{Game: game, Version: version, Queue: r.opts.Queue, Props: r.opts.Props, Party: r.opts.Party}
	if r.opts.ClientIP != "" {
		ip := r.opts.ClientIP
		req.ClientIP = &ip
	}
	payload, err := protocol.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("client: encode request: %w", err)
	}
	if err := conn.Write(ctx, websocket.MessageText, payload); err != nil {
		if ctx.Err() != nil {
			return nil, ctxError(ctx, "sending the request")
		}
		return nil, fmt.Errorf("%w: sending the request: %w", ErrStreamEnded, err)
	}
	r.progress(Progress{State: StateAwaitingResponse, Message: "Requesting ..."})

	for {
		typ, msg, err := conn.Read(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctxError(ctx, "waiting for the matchmaker")
			}
			if errors.Is(err, websocket.ErrMessageTooBig) {
				return nil, fmt.Errorf("%w: a message is longer than %d bytes", ErrProtocol, maxMessageBytes)
			}
			return nil, streamEndedError(err)
		}
		if typ != websocket.MessageText {
			// The Rust plugin ignores binary messages too.
			r.log.WarnContext(ctx, "matchmaker sent a binary message; ignored", "bytes", len(msg))
			continue
		}
		s, final, err := r.handleMessage(msg)
		if !final {
			continue
		}
		finished = true
		r.awaitClose(ctx, conn)
		return s, err
	}
}

// handleMessage interprets one text frame or chunk. final reports that the stream is over:
// a SessionReady (s set) or a failure (err set).
func (r *requester) handleMessage(msg []byte) (s *Session, final bool, err error) {
	if text, ok := errMessage(msg); ok {
		return nil, true, &ServerError{Message: text}
	}
	var fb protocol.Feedback
	if err := fb.UnmarshalJSON(msg); err != nil {
		return nil, true, fmt.Errorf("%w: %s: %w", ErrProtocol, snippet(msg), err)
	}
	s, err = r.handle(fb)
	return s, s != nil || err != nil, err
}

// errMessage reports whether msg is an "ERR <message>" failure and returns the message.
func errMessage(msg []byte) (string, bool) {
	rest, ok := bytes.CutPrefix(msg, []byte(errPrefix))
	if !ok || (len(rest) > 0 && rest[0] != ' ') {
		return "", false
	}
	return strings.TrimSpace(string(rest)), true
}

// awaitClose gives the server a moment for its closing handshake ("Goodbye") so that both ends
// close cleanly, then drops the connection whatever happened.
func (r *requester) awaitClose(ctx context.Context, conn *websocket.Conn) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), closeGrace)
	defer cancel()
	for {
		_, msg, err := conn.Read(ctx)
		if err != nil {
			r.log.DebugContext(ctx, "matchmaker stream closed", "status", websocket.CloseStatus(err))
			break
		}
		r.log.WarnContext(ctx, "matchmaker sent a message after the final feedback; ignored", "message", snippet(msg))
	}
	_ = conn.CloseNow()
}

// streamEndedError describes how the WebSocket stream ended before the final feedback.
func streamEndedError(err error) error {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return fmt.Errorf("%w: connection closed with status %d %q", ErrStreamEnded, int(ce.Code), ce.Reason)
	}
	return fmt.Errorf("%w: %w", ErrStreamEnded, err)
}

// statusError builds a *StatusError from an HTTP answer, reading at most 512 bytes of its body.
func statusError(resp *http.Response) error {
	e := &StatusError{StatusCode: resp.StatusCode}
	if resp.Body != nil {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		e.Body = strings.TrimSpace(string(b))
	}
	return e
}
