package match

import (
	"errors"
	"net/http"

	"github.com/bevygap-go/bevygap/protocol"
)

// Errors of this package; every error it returns wraps one of them (check with errors.Is). The
// message of the wrapping error names the queue and, for a config, the field.
var (
	// ErrInvalidConfig is a queue configuration that cannot be used.
	ErrInvalidConfig = errors.New("invalid queue config")
	// ErrUnknownQueue is a queue name the configuration does not define.
	ErrUnknownQueue = errors.New("unknown queue")
	// ErrInvalidTicket is a ticket the queue cannot take: no players, an unknown property, a
	// property of the wrong type, a bad backfill slot count, a duplicate ticket id.
	ErrInvalidTicket = errors.New("invalid ticket")
	// ErrPartyTooLarge is a party with more players than the queue's largest match.
	ErrPartyTooLarge = errors.New("party too large")
	// ErrMissingProp is a player ticket without a property the queue requires.
	ErrMissingProp = errors.New("missing property")
	// ErrOutOfRange is a window property outside the queue's allowed range.
	ErrOutOfRange = errors.New("property out of range")
	// ErrBackfillOff is a backfill request for a queue that does not take backfill.
	ErrBackfillOff = errors.New("backfill not enabled")
	// ErrExpired is a ticket that found no match within the queue's wait limit.
	ErrExpired = errors.New("no match found")
)

// PlayError maps an error of this package to the wire error sent to a player or game server:
// 404 for an unknown queue, 408 for an expired ticket, 400 for a ticket the queue cannot take
// (including [protocol.ErrInvalidProps]), 500 with a generic message for anything else. It
// returns nil for nil.
func PlayError(err error) *protocol.PlayError {
	code := uint16(http.StatusInternalServerError)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnknownQueue):
		code = http.StatusNotFound
	case errors.Is(err, ErrExpired):
		code = http.StatusRequestTimeout
	case errors.Is(err, ErrInvalidTicket), errors.Is(err, ErrPartyTooLarge), errors.Is(err, ErrMissingProp),
		errors.Is(err, ErrOutOfRange), errors.Is(err, ErrBackfillOff), errors.Is(err, protocol.ErrInvalidProps):
		code = http.StatusBadRequest
	default:
		return &protocol.PlayError{Code: code, Message: "internal matchmaking error"}
	}
	return &protocol.PlayError{Code: code, Message: err.Error()}
}
