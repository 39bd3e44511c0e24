package gameserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/protocol"
)

// TestSharedSessionKeptUntilLastPlayerLeaves: players of one match-kind session (several
// client ids, one session id) claim it once and release it when the last of them leaves; a
// plain one-player session is written exactly as before.
func TestSharedSessionKeptUntilLastPlayerLeaves(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		for _, c := range []string{"1", "2", "3"} {
			w.nats.putSession(c, "match")
		}
		w.nats.putSession("9", "solo")
		a, _, _ := w.startAgent(t, w.config())
		step := func(f func(uint64), id uint64, want ...kvOp) {
			t.Helper()
			before := len(w.nats.activeOps())
			f(id)
			synctest.Wait()
			if got := w.nats.activeOps()[before:]; !slices.Equal(got, want) {
				t.Fatalf("after client %d: writes %v, want %v", id, got, want)
			}
		}
		step(a.ClientConnected, 1, kvOp{"PUT", "match", "1"})
		step(a.ClientConnected, 9, kvOp{"PUT", "solo", "9"})
		step(a.ClientConnected, 2)    // same session: already claimed
		step(a.ClientDisconnected, 1) // 2 is still there
		step(a.ClientConnected, 3)
		step(a.ClientDisconnected, 9, kvOp{"DEL", "solo", ""})
		step(a.ClientDisconnected, 2)
		step(a.ClientDisconnected, 3, kvOp{"DEL", "match", ""}) // the last one
		step(a.ClientConnected, 1, kvOp{"PUT", "match", "1"})   // back after everyone left
		step(a.ClientDisconnected, 1, kvOp{"DEL", "match", ""})
		if v, ok := w.nats.value(protocol.BucketActiveConnections, "match"); ok {
			t.Fatalf("active_connections[match] = %q after everyone left", v)
		}
	})
}

// TestSharedSessionAfterFailedConnectWrite: a player whose connect could not be written does
// not release the session when other players of it are still connected.
func TestSharedSessionAfterFailedConnectWrite(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		w.nats.putSession("1", "match")
		w.nats.putSession("2", "match")
		a, _, _ := w.startAgent(t, w.config())
		if _, err := a.AuthorizeClient(t.Context(), 2); err != nil {
			t.Fatal(err)
		}
		w.nats.mu.Lock()
		w.nats.fail = func(op, _, _ string) error {
			if op == "put" {
				return fmt.Errorf("put: %w", jetstream.ErrInvalidKey) // permanent: the event is dropped
			}
			return nil
		}
		w.nats.mu.Unlock()
		a.ClientConnected(2)
		synctest.Wait()
		w.nats.mu.Lock()
		w.nats.fail = nil
		w.nats.mu.Unlock()
		a.ClientConnected(1)
		a.ClientDisconnected(2)
		synctest.Wait()
		if got, want := w.nats.activeOps(), []kvOp{{"PUT", "match", "1"}}; !slices.Equal(got, want) {
			t.Fatalf("writes %v, want %v: client 2 released the session client 1 holds", got, want)
		}
		a.ClientDisconnected(1)
		synctest.Wait()
		if _, ok := w.nats.value(protocol.BucketActiveConnections, "match"); ok {
			t.Fatal("the session was not released by its last player")
		}
	})
}

// TestRequestBackfill sends backfill requests to a fake matchmaker on the embedded NATS.
func TestRequestBackfill(t *testing.T) {
	t.Parallel()
	nc := connect(t)
	cfg := fastConfig(testArbitrium("http://context.invalid/ctx", "http://delete.invalid/stop"))
	cfg.Game, cfg.Version = "bfgame", "v1"
	log, _ := testLogger(t)
	a, err := New(cfg, nc, log)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan protocol.BackfillRequest, 4)
	sub, err := nc.Subscribe("matchmaker.backfill.bfgame.v1", func(m *nats.Msg) {
		var req protocol.BackfillRequest
		_ = json.Unmarshal(m.Data, &req)
		got <- req
		reply := protocol.BackfillReply{Ticket: "bf-1"}
		if req.Queue != "room" {
			reply = protocol.BackfillReply{Error: &protocol.PlayError{Code: 404, Message: "unknown queue"}}
		}
		data, _ := json.Marshal(reply)
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	ticket, err := a.RequestBackfill(t.Context(), "room", 2, protocol.Props{"mode": protocol.Str("ctf")})
	if err != nil || ticket != "bf-1" {
		t.Fatalf("RequestBackfill = %q, %v", ticket, err)
	}
	want := protocol.BackfillRequest{Queue: "room", RequestID: "9170f5211e17", PublicIP: "127.0.0.1", Slots: 2,
		Props: protocol.Props{"mode": protocol.Str("ctf")}}
	if req := <-got; req.Queue != want.Queue || req.RequestID != want.RequestID || req.PublicIP != want.PublicIP ||
		req.Slots != want.Slots || req.Props["mode"] != want.Props["mode"] {
		t.Errorf("request %+v, want %+v", req, want)
	}

	var pe *protocol.PlayError
	if _, err := a.RequestBackfill(t.Context(), "nope", 1, nil); !errors.As(err, &pe) || pe.Code != 404 {
		t.Errorf("refused: %v", err)
	}
	for _, c := range []struct {
		queue string
		slots int
		props protocol.Props
	}{{"bad queue!", 1, nil}, {"room", 0, nil}, {"room", 1, protocol.Props{"bad key": protocol.Num(1)}}} {
		if _, err := a.RequestBackfill(t.Context(), c.queue, c.slots, c.props); !errors.As(err, &pe) || pe.Code != http.StatusBadRequest {
			t.Errorf("RequestBackfill(%q, %d, %v) = %v, want a 400 PlayError", c.queue, c.slots, c.props, err)
		}
	}
	if len(got) != 1 {
		t.Errorf("%d requests sent for refused calls, want only the 404 one", len(got))
	}

	noGame := cfg
	noGame.Game, noGame.Version = "", ""
	b, err := New(noGame, nc, log)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.RequestBackfill(t.Context(), "room", 1, nil); !errors.Is(err, ErrConfig) {
		t.Errorf("without Game: %v, want ErrConfig", err)
	}
	other := cfg
	other.Game = "nobodyhome"
	c, err := New(other, nc, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), defaultBackfillTimeout)
	defer cancel()
	if _, err := c.RequestBackfill(ctx, "room", 1, nil); !errors.Is(err, ErrNATSUnavailable) {
		t.Errorf("no matchmaker: %v, want ErrNATSUnavailable", err)
	}
	bad := cfg
	bad.Game = "bad game"
	if _, err := New(bad, nc, log); !errors.Is(err, ErrConfig) {
		t.Errorf("invalid Game: %v, want ErrConfig", err)
	}
}
