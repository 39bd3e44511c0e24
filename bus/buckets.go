package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/internal/names"
	"github.com/bevygap-go/bevygap/protocol"
)

// Descriptions, sizes and TTLs of the shared JetStream objects. They are the reference's
// (bevygap_shared/src/nats.rs), so that a bucket created by a Rust service and one created here
// have the same configuration and CreateOrUpdate is a no-op on either side. The contract is the
// exact request bodies async-nats 0.36.0 sends (bus/testdata/async-nats-0.36.0/), replayed
// against nats-server in bus/interop_test.go; see docs/nats-buckets.md.
const (
	// SessionMappingTTL is the max age of sessions_ly2eg and sessions_eg2ly entries: a client
	// has this long to connect to its game server after receiving its token.
	SessionMappingTTL = 30 * time.Second
	// CertDigestTTL is the max age of a cert_digests entry (14 days).
	CertDigestTTL = 14 * 24 * time.Hour
	// MaxValueSize is the max value size of the buckets where the reference sets one.
	MaxValueSize = 1024

	descEg2Ly     = "Maps Edgegap Session IDs to Lightyear Client IDs"
	descLy2Eg     = "Maps Lightyear Client IDs to Edgegap Session IDs"
	descUnclaimed = "Any session ids we get from the API are stored here, and if they key age gets too big, we delete the session via the API."
	descCerts     = "Maps server public ip to their self-signed cert digests"
	descDeleter   = "Calls edgegap session delete api"

	// requestTimeout bounds each JetStream management call of Open.
	requestTimeout = 10 * time.Second
)

// ErrBucketPrefix is returned (wrapped) for a bucket prefix with characters JetStream does not
// allow in bucket and stream names.
var ErrBucketPrefix = errors.New("bus: invalid bucket prefix")

// BucketOptions says how [Open] names and replicates the shared buckets and the delete stream.
// The zero value gives the reference's names on a single-node server.
type BucketOptions struct {
	// Prefix is prepended to every bucket name, to the stream name and to the delete-queue
	// subjects, so that several games can share one NATS (e.g. "spacepit_" gives
	// "spacepit_sessions_ly2eg", stream "spacepit_DELETE_SESSION_STREAM" and subjects
	// "spacepit_edgegap_delete_session_q.*"). Empty keeps the reference's names, which Rust
	// bevygap game servers expect: with a prefix, only Go game servers can take part (Rust ones
	// would create and use their own unprefixed buckets). Letters, digits, '_' and '-' only.
	Prefix string
	// Replicas is the replication factor of every bucket and the stream: 1 (also for 0) on a
	// single server, 3 on a cluster. Rust bevygap always creates with 1 replica, and the server
	// refuses its create of a stream that has another count ("stream name already in use with a
	// different configuration"), so a value above 1 is for Go-only game servers.
	Replicas int
	// Memory keeps everything in memory instead of files (tests, throwaway dev servers). Rust
	// bevygap always asks for file storage and is refused on memory streams, as for Replicas.
	Memory bool
}

// Names are the JetStream names one deployment uses, after the prefix is applied.
type Names struct {
	SessionsLy2Eg      string
	SessionsEg2Ly      string
	ActiveConnections  string
	UnclaimedSessions  string
	CertDigests        string
	DeleteStream       string
	DeleteSubjectBase  string // e.g. "edgegap_delete_session_q"; subjects are base + "." + session id
	DeleteConsumerName string
}

// namesFor returns the names for a prefix ("" gives the reference's names).
func namesFor(prefix string) Names {
	return Names{
		SessionsLy2Eg:      prefix + protocol.BucketSessionsLy2Eg,
		SessionsEg2Ly:      prefix + protocol.BucketSessionsEg2Ly,
		ActiveConnections:  prefix + protocol.BucketActiveConnections,
		UnclaimedSessions:  prefix + protocol.BucketUnclaimedSessions,
		CertDigests:        prefix + protocol.BucketCertDigests,
		DeleteStream:       prefix + protocol.DeleteSessionStream,
		DeleteSubjectBase:  prefix + protocol.DeleteSessionSubjectPrefix,
		DeleteConsumerName: protocol.DeleteSessionConsumer,
	}
}

