package edgegap

import (
	"context"
	"errors"
	"net/http"
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

// endpoints lists every Endpoint, in a stable order (the client keeps a rate limiter for each).
func endpoints() []Endpoint {
	return []Endpoint{EndpointAppGet, EndpointAppVersionGet, EndpointSessionCreate,
		EndpointSessionGet, EndpointSessionList, EndpointSessionDelete, EndpointContextGet,
		EndpointSelfStop, EndpointSessionUsersDelete}
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

// CallEvent describes one finished HTTP attempt; it is passed to the [WithObserver] hook, the one
// place where a Client reports its calls (to Prometheus, to a test). A retried call reports
// once per attempt, because that is what Edgegap sees and rate-limits.
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

// outcomeOf classifies an attempt by its HTTP status (an *APIError's, or status when err is
// nil) or its transport error.
func outcomeOf(ctx context.Context, status int, err error) Outcome {
	if errors.Is(err, errDecode) {
		return OutcomeDecodeError
	}
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
