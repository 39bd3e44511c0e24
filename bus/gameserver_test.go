package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestValidatePrefix(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		prefix string
		ok     bool
	}{
		{"", true}, {"spacepit_", true}, {"a-B_9", true},
		{"a.b", false}, {"a*", false}, {"a>", false}, {"a b", false}, {"é", false},
	} {
		err := ValidatePrefix(tt.prefix)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrBucketPrefix)) {
			t.Errorf("ValidatePrefix(%q) = %v, want ok=%v", tt.prefix, err, tt.ok)
		}
	}
}

func TestValidSessionID(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		id string
		ok bool
	}{
		{"950dd2eaff09-S", true}, {"a_b-c=", true}, {"Z9", true}, {strings.Repeat("a", 256), true},
		{"", false}, {strings.Repeat("a", 257), false}, {"a.b", false}, {"a*", false}, {"a>", false},
		{"a b", false}, {"a/b", false}, {"a\n", false}, {"é", false}, {"a:b", false},
	} {
		if got := ValidSessionID(tt.id); got != tt.ok {
			t.Errorf("ValidSessionID(%q) = %v, want %v", tt.id, got, tt.ok)
		}
	}
}

func TestGameServerBucketConfigs(t *testing.T) {
	t.Parallel()
	got := GameServerBucketConfigs(BucketOptions{Prefix: "p_"})
	want := []string{"p_sessions_ly2eg", "p_active_connections", "p_cert_digests"}
	if len(got) != len(want) {
		t.Fatalf("got %d configs, want %d", len(got), len(want))
	}
	all := BucketConfigs(BucketOptions{Prefix: "p_"})
	for i, w := range want {
		if got[i].Bucket != w {
			t.Errorf("config %d is %q, want %q", i, got[i].Bucket, w)
		}
		found := false
		for _, c := range all {
			found = found || (c.Bucket == w && c.TTL == got[i].TTL && c.Description == got[i].Description && c.MaxValueSize == got[i].MaxValueSize)
		}
		if !found {
			t.Errorf("config %q differs from BucketConfigs", w)
		}
	}
}

// TestOpenGameServerLeastPrivilege: missing buckets are created with the shared configuration,
// existing ones are used as they are (never reconfigured), and the delete stream is untouched.
func TestOpenGameServerLeastPrivilege(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := Connect(ctx, testConfig("test"), quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	opts := BucketOptions{Prefix: "gsopen_"}
	names := namesFor(opts.Prefix)
	// An existing active_connections bucket with a configuration of its own must stay as it is.
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: names.ActiveConnections, Description: "kept"}); err != nil {
		t.Fatal(err)
	}
	b, err := OpenGameServer(ctx, js, opts)
	if err != nil {
		t.Fatal(err)
	}
	if b.Names != names {
		t.Errorf("Names = %+v", b.Names)
	}
	st, err := b.ActiveConnections.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Description; d != "kept" {
		t.Errorf("existing bucket reconfigured: description %q", d)
	}
	st, err = b.CertDigests.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bucket() != "gsopen_cert_digests" || st.TTL() != CertDigestTTL {
		t.Errorf("created cert_digests: %s ttl %v", st.Bucket(), st.TTL())
	}
	if b.SessionsLy2Eg.Bucket() != "gsopen_sessions_ly2eg" {
		t.Errorf("sessions_ly2eg = %s", b.SessionsLy2Eg.Bucket())
	}
	for _, name := range []string{names.UnclaimedSessions, names.SessionsEg2Ly} {
		if _, err := js.KeyValue(ctx, name); !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Errorf("bucket %s: err = %v, want not found", name, err)
		}
	}
	if _, err := js.Stream(ctx, names.DeleteStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("delete stream: err = %v, want not found", err)
	}
	// A second open (a restarted game server) finds everything.
	if _, err := OpenGameServer(ctx, js, opts); err != nil {
		t.Fatalf("second OpenGameServer: %v", err)
	}
	if _, err := OpenGameServer(ctx, js, BucketOptions{Prefix: "a.b"}); !errors.Is(err, ErrBucketPrefix) {
		t.Fatalf("bad prefix: err = %v, want ErrBucketPrefix", err)
	}
}