// Buckets are the shared KV buckets and the delete-session work queue, created or updated by
// [Open]. All fields are safe for concurrent use.
type Buckets struct {
	// JS is the JetStream context the buckets were opened with.
	JS jetstream.JetStream
	// Names are the names in use.
	Names Names

	// SessionsLy2Eg maps a Lightyear client id (decimal) to a session id. TTL 30 s.
	SessionsLy2Eg jetstream.KeyValue
	// SessionsEg2Ly maps a session id to a Lightyear client id (decimal). TTL 30 s.
	SessionsEg2Ly jetstream.KeyValue
	// ActiveConnections maps a session id to the connected client id; written by game servers.
	ActiveConnections jetstream.KeyValue
	// UnclaimedSessions holds session id -> session id for every session not claimed yet.
	UnclaimedSessions jetstream.KeyValue
	// CertDigests maps a game server public IP to its WebTransport certificate digest. TTL 14 days.
	CertDigests jetstream.KeyValue
	// DeleteStream is the work-queue stream of pending Edgegap session deletions.
	DeleteStream jetstream.Stream
}

// Open creates or updates, idempotently, every KV bucket and the delete stream with the names,
// TTLs and limits of the design (the reference's configuration), and returns handles to them.
// It works the same against the embedded server and an external one.
func Open(ctx context.Context, nc *nats.Conn, opts BucketOptions) (*Buckets, error) {
	if err := ValidatePrefix(opts.Prefix); err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	names := namesFor(opts.Prefix)
	b := &Buckets{JS: js, Names: names}
	for _, c := range bucketConfigs(names, opts) {
		kv, err := createBucket(ctx, js, c)
		if err != nil {
			return nil, err
		}
		switch c.Bucket {
		case names.SessionsLy2Eg:
			b.SessionsLy2Eg = kv
		case names.SessionsEg2Ly:
			b.SessionsEg2Ly = kv
		case names.ActiveConnections:
			b.ActiveConnections = kv
		case names.UnclaimedSessions:
			b.UnclaimedSessions = kv
		case names.CertDigests:
			b.CertDigests = kv
		}
	}
	sctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	st, err := js.CreateOrUpdateStream(sctx, DeleteStreamConfig(names, opts))
	if err != nil {
		return nil, fmt.Errorf("bus: create or update stream %s: %w", names.DeleteStream, err)
	}
	b.DeleteStream = st
	return b, nil
}

func createBucket(ctx context.Context, js jetstream.JetStream, c jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	kv, err := js.CreateOrUpdateKeyValue(ctx, c)
	if err != nil {
		return nil, fmt.Errorf("bus: create or update KV bucket %s: %w", c.Bucket, err)
	}
	return kv, nil
}

// BucketConfigs returns the configuration [Open] applies to each KV bucket, in a stable order:
// sessions_eg2ly, sessions_ly2eg, active_connections, unclaimed_sessions, cert_digests.
func BucketConfigs(opts BucketOptions) []jetstream.KeyValueConfig {
	return bucketConfigs(namesFor(opts.Prefix), opts)
}

func bucketConfigs(n Names, opts BucketOptions) []jetstream.KeyValueConfig {
	replicas, storage := placement(opts)
	return []jetstream.KeyValueConfig{
		{Bucket: n.SessionsEg2Ly, Description: descEg2Ly, MaxValueSize: MaxValueSize, TTL: SessionMappingTTL, Replicas: replicas, Storage: storage},
		{Bucket: n.SessionsLy2Eg, Description: descLy2Eg, MaxValueSize: MaxValueSize, TTL: SessionMappingTTL, Replicas: replicas, Storage: storage},
		{Bucket: n.ActiveConnections, Replicas: replicas, Storage: storage},
		{Bucket: n.UnclaimedSessions, Description: descUnclaimed, MaxValueSize: MaxValueSize, Replicas: replicas, Storage: storage},
		{Bucket: n.CertDigests, Description: descCerts, MaxValueSize: MaxValueSize, TTL: CertDigestTTL, Replicas: replicas, Storage: storage},
	}
}

