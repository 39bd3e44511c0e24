package httpd

import (
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
)

// TestResendUnanswered: a request that gets no message at all (lost with a NATS node) is
// canceled and sent once more on a fresh reply subject after Config.ResendUnanswered; the
// player sees the second request's stream as if nothing happened. With resending off, the
// silence ends the stream at the idle timeout instead.
func TestResendUnanswered(t *testing.T) {
	ready := `{"SessionReady":{"token":"AAECAw==","ip":"1.2.3.4","port":32041,"cert_digest":"ab:cd"}}`
	want := []string{`"Acknowledged"`, `{"SessionRequestAccepted":"950dd2eaff09-S"}`, ready}
	cancels := func(t *testing.T) *nats.Subscription {
		sub, err := connect(t).SubscribeSync("matchmaker.cancel.deafonce.1")
		if err != nil {
			t.Fatal(err)
		}
		return sub
	}
	for _, route := range []string{routeWS, routeStream} {
		t.Run(route, func(t *testing.T) {
			f := startFake(t)
			s := newTestServer(t, Config{ResendUnanswered: 300 * time.Millisecond})
			sub := cancels(t)
			start := time.Now()
			switch route {
			case routeWS:
				res := wsSession(t, s.wsURL(), nil, `{"game":"deafonce","version":"1","client_ip":null}`, false)
				equalFrames(t, res.frames, want)
				if res.code != websocket.StatusNormalClosure {
					t.Fatalf("close %d %q", res.code, res.reason)
				}
			default:
				resp, body := do(t, "POST", s.ts.URL+"/matchmaker/request/deafonce/1", nil, "")
				if w := want[0] + "\n" + want[1] + "\n" + want[2] + "\n"; resp.StatusCode != 200 || body != w {
					t.Fatalf("%d body:\n%s\nwant:\n%s", resp.StatusCode, body, w)
				}
			}
			if took := time.Since(start); took < 300*time.Millisecond {
				t.Errorf("answered after %v, before the resend", took)
			}
			if streams, _ := f.count(); streams != 2 {
				t.Errorf("the matchmaker got %d requests, want 2", streams)
			}
			msg, err := sub.NextMsg(5 * time.Second)
			if err != nil {
				t.Fatalf("no cancel of the first request: %v", err)
			}
			if got := metricValue(t, s.metrics.resent.WithLabelValues(route)); got != 1 {
				t.Errorf("requests_resent_total{route=%s} = %v, want 1", route, got)
			}
			// The cancel names the first request's reply subject, not the one that was answered.
			if len(msg.Data) == 0 {
				t.Fatal("empty cancel")
			}
			if m2, err := sub.NextMsg(300 * time.Millisecond); err == nil {
				t.Errorf("a second cancel %q: the answered request was canceled", m2.Data)
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		f := startFake(t)
		s := newTestServer(t, Config{ResendUnanswered: -1, StreamIdleTimeout: 500 * time.Millisecond})
		resp, body := do(t, "POST", s.ts.URL+"/matchmaker/request/deafonce/1", nil, "")
		if resp.StatusCode != 503 || body != msgMMLost {
			t.Fatalf("%d %q, want 503 %q", resp.StatusCode, body, msgMMLost)
		}
		if streams, _ := f.count(); streams != 1 {
			t.Errorf("the matchmaker got %d requests, want 1", streams)
		}
	})
}
