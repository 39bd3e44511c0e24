package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// GameServerBuckets are the three KV buckets a game server touches, opened by [OpenGameServer].
// All fields are safe for concurrent use.
type GameServerBuckets struct {
	// Names are the names in use.
	Names Names
	// SessionsLy2Eg maps a Lightyear client id (decimal) to a session id; the game server reads it.
	SessionsLy2Eg jetstream.KeyValue
	// ActiveConnections maps a session id to the connected client id; the game server writes it.
	ActiveConnections jetstream.KeyValue
	// CertDigests maps a game server public IP to its certificate digest; the game server writes it.
	CertDigests jetstream.KeyValue
}

// GameServerBucketConfigs returns the configuration of the three buckets a game server uses —
// sessions_ly2eg (read), active_connections and cert_digests (written) — in that order, as
// [BucketConfigs] defines them (the reference's configuration), with opts' prefix applied.
func GameServerBucketConfigs(opts BucketOptions) []jetstream.KeyValueConfig {
	names := namesFor(opts.Prefix)
	all := BucketConfigs(opts)
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

// OpenGameServer opens a game server's buckets with least privilege. Unlike [Open], which creates
// or updates every bucket and the delete stream (the matchmaker's job), it only looks the three
// buckets up and creates one solely when it does not exist yet: an existing bucket is never
// reconfigured, and a game server needs no rights on the delete stream. That keeps game-server
// NATS credentials small (read sessions_ly2eg, write active_connections and cert_digests).
// ctx bounds the whole call.
func OpenGameServer(ctx context.Context, js jetstream.JetStream, opts BucketOptions) (*GameServerBuckets, error) {
	if err := ValidatePrefix(opts.Prefix); err != nil {
		return nil, err
	}
	specs := GameServerBucketConfigs(opts)
	if len(specs) != 3 {
		return nil, fmt.Errorf("bus: %d of the 3 game server buckets are defined", len(specs))
	}
	var kvs [3]jetstream.KeyValue
	for i, spec := range specs {
		kv, err := lookupOrCreateBucket(ctx, js, spec)
		if err != nil {
			return nil, err
		}
		kvs[i] = kv
	}
	return &GameServerBuckets{Names: namesFor(opts.Prefix), SessionsLy2Eg: kvs[0], ActiveConnections: kvs[1], CertDigests: kvs[2]}, nil
}

// lookupOrCreateBucket opens the bucket spec names, creating it with spec only if it is missing.
func lookupOrCreateBucket(ctx context.Context, js jetstream.JetStream, spec jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
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
