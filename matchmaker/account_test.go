package matchmaker

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/protocol"
)

// TestTwoEdgegapAccountsOnOneNATS: two stacks with different Edgegap endpoints on one NATS.
// Sharing the delete queue (same bucket prefix) is refused at start, naming --bucket-prefix:
// otherwise each matchmaker would take the other's deletions, get 404 from its own Edgegap and
// drop them, leaving the sessions live. With distinct prefixes both run, and each one's sessions
// are deleted on its own Edgegap.
func TestTwoEdgegapAccountsOnOneNATS(t *testing.T) {
	t.Parallel()
	srv := newNATS(t)
	a := newHarness(t, harnessOpts{nats: srv, configure: func(c *Config) { c.Buckets.Prefix = "shared_" }})

	// The other stack, same buckets and queue, another simulator (another account).
	b := newHarness(t, harnessOpts{nats: srv, noMatchmaker: true, configure: func(c *Config) { c.Buckets.Prefix = "shared_" }})
	mm, err := New(b.cfg, Deps{NATS: b.nc, Edgegap: b.newAPI(), Logger: b.log})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = mm.Start(ctx)
	if err == nil {
		_ = mm.Shutdown(ctx)
		t.Fatal("a matchmaker of another Edgegap account started on a shared delete queue")
	}
	if !errors.Is(err, bus.ErrDeleteQueueAccount) || !strings.Contains(err.Error(), "--bucket-prefix") {
		t.Fatalf("start error %v, want ErrDeleteQueueAccount naming --bucket-prefix", err)
	}
	if strings.Contains(err.Error(), testAPIKey) {
		t.Fatal("the error shows the API key")
	}

	// The fix: a bucket prefix of its own. Both stacks serve, and delete, their own sessions.
	c := newHarness(t, harnessOpts{nats: srv})
	for _, h := range []*harness{a, c} {
		_, fbs := h.stream(t, h.cfg.AppName, "v1", `{"client_ip":"81.2.69.160"}`)
		last := fbs[len(fbs)-1]
		if last.Kind != protocol.FeedbackSessionReady {
			t.Fatalf("%s: %v", h.cfg.AppName, fbs)
		}
		sid := h.claim(t, strconv.FormatUint(h.clientIDOf(t, last.Ready.Token), 10))
		h.disconnect(t, sid)
	}
	a.noLeaks(t, 5*time.Second)
	c.noLeaks(t, 5*time.Second)
}
