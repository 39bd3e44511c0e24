package bus

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestBucketConfigsPinned(t *testing.T) {
	t.Parallel()
	// The reference's configuration (bevygap_shared/src/nats.rs); a change here breaks
	// compatibility with buckets a Rust service created.
	want := []struct {
		bucket, desc string
		maxValue     int32
		ttl          time.Duration
	}{
		{"sessions_eg2ly", "Maps Edgegap Session IDs to Lightyear Client IDs", 1024, 30 * time.Second},
		{"sessions_ly2eg", "Maps Lightyear Client IDs to Edgegap Session IDs", 1024, 30 * time.Second},
		{"active_connections", "", 0, 0},
		{"unclaimed_sessions", "Any session ids we get from the API are stored here, and if they key age gets too big, we delete the session via the API.", 1024, 0},
		{"cert_digests", "Maps server public ip to their self-signed cert digests", 1024, 14 * 24 * time.Hour},
	}
	got := BucketConfigs(BucketOptions{})
	if len(got) != len(want) {
		t.Fatalf("got %d buckets, want %d", len(got), len(want))
	}
	for i, w := range want {
		g := got[i]
		if g.Bucket != w.bucket || g.Description != w.desc || g.MaxValueSize != w.maxValue || g.TTL != w.ttl || g.Replicas != 1 || g.Storage != jetstream.FileStorage {
			t.Errorf("bucket %d = %+v, want %+v (1 replica, file)", i, g, w)
		}
	}
	sc := DeleteStreamConfig(namesFor(""), BucketOptions{Replicas: 3})
	if sc.Name != "DELETE_SESSION_STREAM" || len(sc.Subjects) != 1 || sc.Subjects[0] != "edgegap_delete_session_q.*" ||
		sc.Retention != jetstream.WorkQueuePolicy || sc.Replicas != 3 {
		t.Errorf("stream config = %+v", sc)
	}
	cc := deleteConsumerConfig(namesFor(""))
	if cc.Durable != "api-deleter-1" || cc.AckPolicy != jetstream.AckExplicitPolicy || cc.MaxDeliver != -1 {
		t.Errorf("consumer config = %+v", cc)
	}
}

func TestNamesForPrefix(t *testing.T) {
	t.Parallel()
	n := namesFor("pit_")
	if n.SessionsLy2Eg != "pit_sessions_ly2eg" || n.DeleteStream != "pit_DELETE_SESSION_STREAM" ||
		n.DeleteSubjectBase != "pit_edgegap_delete_session_q" || n.DeleteConsumerName != "api-deleter-1" {
		t.Fatalf("names = %+v", n)
	}
	if _, err := Open(context.Background(), nil, BucketOptions{Prefix: "a.b"}); !errors.Is(err, ErrBucketPrefix) {
		t.Fatalf("err = %v, want ErrBucketPrefix", err)
	}
}

