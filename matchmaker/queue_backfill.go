package matchmaker

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/protocol"
)

// BackfillQueueGroup is the base name of the queue group of the backfill subscription; the
// group used is per game and version ("matchmaker_backfill_queue.<app>.<version>").
const BackfillQueueGroup = "matchmaker_backfill_queue"

// backfillSubject is matchmaker.backfill.<AppName>.<AppVersion>.
func (m *Matchmaker) backfillSubject() string {
	return protocol.SubjectMatchmakerBackfillPrefix + "." + m.cfg.AppName + "." + m.cfg.AppVersion
}

// subscribeBackfill answers game servers' backfill requests (one matchmaker per request).
func (e *queueEngine) subscribeBackfill() error {
	m := e.m
	subject := m.backfillSubject()
	sub, err := m.nc.QueueSubscribe(subject, BackfillQueueGroup+"."+m.cfg.AppName+"."+m.cfg.AppVersion, e.onBackfill)
	if err != nil {
		return fmt.Errorf("matchmaker: subscribe %s: %w", subject, err)
	}
	m.addSub(sub)
	return nil
}

// onBackfill handles one protocol.BackfillRequest: a ticket asking the queue for up to Slots
// players for the deployment RequestID. When it is matched, the players get Seat sessions on
// that deployment. The reply names the ticket, or the error.
func (e *queueEngine) onBackfill(msg *nats.Msg) {
	if msg.Reply == "" {
		return
	}
	reply := func(r protocol.BackfillReply) {
		b, err := protocol.Marshal(r)
		if err == nil {
			err = msg.Respond(b)
		}
		if err != nil {
			e.m.log.Warn("could not answer a backfill request", logkey.Err, err)
		}
	}
	fail := func(code uint16, text string) {
		reply(protocol.BackfillReply{Error: &protocol.PlayError{Code: code, Message: text}})
	}
	var req protocol.BackfillRequest
	if err := json.Unmarshal(msg.Data, &req); err != nil {
		fail(http.StatusBadRequest, "error decoding backfill request: "+err.Error())
		return
	}
	q, err := e.cfg.Queue(req.Queue)
	if err != nil {
		fail(http.StatusNotFound, fmt.Sprintf("no queue named %q", req.Queue))
		return
	}
	if req.RequestID == "" {
		fail(http.StatusBadRequest, "backfill request without request_id")
		return
	}
	if err := req.Props.Validate(); err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	if err := q.CheckBackfill(req.Props, req.Slots); err != nil {
		pe := match.PlayError(err)
		fail(pe.Code, pe.Message)
		return
	}
	rec := ticketRecord{Props: req.Props, Created: time.Now().UTC(), State: ticketWaiting,
		Backfill: &ticketBackfill{RequestID: req.RequestID, PublicIP: req.PublicIP, Slots: req.Slots}}
	key, rerr := e.put(e.m.reqCtx, q.Name, rec)
	if rerr != nil {
		fail(rerr.Code, rerr.Message)
		return
	}
	e.m.log.Info("backfill ticket queued", "queue", q.Name, "ticket", key, "deployment", req.RequestID, "slots", req.Slots)
	reply(protocol.BackfillReply{Ticket: key})
}
