package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/internal/backoff"
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
	// openWait bounds how long Open retries a management call that failed for a reason that
	// passes (a JetStream cluster still electing its leaders, a node restarting).
	openWait = time.Minute
)

// openBackoff is the wait between Open's attempts at one management call.
var openBackoff = backoff.Policy{Base: 250 * time.Millisecond, Max: 5 * time.Second, Jitter: 0.5}

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

	acMu     sync.Mutex
	acStream jetstream.Stream // of ActiveConnections, once looked up
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
	var st jetstream.Stream
	err = retryManagement(ctx, func(ctx context.Context) error {
		var err error
		st, err = js.CreateOrUpdateStream(ctx, DeleteStreamConfig(names, opts))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus: create or update stream %s: %w", names.DeleteStream, err)
	}
	b.DeleteStream = st
	return b, nil
}

func createBucket(ctx context.Context, js jetstream.JetStream, c jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	var kv jetstream.KeyValue
	err := retryManagement(ctx, func(ctx context.Context) error {
		var err error
		kv, err = js.CreateOrUpdateKeyValue(ctx, c)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("bus: create or update KV bucket %s: %w", c.Bucket, err)
	}
	return kv, nil
}

// retryManagement runs one JetStream management call, each attempt bounded by requestTimeout,
// and retries it with backoff for at most openWait (or until ctx ends) while it fails for a
// reason that passes: on a fresh or recovering cluster, the meta leader may not be elected yet
// and calls time out or answer 503. A configuration conflict or a refusal fails at once.
func retryManagement(ctx context.Context, call func(ctx context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, openWait)
	defer cancel()
	return backoff.Retry(ctx, openBackoff, func(ctx context.Context) error {
		actx, acancel := context.WithTimeout(ctx, requestTimeout)
		defer acancel()
		err := call(actx)
		if err != nil && !transientJetStreamError(ctx, err) {
			return backoff.Permanent(err)
		}
		return err
	}, nil)
}

// transientJetStreamError reports whether a management call that failed with err may succeed
// when tried again: it timed out (while ctx, the whole wait, is still alive), nobody answered,
// or JetStream said it is temporarily unavailable (HTTP-like code 503, or no peers/resources
// for the replicas yet).
func transientJetStreamError(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	var ae *jetstream.APIError
	if errors.As(err, &ae) {
		switch {
		case ae.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabled, ae.ErrorCode == jetstream.JSErrCodeJetStreamNotEnabledForAccount:
			return false // a 503 that waiting does not fix
		case ae.Code == 503:
			return true
		case ae.ErrorCode == 10005, // no suitable peers for placement
			ae.ErrorCode == 10008, // JetStream system temporarily unavailable
			ae.ErrorCode == 10023: // insufficient resources
			return true
		}
	}
	return false
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

// HeaderIncarnation is the delete-queue message header naming the incarnation of the session a
// queued deletion is for (see [Buckets.EnqueueSessionDelete]).
const HeaderIncarnation = "Bevygap-Incarnation"

// EnqueueSessionDelete durably queues the Edgegap deletion of a session (payload = session id,
// as the Rust services expect) and waits for JetStream's acknowledgement.
//
// incarnation names the life of the session id the deletion is for — the event that called for
// it, e.g. "ac-17" for the active_connections delete marker at revision 17 — or is "" when the
// caller cannot name one. It is sent in the [HeaderIncarnation] header and is part of the
// message id: several enqueues of the same id and incarnation within the stream's duplicate
// window (2 min by default) are stored once, so reapers and watchers on several matchmakers do
// not multiply the work, while a session id reused by a new session (a new incarnation) is
// queued again instead of being dropped as a duplicate.
func (b *Buckets) EnqueueSessionDelete(ctx context.Context, sessionID, incarnation string) error {
	if !ValidSessionID(sessionID) {
		return fmt.Errorf("%w %q", ErrBadSessionID, sessionID)
	}
	msg := nats.NewMsg(b.deleteSubject(sessionID))
	msg.Data = []byte(sessionID)
	id := "delete-" + sessionID
	if incarnation != "" {
		id += "-" + incarnation
		msg.Header.Set(HeaderIncarnation, incarnation)
	}
	var err error
	for attempt := 1; ; attempt++ {
		_, err = b.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(id))
		var apiErr *jetstream.APIError
		if err == nil || !errors.As(err, &apiErr) || apiErr.ErrorCode != errCodeDuplicateInProcess || attempt == duplicateInProcessAttempts {
			break
		}
		// The same deletion, enqueued by another matchmaker, is being stored (a replicated
		// stream): once it is, this one is acknowledged as its duplicate.
		if backoff.Sleep(ctx, duplicateInProcessWait) != nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("bus: enqueue delete of session %s: %w", sessionID, err)
	}
	return nil
}

// errCodeDuplicateInProcess is JetStream's "duplicate message id is in process" (409): a
// message with the same id is being stored by another publisher.
const errCodeDuplicateInProcess jetstream.ErrorCode = 10158

// duplicateInProcessAttempts and duplicateInProcessWait bound the wait for another publisher's
// message with the same id to be stored.
const (
	duplicateInProcessAttempts = 20
	duplicateInProcessWait     = 25 * time.Millisecond
)

// PurgeActiveConnection removes active_connections[sessionID] up to and including revision rev
// (the delete marker a game server left when the player left) from the bucket's stream, so that
// no watcher started later replays it; a newer entry of the key is kept. Unlike a KV purge, it
// leaves no marker behind. An invalid session id is refused with [ErrBadSessionID].
func (b *Buckets) PurgeActiveConnection(ctx context.Context, sessionID string, rev uint64) error {
	if !ValidSessionID(sessionID) { // a wildcard here would purge other keys
		return fmt.Errorf("%w %q", ErrBadSessionID, sessionID)
	}
	st, err := b.activeConnectionsStream(ctx)
	if err != nil {
		return err
	}
	subj := "$KV." + b.Names.ActiveConnections + "." + sessionID
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(subj), jetstream.WithPurgeSequence(rev+1)); err != nil {
		return fmt.Errorf("bus: purge %s[%s] up to revision %d: %w", b.Names.ActiveConnections, sessionID, rev, err)
	}
	return nil
}

// activeConnectionsStream returns the stream of the active_connections bucket, looked up once.
func (b *Buckets) activeConnectionsStream(ctx context.Context) (jetstream.Stream, error) {
	b.acMu.Lock()
	defer b.acMu.Unlock()
	if b.acStream != nil {
		return b.acStream, nil
	}
	st, err := b.JS.Stream(ctx, "KV_"+b.Names.ActiveConnections)
	if err != nil {
		return nil, fmt.Errorf("bus: stream of %s: %w", b.Names.ActiveConnections, err)
	}
	b.acStream = st
	return st, nil
}
