package bus

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/internal/eventually"
)

// replyRecorder records the reply subjects of requests an observer connection sees.
type replyRecorder struct {
	mu      sync.Mutex
	replies map[string][]string // subject -> reply subjects
}

func (r *replyRecorder) record(m *nats.Msg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.replies[m.Subject] = append(r.replies[m.Subject], m.Reply)
}

func (r *replyRecorder) snapshot() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string, len(r.replies))
	for k, v := range r.replies {
		out[k] = append([]string(nil), v...)
	}
	return out
}

// TestInboxPrefixUsedEverywhere exercises every way the services make NATS reply subjects —
// core request/reply, the JetStream API (bucket and stream create/lookup, direct get), KV puts
// (publish acks), KV watches (ordered push consumer), the pull consumer's Consume and Fetch,
// and jetstream's own ordered consumer — on a connection with a custom inbox prefix, and
// checks that every reply subject it put on a request, and every subscription it holds,
// starts with that prefix.
func TestInboxPrefixUsedEverywhere(t *testing.T) {
	const prefix = "_INBOX_bustest"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The observer sees the requests (and their reply subjects) that the tested connection sends.
	obs, err := Connect(ctx, testConfig("inbox-observer"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Close()
	rec := &replyRecorder{replies: map[string][]string{}}
	var recSubs []*nats.Subscription
	for _, subj := range []string{"$JS.API.>", "$KV.inbx_sessions_ly2eg.>", "inbx.echo", "inbx_edgegap_delete_session_q.*"} {
		s, err := obs.Subscribe(subj, rec.record)
		if err != nil {
			t.Fatal(err)
		}
		recSubs = append(recSubs, s)
	}
	if _, err := obs.Subscribe("inbx.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) }); err != nil {
		t.Fatal(err)
	}
	if err := obs.Flush(); err != nil {
		t.Fatal(err)
	}

	cfg := testConfig("inbox-prefixed")
	cfg.InboxPrefix = prefix
	nc, err := Connect(ctx, cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	if in := nc.NewInbox(); !strings.HasPrefix(in, prefix+".") {
		t.Fatalf("NewInbox() = %q", in)
	}
	// Core request/reply (the mux used by httpd's gensession request and /readyz ping).
	if m, err := nc.RequestWithContext(ctx, "inbx.echo", []byte("hi")); err != nil || string(m.Data) != "hi" {
		t.Fatalf("request: %v", err)
	}
	// JetStream: bucket/stream create or lookup, KV put, get, watch.
	b, err := Open(ctx, nc, BucketOptions{Prefix: "inbx_", Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	w, err := b.SessionsLy2Eg.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	if _, err := b.SessionsLy2Eg.Put(ctx, "7", []byte("S7")); err != nil {
		t.Fatal(err)
	}
	if e, err := b.SessionsLy2Eg.Get(ctx, "7"); err != nil || string(e.Value()) != "S7" {
		t.Fatalf("get: %v", err)
	}
	waitWatch(t, w, "7")
	// Delete queue: publish (ack), pull consumer Consume (the matchmaker's delete worker) and Fetch.
	sid := fmt.Sprintf("inbx%d-S", time.Now().UnixNano()) // unique: the queue dedups by id
	if err := b.EnqueueSessionDelete(ctx, sid, ""); err != nil {
		t.Fatal(err)
	}
	cons, err := b.DeleteConsumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 4)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		_ = m.Ack()
		got <- string(m.Data())
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	select {
	case s := <-got:
		if s != sid {
			t.Fatalf("consumed %q", s)
		}
	case <-ctx.Done():
		t.Fatal("delete queue message not consumed")
	}
	// jetstream's own ordered consumer, on the KV stream.
	oc, err := b.JS.OrderedConsumer(ctx, "KV_inbx_sessions_ly2eg", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	occ, err := oc.Consume(func(jetstream.Msg) {})
	if err != nil {
		t.Fatal(err)
	}
	defer occ.Stop()

	// Everything is subscribed now: every subscription of the connection carries the prefix.
	// (jetstream's ordered consumer subscribes from its own goroutine: wait for it.)
	var subs []string
	eventually.True(t, 5*time.Second, func() bool {
		if err := nc.Flush(); err != nil {
			t.Fatal(err)
		}
		subs = connSubscriptions(t, "inbox-prefixed")
		return len(subs) >= 4 // request mux, KV watch, pull consume, ordered consume
	}, "at least 4 subscriptions on the prefixed connection")
	for _, s := range subs {
		if !strings.HasPrefix(s, prefix+".") {
			t.Errorf("subscription %q does not use the inbox prefix", s)
		}
	}
	cc.Stop()
	// Fetch makes its own short-lived inbox.
	pull, err := b.DeleteStream.Consumer(ctx, b.Names.DeleteConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pull.Fetch(1, jetstream.FetchMaxWait(200*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	if err := obs.Flush(); err != nil {
		t.Fatal(err)
	}
	// The flush round trip has brought every request to the observer; wait until its callbacks
	// have taken them all.
	eventually.True(t, 5*time.Second, func() bool {
		for _, s := range recSubs {
			if n, _, err := s.Pending(); err != nil || n > 0 {
				return false
			}
		}
		return true
	}, "observer callbacks")

	seen := rec.snapshot()
	for _, want := range []string{
		"inbx.echo",
		"$JS.API.INFO",
		"$JS.API.STREAM.UPDATE.KV_inbx_sessions_ly2eg", // CreateOrUpdate: create, then (or only) update
		"$JS.API.CONSUMER.CREATE.inbx_DELETE_SESSION_STREAM.api-deleter-1",
		"$JS.API.DIRECT.GET.KV_inbx_sessions_ly2eg.$KV.inbx_sessions_ly2eg.7",
		"$KV.inbx_sessions_ly2eg.7",
		"inbx_edgegap_delete_session_q." + sid,
		"$JS.API.CONSUMER.MSG.NEXT.inbx_DELETE_SESSION_STREAM.api-deleter-1",
	} {
		if len(seen[want]) == 0 {
			t.Errorf("no request on %s seen (seen: %v)", want, slices.Sorted(maps.Keys(seen)))
		}
	}
	checked := 0
	for subj, replies := range seen {
		if !strings.Contains(subj, "inbx") && subj != "$JS.API.INFO" {
			continue // other tests' JetStream traffic, if any ran in parallel
		}
		for _, r := range replies {
			checked++
			if r != "" && !strings.HasPrefix(r, prefix+".") {
				t.Errorf("request on %s has reply subject %q without the inbox prefix", subj, r)
			}
		}
	}
	if checked < 10 {
		t.Errorf("checked only %d requests", checked)
	}
}

func waitWatch(t *testing.T, w jetstream.KeyWatcher, key string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case e := <-w.Updates():
			if e != nil && e.Key() == key {
				return
			}
		case <-timeout:
			t.Fatalf("watch saw no update of %q", key)
		}
	}
}

// connSubscriptions returns the subjects subscribed by the client connection named name.
func connSubscriptions(t *testing.T, name string) []string {
	t.Helper()
	cz, err := testServer.Connz(&server.ConnzOptions{Subscriptions: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cz.Conns {
		if c.Name == name {
			return c.Subs
		}
	}
	t.Fatalf("no connection named %q", name)
	return nil
}