func TestOpenIdempotentAndEnqueue(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := Connect(ctx, testConfig("test"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	opts := BucketOptions{Prefix: "openidem_"}
	b, err := Open(ctx, nc, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Second open (another service starting) must succeed and see the same buckets.
	b2, err := Open(ctx, nc, opts)
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	st, err := b2.UnclaimedSessions.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bucket() != "openidem_unclaimed_sessions" {
		t.Fatalf("bucket = %q", st.Bucket())
	}
	ttlStatus, err := b.CertDigests.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ttlStatus.TTL() != 14*24*time.Hour {
		t.Fatalf("cert_digests TTL = %v", ttlStatus.TTL())
	}
	// Values above 1024 bytes are refused where the reference set max_value_size.
	if _, err := b.UnclaimedSessions.Put(ctx, "big", make([]byte, 2000)); err == nil {
		t.Fatal("2000-byte value accepted by unclaimed_sessions")
	}

	// Enqueue twice: the work queue holds one message (dedup by message id).
	sid := fmt.Sprintf("abc%d-S", time.Now().UnixNano())
	for range 2 {
		if err := b.EnqueueSessionDelete(ctx, sid, ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.EnqueueSessionDelete(ctx, "bad.id", ""); !errors.Is(err, ErrBadSessionID) {
		t.Fatalf("err = %v, want ErrBadSessionID", err)
	}
	info, err := b.DeleteStream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream has %d messages, want 1", info.State.Msgs)
	}
	cons, err := b.DeleteConsumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if string(m.Data()) != sid || m.Subject() != "openidem_edgegap_delete_session_q."+sid {
			t.Fatalf("message %q on %q", m.Data(), m.Subject())
		}
		_ = m.Ack()
	}
}

// TestEnqueueSessionDeleteIncarnations: repeated deletions of one incarnation of a session id are
// stored once; another incarnation of the same id (the id reused by a new session) is queued
// again, with its incarnation in a header and the session id alone as payload.
func TestEnqueueSessionDeleteIncarnations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nc, err := Connect(ctx, testConfig("incarnations"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := Open(ctx, nc, BucketOptions{Prefix: "incarn_", Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	sid := fmt.Sprintf("inc%d-S", time.Now().UnixNano())
	for _, inc := range []string{"ac-1", "ac-1", "uc-7", "ac-2", "ac-2"} {
		if err := b.EnqueueSessionDelete(ctx, sid, inc); err != nil {
			t.Fatal(err)
		}
	}
	info, err := b.DeleteStream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("stream has %d messages, want 3 (one per incarnation)", info.State.Msgs)
	}
	cons, err := b.DeleteConsumer(ctx)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(3, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		if string(m.Data()) != sid {
			t.Errorf("payload %q, want the session id", m.Data())
		}
		got = append(got, m.Headers().Get(HeaderIncarnation))
		_ = m.Ack()
	}
	if want := []string{"ac-1", "uc-7", "ac-2"}; !slices.Equal(got, want) {
		t.Fatalf("queued incarnations %v, want %v", got, want)
	}
}

// TestPurgeActiveConnection: purging a delete marker removes it (a new watch replays nothing for
// the key), while a purge up to an older revision keeps a newer entry of the key.
func TestPurgeActiveConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nc, err := Connect(ctx, testConfig("purge"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := Open(ctx, nc, BucketOptions{Prefix: "purge_", Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	kv := b.ActiveConnections
	put, err := kv.Put(ctx, "gone", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "gone"); err != nil { // revision put+1: nobody else writes here
		t.Fatal(err)
	}
	old, err := kv.Put(ctx, "back", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := kv.Delete(ctx, "back"); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "back", []byte("2")); err != nil { // a newer life of the key
		t.Fatal(err)
	}
	if err := b.PurgeActiveConnection(ctx, "gone", put+1); err != nil {
		t.Fatal(err)
	}
	if err := b.PurgeActiveConnection(ctx, "back", old+1); err != nil {
		t.Fatal(err)
	}
	if err := b.PurgeActiveConnection(ctx, ">", old+1); !errors.Is(err, ErrBadSessionID) {
		t.Fatalf("purge of a wildcard: err = %v, want ErrBadSessionID", err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	var got []string
	for e := range w.Updates() {
		if e == nil {
			break
		}
		got = append(got, fmt.Sprintf("%s:%s:%s", e.Key(), e.Operation(), e.Value()))
	}
	if want := []string{"back:KeyValuePutOp:2"}; !slices.Equal(got, want) {
		t.Fatalf("replayed %v, want %v", got, want)
	}
}

// dupInProcessJS answers PublishMsg with JetStream's "duplicate message id is in process"
// (another matchmaker's enqueue of the same deletion being stored) a number of times.
type dupInProcessJS struct {
	jetstream.JetStream
	conflicts int
	calls     int
}

func (j *dupInProcessJS) PublishMsg(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	j.calls++
	if j.calls <= j.conflicts {
		return nil, &jetstream.APIError{Code: 409, ErrorCode: errCodeDuplicateInProcess, Description: "duplicate message id is in process"}
	}
	return &jetstream.PubAck{Duplicate: j.calls > 1}, nil
}

// TestEnqueueSessionDeleteDuplicateInProcess: two matchmakers' reapers queue the same deletion
// at once on a replicated stream; the second one's 409 (10158) is waited out, not reported as a
// failure (the long soak logged 234 "could not queue deletion" warnings for it).
func TestEnqueueSessionDeleteDuplicateInProcess(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		conflicts int
		wantErr   bool
	}{
		{"none", 0, false},
		{"two", 2, false},
		{"never stored", duplicateInProcessAttempts, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			js := &dupInProcessJS{conflicts: tt.conflicts}
			b := &Buckets{JS: js, Names: namesFor("")}
			err := b.EnqueueSessionDelete(t.Context(), "abc-S", "u-1")
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if want := min(tt.conflicts+1, duplicateInProcessAttempts); js.calls != want {
				t.Errorf("%d publishes, want %d", js.calls, want)
			}
		})
	}
}
