package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/internal/eventually"
)

// TestDeleteConsumerForAccount: the delete consumer records the Edgegap account of its
// matchmakers; a matchmaker of another account is refused while the queue is in use, with the
// fix in the error; a consumer without a record (Rust, older Go) is claimed; "" keeps the record.
func TestDeleteConsumerForAccount(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := Connect(ctx, testConfig("account"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	b, err := Open(ctx, nc, BucketOptions{Prefix: "acct_", Memory: true})
	if err != nil {
		t.Fatal(err)
	}
	recorded := func() string {
		t.Helper()
		c, err := b.DeleteStream.Consumer(ctx, b.Names.DeleteConsumerName)
		if err != nil {
			t.Fatal(err)
		}
		return c.CachedInfo().Config.Metadata[AccountMetadataKey]
	}

	// A consumer created as the Rust matchmaker does (no metadata) is claimed.
	if _, err := b.DeleteStream.CreateConsumer(ctx, deleteConsumerConfig(b.Names)); err != nil {
		t.Fatal(err)
	}
	cons, err := b.DeleteConsumerFor(ctx, "aaaa")
	if err != nil {
		t.Fatal(err)
	}
	if got := recorded(); got != "aaaa" {
		t.Fatalf("recorded account %q, want aaaa", got)
	}
	// A restart of the same account's matchmaker takes the fast path: a strict create of an
	// identical consumer succeeds (no CONSUMER.INFO needed).
	same := deleteConsumerConfig(b.Names)
	same.Metadata = map[string]string{AccountMetadataKey: "aaaa"}
	if _, err := b.DeleteStream.CreateConsumer(ctx, same); err != nil {
		t.Fatalf("strict create of the identical consumer: %v", err)
	}
	// The same account again, and a caller that does not know its account, are fine; the
	// record stays.
	for _, acct := range []string{"aaaa", ""} {
		if _, err := b.DeleteConsumerFor(ctx, acct); err != nil {
			t.Fatalf("account %q: %v", acct, err)
		}
		if got := recorded(); got != "aaaa" {
			t.Fatalf("after account %q: recorded %q", acct, got)
		}
	}

	// Another account while the queue is in use: refused, naming the fix; the record stays.
	cc, err := cons.Consume(func(m jetstream.Msg) { _ = m.Ack() })
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Stop()
	var refusal error
	// The first pull request reaches the server a moment after Consume returns.
	eventually.True(t, 5*time.Second, func() bool {
		_, refusal = b.DeleteConsumerFor(ctx, "bbbb")
		return refusal != nil && strings.Contains(refusal.Error(), "pull requests waiting")
	}, "other account refused while a matchmaker pulls")
	if !errors.Is(refusal, ErrDeleteQueueAccount) || !strings.Contains(refusal.Error(), "--bucket-prefix") ||
		!strings.Contains(refusal.Error(), "pull requests waiting") {
		t.Fatalf("other account: err = %v", refusal)
	}
	if got := recorded(); got != "aaaa" {
		t.Fatalf("refused start changed the record to %q", got)
	}

	// The Rust matchmaker's create_consumer (CreateOrUpdate, its own config, no metadata) still
	// succeeds on the recorded consumer: it only erases the record.
	cc.Stop()
	body := `{"stream_name":"` + b.Names.DeleteStream + `","config":{"durable_name":"api-deleter-1",` +
		`"description":"Calls edgegap session delete api","deliver_policy":"all","ack_policy":"explicit",` +
		`"replay_policy":"instant"},"action":""}`
	reply, err := nc.RequestWithContext(ctx, "$JS.API.CONSUMER.CREATE."+b.Names.DeleteStream+".api-deleter-1", []byte(body))
	if err != nil || strings.Contains(string(reply.Data), `"error"`) {
		t.Fatalf("Rust-style consumer create: %v %s", err, reply.Data)
	}
	if got := recorded(); got != "" {
		t.Fatalf("after the Rust-style create: recorded %q", got)
	}
}

// TestConsumerInUse: a delete consumer of another account is taken over only when idle, empty
// and not fresh.
func TestConsumerInUse(t *testing.T) {
	t.Parallel()
	now := time.Now()
	old := now.Add(-time.Hour)
	tests := []struct {
		name string
		info jetstream.ConsumerInfo
		want string // substring; "" = not in use
	}{
		{"idle and empty", jetstream.ConsumerInfo{Created: old}, ""},
		{"matchmaker pulling", jetstream.ConsumerInfo{Created: old, NumWaiting: 2}, "2 pull requests waiting"},
		{"deletion in progress", jetstream.ConsumerInfo{Created: old, NumAckPending: 1}, "1 deletions in progress"},
		{"deletions queued", jetstream.ConsumerInfo{Created: old, NumPending: 5}, "5 deletions queued"},
		{"just created", jetstream.ConsumerInfo{Created: now.Add(-5 * time.Second)}, "created 5s ago"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := consumerInUse(&tt.info, now)
			if (tt.want == "") != (got == "") || !strings.Contains(got, tt.want) {
				t.Errorf("consumerInUse = %q, want %q", got, tt.want)
			}
		})
	}
}

// deniedStream is a delete stream whose consumer exists with another configuration and whose
// consumer lookup is not allowed (a NATS user without CONSUMER.INFO).
type deniedStream struct{ jetstream.Stream }

func (deniedStream) CreateConsumer(context.Context, jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	return nil, jetstream.ErrConsumerExists
}

func (deniedStream) Consumer(context.Context, string) (jetstream.Consumer, error) {
	return nil, errors.New("nats: permissions violation")
}

// TestDeleteConsumerForUnchecked: a consumer that exists with another configuration but cannot
// be read is reported as unchecked (the matchmaker then warns and binds it unchecked), naming
// the missing right.
func TestDeleteConsumerForUnchecked(t *testing.T) {
	t.Parallel()
	b := &Buckets{Names: namesFor(""), DeleteStream: deniedStream{}}
	_, err := b.DeleteConsumerFor(context.Background(), "aaaa")
	if !errors.Is(err, ErrDeleteQueueUnchecked) || !strings.Contains(err.Error(), "$JS.API.CONSUMER.INFO.DELETE_SESSION_STREAM.api-deleter-1") {
		t.Fatalf("err = %v", err)
	}
}
