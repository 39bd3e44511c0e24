package gameserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/protocol"
)

// defaultBackfillTimeout bounds a backfill request when ctx has no earlier deadline.
const defaultBackfillTimeout = 5 * time.Second

// requester is what RequestBackfill needs of the NATS connection (a *nats.Conn has it).
type requester interface {
	RequestWithContext(ctx context.Context, subject string, data []byte) (*nats.Msg, error)
}

// RequestBackfill asks the matchmaker for up to slots more players from match queue queue for
// this deployment (after players left a match, say). props, if given, are matched like a
// player ticket's (e.g. the match's "mode" and "skill"); they may leave out properties the
// queue has. It sends a [protocol.BackfillRequest] on matchmaker.backfill.<game>.<version>
// (Config.Game and Config.Version) with this deployment's request id and public IP, and
// returns the backfill ticket's id. The players the matchmaker finds get sessions on this
// deployment and connect like any player (AuthorizeClient, ClientConnected); a ticket that
// finds nobody within the queue's wait limit just ends — ask again if seats are still free.
//
// A refusal by the matchmaker (unknown queue, a queue without backfill, bad props or slots)
// is returned as a *[protocol.PlayError] (errors.As); so is a request this method can tell is
// bad before sending it (code 400). No matchmaker answering within ctx (5 s if ctx has no
// deadline) is an error matching [ErrNATSUnavailable]; Config.Game/Version not set is
// [ErrConfig].
func (a *Agent) RequestBackfill(ctx context.Context, queue string, slots int, props protocol.Props) (string, error) {
	if a.cfg.Game == "" {
		return "", fmt.Errorf("%w: RequestBackfill needs Config.Game and Config.Version", ErrConfig)
	}
	bad := func(msg string) error { return &protocol.PlayError{Code: http.StatusBadRequest, Message: msg} }
	switch {
	case !protocol.ValidQueueName(queue):
		return "", bad("invalid queue name")
	case slots < 1:
		return "", bad("slots must be at least 1")
	}
	if err := props.Validate(); err != nil {
		return "", bad(err.Error())
	}
	arb := a.cfg.Arbitrium
	if arb.RequestID == "" || !arb.PublicIP.IsValid() {
		return "", fmt.Errorf("%w: RequestBackfill needs Arbitrium.RequestID and Arbitrium.PublicIP", ErrConfig)
	}
	rq, ok := a.nc.(requester)
	if !ok {
		return "", fmt.Errorf("%w: the NATS connection cannot make requests", ErrConfig)
	}
	body, err := json.Marshal(protocol.BackfillRequest{Queue: queue, RequestID: arb.RequestID,
		PublicIP: arb.PublicIP.String(), Slots: slots, Props: props})
	if err != nil {
		return "", bad(err.Error())
	}
	subject := protocol.SubjectMatchmakerBackfillPrefix + "." + a.cfg.Game + "." + a.cfg.Version
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultBackfillTimeout)
		defer cancel()
	}
	msg, err := rq.RequestWithContext(ctx, subject, body)
	if err != nil {
		if errors.Is(err, nats.ErrNoResponders) {
			err = fmt.Errorf("no matchmaker listens on %s: %w", subject, err)
		}
		a.log.WarnContext(ctx, "backfill request failed", "queue", queue, "slots", slots, logkey.Err, err)
		return "", fmt.Errorf("%w: backfill request: %w", ErrNATSUnavailable, err)
	}
	var reply protocol.BackfillReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return "", fmt.Errorf("gameserver: backfill reply is not a BackfillReply: %w", err)
	}
	if reply.Error != nil {
		a.log.WarnContext(ctx, "backfill refused", "queue", queue, "slots", slots, logkey.Err, reply.Error)
		return "", reply.Error
	}
	if reply.Ticket == "" {
		return "", errors.New("gameserver: backfill reply has neither a ticket nor an error")
	}
	a.log.InfoContext(ctx, "backfill requested", "queue", queue, "slots", slots, "ticket", reply.Ticket)
	return reply.Ticket, nil
}
