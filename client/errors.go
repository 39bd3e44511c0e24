package client

import (
	"errors"
	"fmt"
	"strconv"
)

// Errors of this package. Request returns errors that wrap exactly one of these sentinels or is
// (wraps) one of the error types below; test with errors.Is and errors.As.
var (
	// ErrInvalidURL: the matchmaker URL does not parse, has a scheme other than ws, wss, http
	// or https, has no host, or (for the chunked HTTP transport) has a path that cannot be
	// mapped to /…/request/{game}/{version}.
	ErrInvalidURL = errors.New("client: invalid matchmaker URL")

	// ErrConnect: the matchmaker's front door could not be reached: DNS, TCP or TLS failure, or
	// a failed WebSocket handshake. A *StatusError (an HTTP refusal) also matches ErrConnect.
	ErrConnect = errors.New("client: cannot reach the matchmaker")

	// ErrProtocol: the front door sent something that is not part of the protocol: a text
	// frame or chunk that is neither a SessionRequestFeedback JSON document nor "ERR …", or an
	// unknown feedback variant.
	ErrProtocol = errors.New("client: unexpected message from the matchmaker")

	// ErrStreamEnded: the stream ended (normal close, abrupt close, end of the HTTP body)
	// before a SessionReady or Error feedback arrived.
	ErrStreamEnded = errors.New("client: matchmaker stream ended before the session was ready")

	// ErrInvalidSession: the SessionReady feedback cannot be used: its token is not base64, not
	// 2048 bytes or not a connect token in the chosen format, or its ip/port is not an address.
	// The netcode error (e.g. netcode.ErrTokenSize, netcode.ErrAddress) is wrapped as well.
	ErrInvalidSession = errors.New("client: matchmaker sent an unusable session")

	// ErrTimeout: the request did not finish within Options.Timeout or the context's deadline.
	// Such errors also match context.DeadlineExceeded. A cancelled context yields an error
	// matching context.Canceled instead.
	ErrTimeout = errors.New("client: matchmaker request timed out")
)

// MatchmakerError is the matchmaker's answer {"Error":[code,"message"]}: it could not provide a
// session. Code is HTTP-like (e.g. 500 for an Edgegap failure, 504 when the game server was not
// ready in time); Message is the matchmaker's text.
type MatchmakerError struct {
	Code    uint16
	Message string
}

// Error implements error.
func (e *MatchmakerError) Error() string {
	return "matchmaker error " + strconv.Itoa(int(e.Code)) + ": " + e.Message
}

// ServerError is a failure reported by the HTTP front door itself (not by the matchmaker): the
// WebSocket text frame, or chunked-HTTP line, "ERR <message>". The reference httpd sends it for
// a malformed request, an invalid game or version name, a request timeout or a NATS failure.
type ServerError struct {
	Message string
}

// Error implements error.
func (e *ServerError) Error() string { return "matchmaker front door error: " + e.Message }

// StatusError is an HTTP refusal of the request: the WebSocket upgrade or the chunked POST was
// answered with a status other than 101 / 200 (for example 404 for a wrong path, 403 for a
// forbidden origin, 429 when rate limited). It matches ErrConnect with errors.Is.
type StatusError struct {
	// StatusCode is the HTTP status code of the answer.
	StatusCode int
	// Body is the beginning of the answer's body (at most 512 bytes), for diagnostics.
	Body string
}

// Error implements error.
func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("matchmaker answered HTTP %d", e.StatusCode)
	}
	return fmt.Sprintf("matchmaker answered HTTP %d: %s", e.StatusCode, e.Body)
}

// Unwrap returns ErrConnect: an HTTP refusal means the stream could not be opened.
func (e *StatusError) Unwrap() error { return ErrConnect }

// snippet shortens untrusted text from the server for use in an error message.
func snippet(b []byte) string {
	const max = 120
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "…"
	}
	return strconv.Quote(string(b))
}
