package matchmaker

import (
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
)

func TestHookRouter(t *testing.T) {
	now := time.Unix(1000, 0)
	r := newHookRouter(func() time.Time { return now })
	// A webhook that arrives before its waiter registers is kept and delivered on register.
	if r.deliver(edgegap.SessionWebhook{SessionID: "a-S", Status: "Ready", Ready: true}) {
		t.Fatal("owned without a waiter")
	}
	ch := r.register("a-S")
	select {
	case ev := <-ch:
		if !ev.ready {
			t.Fatalf("event %+v", ev)
		}
	default:
		t.Fatal("cached webhook not delivered")
	}
	// Live delivery, error detection.
	if !r.deliver(edgegap.SessionWebhook{SessionID: "a-S", Status: "Error"}) {
		t.Fatal("not routed to its waiter")
	}
	if ev := <-ch; !ev.failed {
		t.Fatalf("event %+v", ev)
	}
	r.unregister("a-S")
	// Stale cached webhooks are dropped.
	r.deliver(edgegap.SessionWebhook{SessionID: "b-S", Status: "Ready", Ready: true})
	now = now.Add(3 * time.Minute)
	select {
	case ev := <-r.register("b-S"):
		t.Fatalf("stale event delivered: %+v", ev)
	default:
	}
	// Health flips on a poll-found session and back on an owned webhook.
	r.markPollFoundReady()
	if r.isHealthy() {
		t.Fatal("still healthy")
	}
	r.deliver(edgegap.SessionWebhook{SessionID: "b-S", Status: "Ready", Ready: true})
	if !r.isHealthy() {
		t.Fatal("not healthy after an owned webhook")
	}
	// The cache is bounded.
	r.max = 3
	for _, id := range []string{"c", "d", "e", "f", "g"} {
		r.deliver(edgegap.SessionWebhook{SessionID: id, Status: "Linked"})
	}
	if len(r.recent) > 3 || r.order.Len() != len(r.recent) {
		t.Fatalf("cache size %d / %d", len(r.recent), r.order.Len())
	}
}
