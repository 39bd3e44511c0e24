package matchmaker

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/eventually"
)

// deleteQueueEmpty reports whether every queued deletion was handled (the work queue removes a
// message once it is acked).
func (h *harness) deleteQueueEmpty(t testing.TB) bool {
	t.Helper()
	info, err := h.b.DeleteStream.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs == 0
}

// activeConnectionEntries returns how many messages (entries and delete markers) the
// active_connections bucket's stream holds.
func (h *harness) activeConnectionEntries(t testing.TB) uint64 {
	t.Helper()
	st, err := h.b.JS.Stream(context.Background(), "KV_"+h.b.Names.ActiveConnections)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// playerLeft plays a game server whose player connected to sid and left.
func (h *harness) playerLeft(t testing.TB, sid string) {
	t.Helper()
	if _, err := h.b.ActiveConnections.Put(context.Background(), sid, []byte("1")); err != nil {
		t.Fatal(err)
	}
	h.disconnect(t, sid)
}

// TestRestartDoesNotRedeleteEndedSessions: once a session whose player left is deleted, its
// active_connections delete marker is purged, so a restarted matchmaker queues no deletion for
// the thousands of sessions that ended before it (each used to become a DELETE, ahead of real
// work), and still deletes a real player's session when the player leaves.
func TestRestartDoesNotRedeleteEndedSessions(t *testing.T) {
	t.Parallel()
	const ended = 2000
	h := newHarness(t, harnessOpts{})
	for i := range ended {
		h.playerLeft(t, "ended"+strconv.Itoa(i))
	}
	eventually.True(t, 30*time.Second, func() bool {
		return h.sim.CallCounts().Endpoint(edgegap.EndpointSessionDelete) == ended && h.deleteQueueEmpty(t)
	}, "%d ended sessions deleted", ended)
	eventually.True(t, 10*time.Second, func() bool { return h.activeConnectionEntries(t) == 0 },
		"delete markers of the deleted sessions purged from active_connections")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.mms[0].Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	mm := h.start(t, h.cfg)

	r := h.gensession(t, `{"client_ip":"1.2.3.4"}`)
	if r.errCode != "" {
		t.Fatalf("error %s %s", r.errCode, r.errDesc)
	}
	sid := h.claim(t, strconv.FormatUint(h.clientIDOf(t, r.reply.ConnectToken), 10))
	h.disconnect(t, sid)
	h.noLeaks(t, 10*time.Second)
	eventually.True(t, 10*time.Second, func() bool { return h.deleteQueueEmpty(t) }, "delete queue empty")
	if n := h.counter(t, mm, "bevygap_matchmaker_session_deletes_enqueued_total"); n != 1 {
		t.Errorf("restarted matchmaker queued %v deletions, want 1 (the real player's session)", n)
	}
	if n := h.sim.CallCounts().Endpoint(edgegap.EndpointSessionDelete); n != ended+1 {
		t.Errorf("%d DELETE calls, want %d (one per session)", n, ended+1)
	}
}

// TestReusedSessionIDIsDeletedAgain: a session id that comes back (a simulator restarted with
// the same seed and store) is deleted again when its new player leaves, although its earlier
// deletion is still in the delete queue's duplicate window.
func TestReusedSessionIDIsDeletedAgain(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{})
	deletes := func() uint64 { return h.sim.CallCounts().Endpoint(edgegap.EndpointSessionDelete) }
	for life := 1; life <= 2; life++ {
		h.playerLeft(t, "reused1")
		eventually.True(t, 5*time.Second, func() bool { return deletes() == uint64(life) && h.deleteQueueEmpty(t) },
			"deletion %d of the reused session id", life)
	}
}

// TestStaleQueuedDeleteSparesNewSession: a deletion queued for an earlier session with the same
// id is not executed against the newer session that now has the id — newer by revision in the
// bucket the deletion names, by time in the other — while a due deletion goes ahead.
func TestStaleQueuedDeleteSparesNewSession(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{noMatchmaker: true, configure: func(c *Config) { c.ReadinessLimit = time.Minute }})
	ctx := context.Background()
	api := h.newAPI()
	create := func() string {
		t.Helper()
		s, err := api.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: h.cfg.AppName, IPList: []string{"1.2.3.4"}})
		if err != nil {
			t.Fatal(err)
		}
		return s.SessionID
	}
	enqueue := func(sid, inc string) {
		t.Helper()
		if err := h.b.EnqueueSessionDelete(ctx, sid, inc); err != nil {
			t.Fatal(err)
		}
	}
	put := func(kv jetstream.KeyValue, sid string) uint64 {
		t.Helper()
		rev, err := kv.Put(ctx, sid, []byte(sid))
		if err != nil {
			t.Fatal(err)
		}
		return rev
	}
	// leave writes the delete marker of a player leaving sid and returns its revision (nobody
	// else writes the bucket here, so it follows the put).
	leave := func(sid string) uint64 {
		t.Helper()
		rev := put(h.b.ActiveConnections, sid)
		h.disconnect(t, sid)
		return rev + 1
	}
	unclaimedLife, markerLife, otherBucket, due := create(), create(), create(), create()

	// The earlier lives, each ending with a deletion left in the queue.
	rev := put(h.b.UnclaimedSessions, unclaimedLife)
	enqueue(unclaimedLife, unclaimedIncarnation(rev)) // a failed request, or the reaper
	if err := h.b.UnclaimedSessions.Delete(ctx, unclaimedLife); err != nil {
		t.Fatal(err)
	}
	enqueue(markerLife, markerIncarnation(leave(markerLife)))
	enqueue(otherBucket, markerIncarnation(leave(otherBucket)))
	enqueue(due, markerIncarnation(leave(due)))
	// The new lives of the ids: the same bucket (a higher revision), and another bucket, written
	// later than the clocks of two cluster nodes can disagree.
	put(h.b.UnclaimedSessions, unclaimedLife)
	put(h.b.ActiveConnections, markerLife)
	time.Sleep(reuseClockMargin + 100*time.Millisecond)
	put(h.b.UnclaimedSessions, otherBucket)

	mm := h.start(t, h.cfg)
	eventually.True(t, 10*time.Second, func() bool { return h.deleteQueueEmpty(t) }, "delete queue handled")
	if _, err := api.GetSession(ctx, due); err == nil {
		t.Error("the due deletion was not executed")
	}
	for _, sid := range []string{unclaimedLife, markerLife, otherBucket} {
		if _, err := api.GetSession(ctx, sid); err != nil {
			t.Errorf("the new session with the reused id %s was deleted by a stale queued deletion: %v", sid, err)
		}
	}
	if n := metricSum(t, h.registry(mm), "bevygap_matchmaker_session_deletes_total", map[string]string{"result": "superseded"}); n != 3 {
		t.Errorf("superseded deletions = %v, want 3", n)
	}
	if n := h.sim.CallCounts().Endpoint(edgegap.EndpointSessionDelete); n != 1 {
		t.Errorf("%d DELETE calls, want 1", n)
	}
}
