package bus

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Names of the buckets of bevygap-go's play-together extension (parties and match queues).
// Only matchmakers use them; the Rust project has no such buckets. A bucket prefix
// ([BucketOptions.Prefix]) applies as to the shared buckets.
const (
	// BucketPlayTickets holds the tickets waiting in match queues:
	// <game>.<version>.<queue>.<ticket id> -> ticket JSON.
	BucketPlayTickets = "play_tickets"
	// BucketPlayLeases holds one lease per queue: <game>.<version>.<queue> -> holder. Entries
	// expire after [PlayLeaseTTL] unless the holder renews them, so a crashed holder's queue is
	// taken over by another matchmaker.
	BucketPlayLeases = "play_leases"
	// BucketPlayParties holds the parties: <game>.<version>.<code> -> party JSON.
	BucketPlayParties = "play_parties"

	// PlayLeaseTTL is the max age of a play_leases entry.
	PlayLeaseTTL = 3 * time.Second
	// PlayTicketTTL is the max age of a play_tickets entry: far above any queue's wait limit,
	// so that only tickets whose every owner vanished expire this way.
	PlayTicketTTL = 15 * time.Minute
	// PlayPartyTTL is the max age of a play_parties entry since its last change.
	PlayPartyTTL = 2 * time.Hour
	// playMaxValueSize bounds a ticket or party entry (a party of many members with their
	// inboxes and addresses).
	playMaxValueSize = 16 * 1024
)

// PlayBuckets are the KV buckets of the play-together extension, created by [OpenPlay].
type PlayBuckets struct {
	// Tickets are the tickets waiting in match queues. TTL [PlayTicketTTL].
	Tickets jetstream.KeyValue
	// Leases say which matchmaker forms the matches of each queue. TTL [PlayLeaseTTL].
	Leases jetstream.KeyValue
	// Parties are the parties. TTL [PlayPartyTTL].
	Parties jetstream.KeyValue
}

// PlayBucketConfigs returns the configuration [OpenPlay] applies: play_tickets, play_leases,
// play_parties, with opts' prefix, replicas and storage.
func PlayBucketConfigs(opts BucketOptions) []jetstream.KeyValueConfig {
	replicas, storage := placement(opts)
	p := opts.Prefix
	return []jetstream.KeyValueConfig{
		{Bucket: p + BucketPlayTickets, Description: "bevygap-go: match queue tickets", MaxValueSize: playMaxValueSize, TTL: PlayTicketTTL, Replicas: replicas, Storage: storage},
		{Bucket: p + BucketPlayLeases, Description: "bevygap-go: which matchmaker forms each queue's matches", MaxValueSize: MaxValueSize, TTL: PlayLeaseTTL, Replicas: replicas, Storage: storage},
		{Bucket: p + BucketPlayParties, Description: "bevygap-go: parties", MaxValueSize: playMaxValueSize, TTL: PlayPartyTTL, Replicas: replicas, Storage: storage},
	}
}

// OpenPlay creates or updates, idempotently, the play-together buckets on b's JetStream and
// returns handles to them.
func (b *Buckets) OpenPlay(ctx context.Context, opts BucketOptions) (*PlayBuckets, error) {
	if err := ValidatePrefix(opts.Prefix); err != nil {
		return nil, err
	}
	var kvs []jetstream.KeyValue
	for _, c := range PlayBucketConfigs(opts) {
		kv, err := createBucket(ctx, b.JS, c)
		if err != nil {
			return nil, fmt.Errorf("bus: play buckets: %w", err)
		}
		kvs = append(kvs, kv)
	}
	return &PlayBuckets{Tickets: kvs[0], Leases: kvs[1], Parties: kvs[2]}, nil
}
