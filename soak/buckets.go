package soak

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/protocol"
)

// BucketCounts is what the shared NATS buckets hold: after a soak, with every player gone
// and every session deleted, ActiveConnections, Unclaimed and DeleteQueue should be 0.
type BucketCounts struct {
	// ActiveConnections counts active_connections keys (sessions a game server says are in
	// use); ActiveMarkers the delete markers it still stores (players who left, whose session
	// deletion is not done or not purged).
	ActiveConnections int    `json:"active_connections"`
	ActiveMarkers     uint64 `json:"active_connections_markers"`
	// Unclaimed counts unclaimed_sessions keys (sessions nobody connected to yet).
	Unclaimed int `json:"unclaimed_sessions"`
	// Ly2Eg and Eg2Ly count the token mappings' entries (30 s TTL; keys and delete markers).
	Ly2Eg int `json:"sessions_ly2eg"`
	Eg2Ly int `json:"sessions_eg2ly"`
	// DeleteQueue counts the session deletions queued in the delete stream.
	DeleteQueue uint64 `json:"delete_queue"`
}

// String summarizes the counts on one line.
func (b *BucketCounts) String() string {
	return fmt.Sprintf("active_connections %d (+%d delete markers), unclaimed_sessions %d, sessions_ly2eg %d, sessions_eg2ly %d, delete queue %d",
		b.ActiveConnections, b.ActiveMarkers, b.Unclaimed, b.Ly2Eg, b.Eg2Ly, b.DeleteQueue)
}

// InspectBuckets counts what the shared buckets and the delete stream (names with prefix, as
// the matchmaker's --bucket-prefix) hold, over nc. The NATS user needs to read them (the
// matchmaker's user can).
func InspectBuckets(ctx context.Context, nc *nats.Conn, prefix string) (*BucketCounts, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	out := &BucketCounts{}
	count := func(bucket string, markers *uint64) (int, error) {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		kv, err := js.KeyValue(ctx, prefix+bucket)
		if err != nil {
			return 0, fmt.Errorf("soak: bucket %s: %w", prefix+bucket, err)
		}
		lister, err := kv.ListKeys(ctx)
		if err != nil {
			return 0, fmt.Errorf("soak: bucket %s: %w", prefix+bucket, err)
		}
		n := 0
		for range lister.Keys() {
			n++
		}
		if markers != nil {
			st, err := kv.Status(ctx)
			if err != nil {
				return 0, fmt.Errorf("soak: bucket %s: %w", prefix+bucket, err)
			}
			if v := st.Values(); v > uint64(n) {
				*markers = v - uint64(n)
			}
		}
		return n, nil
	}
	var errs []error
	var e error
	out.ActiveConnections, e = count(protocol.BucketActiveConnections, &out.ActiveMarkers)
	errs = append(errs, e)
	out.Unclaimed, e = count(protocol.BucketUnclaimedSessions, nil)
	errs = append(errs, e)
	// The token mappings are read by their stream's message count (keys and delete markers,
	// within the 30 s TTL): listing their keys needs a consumer the matchmaker's user may not
	// create.
	out.Ly2Eg, e = values(ctx, js, prefix+protocol.BucketSessionsLy2Eg)
	errs = append(errs, e)
	out.Eg2Ly, e = values(ctx, js, prefix+protocol.BucketSessionsEg2Ly)
	errs = append(errs, e)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if st, err := js.Stream(sctx, prefix+protocol.DeleteSessionStream); err != nil {
		errs = append(errs, fmt.Errorf("soak: stream %s: %w", prefix+protocol.DeleteSessionStream, err))
	} else if info, err := st.Info(sctx); err != nil {
		errs = append(errs, fmt.Errorf("soak: stream %s: %w", prefix+protocol.DeleteSessionStream, err))
	} else {
		out.DeleteQueue = info.State.Msgs
	}
	return out, errors.Join(errs...)
}

// values returns how many entries (values and delete markers) the KV bucket stores.
func values(ctx context.Context, js jetstream.JetStream, bucket string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return 0, fmt.Errorf("soak: bucket %s: %w", bucket, err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return 0, fmt.Errorf("soak: bucket %s: %w", bucket, err)
	}
	return int(st.Values()), nil
}