// DeleteStreamConfig returns the configuration of the delete-session work queue: the
// reference's (work-queue retention, subjects <base>.*), with the configured replicas.
func DeleteStreamConfig(n Names, opts BucketOptions) jetstream.StreamConfig {
	replicas, storage := placement(opts)
	return jetstream.StreamConfig{
		Name:      n.DeleteStream,
		Subjects:  []string{n.DeleteSubjectBase + ".*"},
		Retention: jetstream.WorkQueuePolicy,
		Replicas:  replicas,
		Storage:   storage,
	}
}

// deleteConsumerConfig returns the durable pull consumer of the delete queue (the reference's:
// durable "api-deleter-1", explicit acks, unlimited redeliveries). Every matchmaker binds to the
// same durable, so each queued deletion is handed to exactly one of them at a time.
func deleteConsumerConfig(n Names) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:     n.DeleteConsumerName,
		Description: descDeleter,
		AckPolicy:   jetstream.AckExplicitPolicy,
		AckWait:     30 * time.Second,
		MaxDeliver:  -1,
	}
}

func placement(opts BucketOptions) (int, jetstream.StorageType) {
	replicas := opts.Replicas
	if replicas <= 0 {
		replicas = 1
	}
	storage := jetstream.FileStorage
	if opts.Memory {
		storage = jetstream.MemoryStorage
	}
	return replicas, storage
}

// ValidatePrefix checks a bucket prefix ([BucketOptions.Prefix]): letters, digits, '_' and '-'
// only, the characters JetStream allows in bucket and stream names. The error wraps
// ErrBucketPrefix.
func ValidatePrefix(p string) error {
	if p != "" && !names.Valid(p, 0, "_-") {
		return fmt.Errorf("%w %q: use letters, digits, '_' and '-'", ErrBucketPrefix, p)
	}
	return nil
}

// DeleteConsumer creates or updates the durable delete consumer and returns it.
func (b *Buckets) DeleteConsumer(ctx context.Context) (jetstream.Consumer, error) {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	c, err := b.DeleteStream.CreateOrUpdateConsumer(ctx, deleteConsumerConfig(b.Names))
	if err != nil {
		return nil, fmt.Errorf("bus: delete consumer %s: %w", b.Names.DeleteConsumerName, err)
	}
	return c, nil
}

// deleteSubject returns the delete-queue subject of a session id.
func (b *Buckets) deleteSubject(sessionID string) string {
	return b.Names.DeleteSubjectBase + "." + sessionID
}

// ErrBadSessionID is returned (wrapped) for a session id that cannot be a NATS subject token or
// KV key (empty, longer than 256 bytes, or with '.', '*', '>', white space or other characters
// outside A-Z a-z 0-9 '_' '-' '=').
var ErrBadSessionID = errors.New("bus: bad session id")

// maxSessionIDLen bounds a session id ([ValidSessionID]).
const maxSessionIDLen = 256

// ValidSessionID reports whether id can be used as a KV key and as the last token of a delete
// subject: 1 to 256 bytes of A-Z a-z 0-9 '_' '-' '='.
func ValidSessionID(id string) bool { return names.Valid(id, maxSessionIDLen, "_-=") }

// EnqueueSessionDelete durably queues the Edgegap deletion of a session (payload = session id)
// and waits for JetStream's acknowledgement. Several enqueues of the same id within the stream's
// duplicate window (2 min by default) are stored once, so reapers and watchers on several
// matchmakers do not multiply the work.
func (b *Buckets) EnqueueSessionDelete(ctx context.Context, sessionID string) error {
	if !ValidSessionID(sessionID) {
		return fmt.Errorf("%w %q", ErrBadSessionID, sessionID)
	}
	_, err := b.JS.Publish(ctx, b.deleteSubject(sessionID), []byte(sessionID),
		jetstream.WithMsgID("delete-"+sessionID))
	if err != nil {
		return fmt.Errorf("bus: enqueue delete of session %s: %w", sessionID, err)
	}
	return nil
}
