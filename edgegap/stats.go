package edgegap

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"
)

// Endpoint names one Edgegap API call, for metrics, errors and the simulator's call counts.
type Endpoint string

// The Edgegap calls the client makes (and the simulator serves).
const (
	EndpointAppGet        Endpoint = "app_get"         // GET /v1/app/{app}
	EndpointAppVersionGet Endpoint = "app_version_get" // GET /v1/app/{app}/version/{version}
	EndpointSessionCreate Endpoint = "session_create"  // POST /v1/session
	EndpointSessionGet    Endpoint = "session_get"     // GET /v1/session/{id}
	EndpointSessionList   Endpoint = "session_list"    // GET /v1/sessions
	EndpointSessionDelete Endpoint = "session_delete"  // DELETE /v1/session/{id}
	EndpointContextGet    Endpoint = "context_get"     // GET /v1/context/{request_id}/{security_number}
	EndpointSelfStop      Endpoint = "self_stop"       // DELETE /v1/self/stop/{request_id}/{access_point_id}
)

// Endpoints lists every Endpoint, in a stable order.
func Endpoints() []Endpoint {
	return []Endpoint{EndpointAppGet, EndpointAppVersionGet, EndpointSessionCreate,
		EndpointSessionGet, EndpointSessionList, EndpointSessionDelete, EndpointContextGet,
		EndpointSelfStop}
}

// Outcome classifies the result of one HTTP attempt.
type Outcome string

// Outcomes of an attempt.
const (
	OutcomeOK           Outcome = "ok"
	OutcomeNotFound     Outcome = "not_found" // 404 or 410
	OutcomeUnauthorized Outcome = "unauthorized"
	OutcomeConflict     Outcome = "conflict"
	OutcomeRateLimited  Outcome = "rate_limited"
	OutcomeClientError  Outcome = "client_error" // any other 4xx
	OutcomeServerError  Outcome = "server_error"
	OutcomeNetworkError Outcome = "network_error" // transport failure or per-attempt timeout
	OutcomeCanceled     Outcome = "canceled"      // the caller's context ended
	OutcomeDecodeError  Outcome = "decode_error"  // 2xx with a body that does not decode
)

// outcomeOf classifies an HTTP status (when err is nil) or a transport error.
func outcomeOf(ctx context.Context, status int, err error) Outcome {
	var ae *APIError
	if errors.As(err, &ae) {
		status, err = ae.StatusCode, nil
	}
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, context.Canceled) {
			return OutcomeCanceled
		}
		return OutcomeNetworkError
	}
	switch {
	case status >= 200 && status < 300:
		return OutcomeOK
	case status == http.StatusNotFound || status == http.StatusGone:
		return OutcomeNotFound
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return OutcomeUnauthorized
	case status == http.StatusConflict:
		return OutcomeConflict
	case status == http.StatusTooManyRequests:
		return OutcomeRateLimited
	case status >= 500:
		return OutcomeServerError
	default:
		return OutcomeClientError
	}
}

// CallKey identifies one counter of CallCounts.
type CallKey struct {
	Endpoint Endpoint
	Outcome  Outcome
}

// CallCounts counts HTTP attempts per endpoint and outcome. A retried call counts once per
// attempt, because that is what Edgegap sees and rate-limits.
type CallCounts map[CallKey]uint64

// Endpoint returns the number of attempts on e, whatever their outcome.
func (cc CallCounts) Endpoint(e Endpoint) uint64 {
	var n uint64
	for k, v := range cc {
		if k.Endpoint == e {
			n += v
		}
	}
	return n
}

// Total returns the number of attempts on all endpoints.
func (cc CallCounts) Total() uint64 {
	var n uint64
	for _, v := range cc {
		n += v
	}
	return n
}

// CallEvent describes one finished HTTP attempt; it is passed to the WithObserver hook.
type CallEvent struct {
	Endpoint Endpoint
	Method   string
	// StatusCode is the HTTP status, or 0 when no response arrived.
	StatusCode int
	Outcome    Outcome
	// Attempt is 1 for the first try of a call, 2 for its first retry, and so on.
	Attempt  int
	Duration time.Duration
	// Err is the error of this attempt (nil on success).
	Err error
	// WillRetry is true when the client is going to retry the call.
	WillRetry bool
}

// callCounter is a mutex-protected CallCounts.
type callCounter struct {
	mu     sync.Mutex
	counts CallCounts
}

func (c *callCounter) add(e Endpoint, o Outcome) {
	c.mu.Lock()
	if c.counts == nil {
		c.counts = CallCounts{}
	}
	c.counts[CallKey{e, o}]++
	c.mu.Unlock()
}

func (c *callCounter) snapshot() CallCounts {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(CallCounts, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}
