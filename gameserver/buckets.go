package gameserver

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
)

// buckets holds the opened KV buckets a game server touches.
type buckets struct {
	sessionsLy2Eg     jetstream.KeyValue
	activeConnections jetstream.KeyValue
	certDigests       jetstream.KeyValue
}

// gameServerBuckets returns the configuration of the three buckets a game server uses —
// sessions_ly2eg (read), active_connections and cert_digests (written) — as package bus defines
// them (the reference's configuration), with opts' prefix applied.
func gameServerBuckets(opts bus.BucketOptions) []jetstream.KeyValueConfig {
	names := bus.NamesFor(opts.Prefix)
	all := bus.BucketConfigs(opts)
	out := make([]jetstream.KeyValueConfig, 0, 3)
	for _, want := range []string{names.SessionsLy2Eg, names.ActiveConnections, names.CertDigests} {
		for _, c := range all {
			if c.Bucket == want {
				out = append(out, c)
			}
		}
	}
	return out
}

// openBuckets opens the game server's buckets. Unlike bus.Open, which creates or updates every
// bucket and the delete stream (the matchmaker's job), it only looks the three buckets up and
// creates one solely when it does not exist yet: an existing bucket is never reconfigured, and a
// game server needs no rights on the delete stream. That keeps game-server NATS credentials
// small (read sessions_ly2eg, write active_connections and cert_digests).
func openBuckets(ctx context.Context, js jetstream.JetStream, opts bus.BucketOptions) (*buckets, error) {
	specs := gameServerBuckets(opts)
	if len(specs) != 3 {
		return nil, fmt.Errorf("gameserver: package bus defines %d of the 3 game server buckets", len(specs))
	}
	var kvs [3]jetstream.KeyValue
	for i, spec := range specs {
		kv, err := openBucket(ctx, js, spec)
		if err != nil {
			return nil, err
		}
		kvs[i] = kv
	}
	return &buckets{sessionsLy2Eg: kvs[0], activeConnections: kvs[1], certDigests: kvs[2]}, nil
}

func openBucket(ctx context.Context, js jetstream.JetStream, spec jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, spec.Bucket)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("open KV bucket %s: %w", spec.Bucket, err)
	}
	kv, err = js.CreateKeyValue(ctx, spec)
	if errors.Is(err, jetstream.ErrBucketExists) {
		// Someone else created it between our two calls.
		kv, err = js.KeyValue(ctx, spec.Bucket)
	}
	if err != nil {
		return nil, fmt.Errorf("create KV bucket %s: %w", spec.Bucket, err)
	}
	return kv, nil
}
