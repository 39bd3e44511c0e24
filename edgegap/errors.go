package edgegap

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Sentinel errors for the classes of Edgegap failures a caller branches on. An *APIError
// matches them with errors.Is according to its HTTP status code:
//
//	errors.Is(err, edgegap.ErrNotFound)     // 404 or 410: the thing is gone, treat a delete as done
//	errors.Is(err, edgegap.ErrUnauthorized) // 401 or 403: bad API key / token
//	errors.Is(err, edgegap.ErrConflict)     // 409
//	errors.Is(err, edgegap.ErrRateLimited)  // 429 (see APIError.RetryAfter)
//	errors.Is(err, edgegap.ErrServer)       // 5xx
//	errors.Is(err, edgegap.ErrBadRequest)   // 400 or 422
var (
	ErrNotFound     = errors.New("edgegap: not found")
	ErrGone         = errors.New("edgegap: gone")
	ErrUnauthorized = errors.New("edgegap: unauthorized")
	ErrConflict     = errors.New("edgegap: conflict")
	ErrRateLimited  = errors.New("edgegap: rate limited")
	ErrServer       = errors.New("edgegap: server error")
	ErrBadRequest   = errors.New("edgegap: bad request")
)

// ErrNoSpareCall is returned by the calls made only when the client's rate limiter allows
// them at once (Client.GetSessionNow) when it does not; Edgegap was not called.
var ErrNoSpareCall = errors.New("edgegap: no call to spare under the client's rate limit")

// APIError is an error answer (HTTP 4xx/5xx) from the Edgegap API. Branch on StatusCode (or use
// errors.Is with the sentinels above), never on the body: Edgegap uses the same
// {"message": "..."} shape for every status.
type APIError struct {
	// Endpoint is the logical call that failed.
	Endpoint Endpoint
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is Edgegap's "message" field, or a short excerpt of a non-JSON body.
	Message string
	// RetryAfter is the delay asked for by a Retry-After header (429/503), zero if none.
	RetryAfter time.Duration
}

// Error describes the failure without any credential.
func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = http.StatusText(e.StatusCode)
	}
	return fmt.Sprintf("edgegap %s: HTTP %d: %s", e.Endpoint, e.StatusCode, msg)
}

// Is matches the sentinel errors by status code. ErrNotFound matches both 404 and 410 (a
// deleted session and a terminated instance are both "gone" for a caller); ErrGone only 410.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound || e.StatusCode == http.StatusGone
	case ErrGone:
		return e.StatusCode == http.StatusGone
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden
	case ErrConflict:
		return e.StatusCode == http.StatusConflict
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	case ErrServer:
		return e.StatusCode >= 500
	case ErrBadRequest:
		return e.StatusCode == http.StatusBadRequest || e.StatusCode == http.StatusUnprocessableEntity
	}
	return false
}

// StatusCode returns the HTTP status of an *APIError in err's chain, or 0.
func StatusCode(err error) int {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	return 0
}
