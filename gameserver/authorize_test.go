package gameserver

import (
	"errors"
	"testing"
	"time"
)

// TestAuthorizeClientWaitsForReconnect: a connection request that comes while NATS reconnects
// is answered once it is back (within AuthorizeAttempts × AuthorizeTimeout), not refused at
// once (soak finding F1a: a NATS node kill made game servers deny granted players).
func TestAuthorizeClientWaitsForReconnect(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		w.nats.putSession("42", "s-42")
		w.nats.setConnected(false)
		a, _ := w.newAgent(t, w.config())
		go func() {
			time.Sleep(180 * time.Millisecond)
			w.nats.setConnected(true)
		}()
		start := time.Now()
		sid, err := a.AuthorizeClient(t.Context(), 42)
		if err != nil || sid != "s-42" {
			t.Fatalf("AuthorizeClient = %q, %v; want s-42 after the reconnect", sid, err)
		}
		if d := time.Since(start); d != 200*time.Millisecond {
			t.Errorf("answered after %v, want 200ms (the first poll after NATS came back at 180ms)", d)
		}
	})
}

// TestAuthorizeClientRereadsMissingKey: a key a lagging replica does not have yet is read
// again for UnknownClientGrace (soak finding F1b); a client that stays unknown is refused when
// the grace ends; a bad value is refused at once.
func TestAuthorizeClientRereadsMissingKey(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		cfg := w.config() // UnknownClientGrace 200 ms
		a, _ := w.newAgent(t, cfg)
		go func() {
			time.Sleep(120 * time.Millisecond)
			w.nats.putSession("42", "s-42")
		}()
		start := time.Now()
		if sid, err := a.AuthorizeClient(t.Context(), 42); err != nil || sid != "s-42" {
			t.Fatalf("AuthorizeClient = %q, %v; want s-42 once the key shows", sid, err)
		}
		// Reads at 0, 50 and 150 ms (backoff 50, 100): the key came at 120 ms.
		if d := time.Since(start); d != 150*time.Millisecond {
			t.Errorf("answered after %v, want 150ms", d)
		}

		start = time.Now()
		if _, err := a.AuthorizeClient(t.Context(), 7); !errors.Is(err, ErrUnknownClient) {
			t.Fatalf("unknown client: %v, want ErrUnknownClient", err)
		}
		if d := time.Since(start); d != cfg.UnknownClientGrace {
			t.Errorf("unknown client refused after %v, want the grace %v", d, cfg.UnknownClientGrace)
		}

		w.nats.putSession("8", "")
		start = time.Now()
		if _, err := a.AuthorizeClient(t.Context(), 8); !errors.Is(err, ErrUnknownClient) || time.Since(start) != 0 {
			t.Errorf("empty value: %v after %v, want ErrUnknownClient at once", err, time.Since(start))
		}

		noGrace := cfg
		noGrace.UnknownClientGrace = -1
		b, _ := w.newAgent(t, noGrace)
		start = time.Now()
		if _, err := b.AuthorizeClient(t.Context(), 9); !errors.Is(err, ErrUnknownClient) || time.Since(start) != 0 {
			t.Errorf("negative grace: %v after %v, want ErrUnknownClient at once", err, time.Since(start))
		}
	})
}
