package gameserver

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// The idle self-destruct runs on fake time (testing/synctest): every duration below is exact.

func TestIdleSelfDestruct(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		w.nats.putSession("8", "s8")
		var badAuth atomic.Int32
		stopped := make(chan struct{})
		w.delAPI.respond = func(n int, rw http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodDelete || r.URL.Path != "/v1/self/stop/9f511e17/660" {
				http.Error(rw, "wrong call", http.StatusBadRequest)
				return
			}
			if r.Header.Get("Authorization") != testDeleteToken {
				badAuth.Add(1)
			}
			if n == 1 {
				http.Error(rw, `{"message":"busy"}`, http.StatusServiceUnavailable) // retried
				return
			}
			_, _ = rw.Write([]byte(`{"message":"Deployment 9170f5211e17 will be deleted"}`))
			if n == 2 {
				close(stopped)
			}
		}
		cfg := w.config()
		cfg.IdleTimeout = 400 * time.Millisecond
		a, lb := w.newAgent(t, cfg)

		// A player connects right away and stays for twice the idle timeout: no self-stop.
		a.ClientConnected(8)
		ctx, cancel := context.WithCancel(context.Background())
		runErr := make(chan error, 1)
		go func() { runErr <- a.Run(ctx) }()
		defer func() {
			cancel()
			<-runErr
		}()
		time.Sleep(2 * cfg.IdleTimeout)
		if n := w.delAPI.count(); n != 0 {
			t.Fatalf("self-stop called %d times while a client was connected", n)
		}

		a.ClientDisconnected(8)
		left := time.Now()
		select {
		case <-stopped:
		case <-time.After(time.Minute):
			t.Fatalf("no self-stop; delete URL called %d times", w.delAPI.count())
		}
		if _, at := w.delAPI.request(0); at.Sub(left) != cfg.IdleTimeout {
			t.Errorf("first delete call %v after the last client left, want the idle timeout %v", at.Sub(left), cfg.IdleTimeout)
		}
		time.Sleep(2 * cfg.IdleTimeout) // longer than the idle timeout: no second deletion
		synctest.Wait()
		if n := w.delAPI.count(); n != 2 {
			t.Fatalf("delete URL called %d times, want 2 (one 503 retried, then one success)", n)
		}
		if badAuth.Load() != 0 {
			t.Fatal("delete URL called without the delete token")
		}
		if strings.Contains(lb.String(), testDeleteToken) {
			t.Fatal("delete token in the log")
		}
	})
}

func TestIdleSelfDestructWhenNobodyEverComes(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		w.delAPI.respond = func(_ int, rw http.ResponseWriter, _ *http.Request) {
			rw.WriteHeader(http.StatusGone) // already terminated counts as done
		}
		cfg := w.config()
		cfg.IdleTimeout = 200 * time.Millisecond
		start := time.Now()
		w.startAgent(t, cfg)
		time.Sleep(5 * cfg.IdleTimeout)
		synctest.Wait()
		if n := w.delAPI.count(); n != 1 {
			t.Fatalf("delete URL called %d times, want once", n)
		}
		if _, at := w.delAPI.request(0); at.Sub(start) != cfg.IdleTimeout {
			t.Errorf("delete call %v after Run started, want the idle timeout %v", at.Sub(start), cfg.IdleTimeout)
		}
	})
}

// An authorized player is on the way in: the idle timer starts again.
func TestIdleTimerRestartsOnAuthorization(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		w.nats.putSession("8", "s8")
		cfg := w.config()
		cfg.IdleTimeout = 200 * time.Millisecond
		a, _, _ := w.startAgent(t, cfg)
		time.Sleep(150 * time.Millisecond)
		if _, err := a.AuthorizeClient(t.Context(), 8); err != nil {
			t.Fatal(err)
		}
		authorized := time.Now()
		time.Sleep(5 * cfg.IdleTimeout)
		synctest.Wait()
		if n := w.delAPI.count(); n != 1 {
			t.Fatalf("delete URL called %d times, want once", n)
		}
		if _, at := w.delAPI.request(0); at.Sub(authorized) != cfg.IdleTimeout {
			t.Errorf("delete call %v after the authorization, want the idle timeout %v", at.Sub(authorized), cfg.IdleTimeout)
		}
	})
}

// A player arriving while the self-stop is being retried cancels it; once the server is
// empty again for the idle timeout, it deletes itself.
func TestSelfStopCancelledWhenAClientArrives(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		w.nats.putSession("8", "s8")
		var accept atomic.Bool
		w.delAPI.respond = func(_ int, rw http.ResponseWriter, _ *http.Request) {
			if !accept.Load() {
				http.Error(rw, `{"message":"busy"}`, http.StatusServiceUnavailable)
				return
			}
			_, _ = rw.Write([]byte(`{"message":"Deployment 9170f5211e17 will be deleted"}`))
		}
		cfg := w.config()
		cfg.IdleTimeout = 200 * time.Millisecond
		a, lb, _ := w.startAgent(t, cfg)
		time.Sleep(cfg.IdleTimeout)
		synctest.Wait()
		if w.delAPI.count() == 0 {
			t.Fatal("no self-stop attempt after the idle timeout")
		}
		a.ClientConnected(8)
		time.Sleep(time.Second) // the attempt under way notices the client
		synctest.Wait()
		calls := w.delAPI.count()
		time.Sleep(10 * cfg.IdleTimeout)
		synctest.Wait()
		if n := w.delAPI.count(); n != calls {
			t.Fatalf("delete URL called %d more times while a client was connected", n-calls)
		}
		if !strings.Contains(lb.String(), "self-stop cancelled: a client arrived") {
			t.Error("log does not say the self-stop was cancelled")
		}

		accept.Store(true)
		a.ClientDisconnected(8)
		left := time.Now()
		time.Sleep(5 * cfg.IdleTimeout)
		synctest.Wait()
		if n := w.delAPI.count(); n != calls+1 {
			t.Fatalf("delete URL called %d times after the client left, want once", n-calls)
		}
		if _, at := w.delAPI.request(calls); at.Sub(left) != cfg.IdleTimeout {
			t.Errorf("delete call %v after the client left, want the idle timeout %v", at.Sub(left), cfg.IdleTimeout)
		}
	})
}
