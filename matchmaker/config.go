package matchmaker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// Defaults of the reference matchmaker (bevygap_matchmaker/src/main.rs) and of our additions.
const (
	DefaultAppName        = "spacepit_server"
	DefaultAppVersion     = "v0.0.1"
	DefaultProtocolID     = 1982
	DefaultReadinessLimit = 60 * time.Second
	// DefaultClaimGrace is added to the readiness limit before an unclaimed session is reaped;
	// the reference reaped after MAX_SESSION_CREATION_SECONDS + 2 = 62 s.
	DefaultClaimGrace           = 2 * time.Second
	DefaultCertDigestWait       = time.Second
	DefaultMaxConcurrentCreates = 512
	DefaultPollInitial          = 500 * time.Millisecond
	DefaultPollMax              = 3 * time.Second
	DefaultDeleteWorkers        = 32
	DefaultDeleteRetryBase      = time.Second
	DefaultDeleteRetryMax       = 2 * time.Minute
	DefaultDeleteStuckAfter     = 10
	DefaultReconcileInterval    = time.Minute
	DefaultShutdownTimeout      = 15 * time.Second
	DefaultEdgegapCallTimeout   = 15 * time.Second
	// DefaultStatusInterval is how often the status snapshot is published (docs/status.md).
	DefaultStatusInterval = 5 * time.Second
	// DefaultPartyMax is the default most members of a party.
	DefaultPartyMax = 8
	// MaxPartyMax is the largest allowed PartyMax (a party is one KV entry of at most 16 KiB).
	MaxPartyMax = 32
	// DefaultPartyWaitLimit is how long a party member's request waits for the others by default.
	DefaultPartyWaitLimit = 60 * time.Second
	// DefaultWebhookSubject is where the webhook sink publishes every hook body (webhook.<name>).
	DefaultWebhookSubject = protocol.SubjectWebhookPrefix + ".*"
	// StreamQueueGroup is the base name of the queue group of the streaming request
	// subscription. The group actually used is per game and version, see [StreamQueueGroupFor]:
	// NATS merges queue subscriptions of the same group name across DIFFERENT subscriptions that
	// match one message (a wildcard and a literal subject, say), so one shared name would let a
	// matchmaker of one game take requests meant for another.
	StreamQueueGroup = "matchmaker_request_queue"
	// UnknownGameQueueGroup is the queue group of the opt-in matchmaker.request.*.* subscription
	// that answers requests for games nobody here serves ([Config.AnswerUnknownGames]). It never
	// equals a [StreamQueueGroupFor] name, so it is never merged with a game's own subscription.
	UnknownGameQueueGroup = "matchmaker_unknown_game_queue"
	// ServiceVersion is the version the gensession NATS service announces (the reference's).
	ServiceVersion = "0.0.1"
)

// Config is everything the matchmaker needs to know besides its connections ([Deps]). Fill it
// with [DefaultConfig] and override fields; the library never reads flags or the environment.
type Config struct {
	// AppName and AppVersion name the Edgegap application version this matchmaker serves. The
	// streaming subject is matchmaker.request.<AppName>.<AppVersion>.
	AppName    string
	AppVersion string
	// PrivateKey is the Lightyear/netcode private key shared with the game servers. It never
	// appears in logs or errors (netcode.Key redacts itself).
	PrivateKey netcode.Key
	// AllowZeroKey accepts an all-zero private key (the reference's default when the flag is
	// empty). Only for local development.
	AllowZeroKey bool
	// ProtocolID is the Lightyear protocol id written in every token.
	ProtocolID uint64
	// TokenFormat is the connect token byte order (lightyear-0.17 by default).
	TokenFormat netcode.Format
	// TokenExpireSeconds is the token lifetime (0 = netcode's default, 30 s).
	TokenExpireSeconds int64
	// SessionWebhookURL, when set, is sent with every session create so that Edgegap posts the
	// session's state changes to the webhook sink, which wakes the waiting request through NATS.
	// Without it readiness is found by polling only.
	SessionWebhookURL string
	// WebhookSubject is the NATS subject (wildcards allowed) the webhook sink publishes session
	// webhooks on. Every matchmaker subscribes to it without a queue group.
	WebhookSubject string
	// PortName picks the deployment port put in the token; "" takes the only port, or the first
	// port by name when there are several (the reference took an arbitrary one).
	PortName string
	// ReadinessLimit bounds the wait for a session to become ready; on expiry the session is
	// deleted and the client gets error 504. The reference used 60 s.
	ReadinessLimit time.Duration
	// ClaimGrace is added to ReadinessLimit before an unclaimed session is reaped (counted from
	// the last write of its unclaimed_sessions entry, which is refreshed when it becomes ready).
	ClaimGrace time.Duration
	// CertDigestWait is how long to wait for a fresh game server to publish its cert digest
	// when cert_digests has none yet (neither its deployment key nor an IP key written after
	// the session was created). 0 disables waiting (the digest is then the IP key's, or "").
	CertDigestWait time.Duration
	// MaxConcurrentCreates caps the session setups (create + readiness wait) in progress in this
	// process; further requests queue in FIFO order and streaming clients see their position.
	MaxConcurrentCreates int
	// PollInitial and PollMax shape the fallback readiness poll without working webhooks: the
	// interval starts at PollInitial and doubles up to PollMax. With healthy webhooks the
	// fallback polls only at 60 %, 80 % and 95 % of ReadinessLimit.
	PollInitial time.Duration
	PollMax     time.Duration
	// DeleteWorkers is how many Edgegap deletions run in parallel in this process.
	DeleteWorkers int
	// DeleteRetryBase and DeleteRetryMax shape the redelivery delay of a failed deletion.
	DeleteRetryBase time.Duration
	DeleteRetryMax  time.Duration
	// DeleteStuckAfter is the delivery count after which a failing deletion is reported as stuck
	// (error log + metric). It stays queued and keeps being retried.
	DeleteStuckAfter int
	// Reconcile turns on the periodic comparison of Edgegap's session list with the KV buckets.
	// Only sessions this deployment created are considered: those whose webhook_url (echoed by
	// Edgegap in the session list) equals SessionWebhookURL exactly. Such a session that no
	// bucket knows for longer than ReadinessLimit + ClaimGrace is deleted. Without a
	// SessionWebhookURL our sessions cannot be told from other apps' and reconciliation is
	// disabled (logged once at start).
	Reconcile         bool
	ReconcileInterval time.Duration
	// AnswerUnknownGames additionally subscribes matchmaker.request.*.* (queue group
	// UnknownGameQueueGroup) and answers requests for any other game or version with an error
	// (400 for an invalid name, 404 otherwise) instead of leaving them to NATS "no responders".
	// Requests for its own game are served only by the own-subject subscription. Caveat: this
	// matchmaker cannot know which games other matchmakers on the same NATS serve, so its 404
	// races their answers; turn it on only when this is the only game served on its NATS.
	// Off by default: only matchmaker.request.<AppName>.<AppVersion> is subscribed, like the
	// reference.
	AnswerUnknownGames bool
	// ShutdownTimeout bounds how long shutdown waits for in-flight requests before failing them.
	ShutdownTimeout time.Duration
	// EdgegapCallTimeout bounds each Edgegap API call.
	EdgegapCallTimeout time.Duration
	// StatusInterval is how often the matchmaker publishes its status snapshot on NATS subject
	// bevygap.status.matchmaker.<instance> for the front door's /status page (docs/status.md);
	// 0 means DefaultStatusInterval, negative turns it off.
	StatusInterval time.Duration
	// Buckets names and replicates the shared buckets (prefix, replicas).
	Buckets bus.BucketOptions
	// Queues are the match queues of this game version (docs/play-together.md); none by
	// default, and a request naming a queue then gets 404. Every matchmaker of a game version
	// must be given the same queues.
	Queues match.Config
	// EdgegapAccount is the fingerprint of the Edgegap account this matchmaker deletes sessions
	// on, recorded on the shared delete queue: a matchmaker of another account refuses to start
	// on the same queue (bus.Buckets.DeleteConsumerFor). "" derives it from Deps.Edgegap when
	// that is an *edgegap.Client (edgegap.Client.AccountFingerprint: base URL + a hash of the
	// API key); set it only for another EdgegapAPI implementation.
	EdgegapAccount string
	// PartyMax is the most members a party may have (0 means DefaultPartyMax).
	PartyMax int
	// PartyWaitLimit bounds how long a party member's request waits for the rest of the party:
	// once the leader's request has waited this long, every waiting member's request fails
	// with 408 (0 means DefaultPartyWaitLimit).
	PartyWaitLimit time.Duration
}

// DefaultConfig returns the reference's defaults plus ours.
func DefaultConfig() Config {
	return Config{
		AppName:              DefaultAppName,
		AppVersion:           DefaultAppVersion,
		ProtocolID:           DefaultProtocolID,
		TokenFormat:          netcode.FormatLightyear017,
		WebhookSubject:       DefaultWebhookSubject,
		ReadinessLimit:       DefaultReadinessLimit,
		ClaimGrace:           DefaultClaimGrace,
		CertDigestWait:       DefaultCertDigestWait,
		MaxConcurrentCreates: DefaultMaxConcurrentCreates,
		PollInitial:          DefaultPollInitial,
		PollMax:              DefaultPollMax,
		DeleteWorkers:        DefaultDeleteWorkers,
		DeleteRetryBase:      DefaultDeleteRetryBase,
		DeleteRetryMax:       DefaultDeleteRetryMax,
		DeleteStuckAfter:     DefaultDeleteStuckAfter,
		Reconcile:            true,
		ReconcileInterval:    DefaultReconcileInterval,
		ShutdownTimeout:      DefaultShutdownTimeout,
		EdgegapCallTimeout:   DefaultEdgegapCallTimeout,
		StatusInterval:       DefaultStatusInterval,
		PartyMax:             DefaultPartyMax,
		PartyWaitLimit:       DefaultPartyWaitLimit,
	}
}

// ErrConfig is returned (wrapped) by [New] for an unusable configuration.
var ErrConfig = errors.New("matchmaker: invalid configuration")

// Validate checks c and fills zero durations and counts with their defaults. [New] calls it;
// commands call it first to report a bad configuration before connecting to anything.
func (c *Config) Validate() error { return c.validate() }

// validate checks c and fills zero durations with defaults.
func (c *Config) validate() error {
	d := DefaultConfig()
	if c.AppName == "" || c.AppVersion == "" {
		return fmt.Errorf("%w: app name and app version are required", ErrConfig)
	}
	if strings.ContainsAny(c.AppName+c.AppVersion, " \t\r\n*>") || strings.Contains(c.AppName, ".") {
		return fmt.Errorf("%w: app name and version must not contain white space, '*' or '>' (and the app name no '.')", ErrConfig)
	}
	if err := netcode.ValidateKey(c.PrivateKey, c.AllowZeroKey); err != nil {
		return fmt.Errorf("%w: lightyear private key: %v", ErrConfig, err)
	}
	if c.SessionWebhookURL != "" {
		u, err := url.Parse(c.SessionWebhookURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("%w: session webhook url must be an http(s) URL", ErrConfig)
		}
	}
	setDefault(&c.WebhookSubject, d.WebhookSubject)
	setDefault(&c.ReadinessLimit, d.ReadinessLimit)
	setDefault(&c.ClaimGrace, d.ClaimGrace)
	setDefault(&c.MaxConcurrentCreates, d.MaxConcurrentCreates)
	setDefault(&c.PollInitial, d.PollInitial)
	setDefault(&c.PollMax, d.PollMax)
	setDefault(&c.DeleteWorkers, d.DeleteWorkers)
	setDefault(&c.DeleteRetryBase, d.DeleteRetryBase)
	setDefault(&c.DeleteRetryMax, d.DeleteRetryMax)
	setDefault(&c.DeleteStuckAfter, d.DeleteStuckAfter)
	setDefault(&c.ReconcileInterval, d.ReconcileInterval)
	setDefault(&c.ShutdownTimeout, d.ShutdownTimeout)
	setDefault(&c.EdgegapCallTimeout, d.EdgegapCallTimeout)
	setDefault(&c.StatusInterval, d.StatusInterval)
	setDefault(&c.PartyMax, DefaultPartyMax)
	setDefault(&c.PartyWaitLimit, DefaultPartyWaitLimit)
	if c.PartyMax < 1 || c.PartyMax > MaxPartyMax {
		return fmt.Errorf("%w: party max must be 1 to %d members", ErrConfig, MaxPartyMax)
	}
	if c.PartyWaitLimit < 0 {
		return fmt.Errorf("%w: party wait limit must not be negative", ErrConfig)
	}
	if c.PollMax < c.PollInitial {
		c.PollMax = c.PollInitial
	}
	if err := c.Queues.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrConfig, err)
	}
	if c.CertDigestWait < 0 {
		c.CertDigestWait = 0
	}
	return nil
}

// StreamQueueGroupFor returns the queue group of the own-subject subscription of a matchmaker
// serving app and version: "matchmaker_request_queue.<app>.<version>". Matchmakers of the same
// game and version share the requests; no other subscription uses the name.
func StreamQueueGroupFor(app, version string) string {
	return StreamQueueGroup + "." + app + "." + version
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// EdgegapAPI is the part of the Edgegap REST API the matchmaker uses. *edgegap.Client implements
// it, against the real API or the simulator. HTTP errors are *edgegap.APIError values (found
// with errors.As), so that errors.Is(err, edgegap.ErrNotFound) and edgegap.StatusCode work.
type EdgegapAPI interface {
	// GetApp returns the application (GET /v1/app/{app}).
	GetApp(ctx context.Context, app string) (*edgegap.Application, error)
	// GetAppVersion returns an app version (GET /v1/app/{app}/version/{version}).
	GetAppVersion(ctx context.Context, app, version string) (*edgegap.AppVersion, error)
	// CreateSession creates a session (POST /v1/session); it must not be retried blindly.
	CreateSession(ctx context.Context, req edgegap.SessionCreateRequest) (*edgegap.SessionCreated, error)
	// GetSession returns a session; a deleted one gives an error matching edgegap.ErrNotFound.
	GetSession(ctx context.Context, sessionID string) (*edgegap.Session, error)
	// DeleteSession deletes a session; 404 and 410 match edgegap.ErrNotFound.
	DeleteSession(ctx context.Context, sessionID string) (*edgegap.SessionDeleted, error)
	// ListAllSessions lists every session of the account (all pages).
	ListAllSessions(ctx context.Context) ([]edgegap.SessionSummary, error)
}

// spareGetter is implemented by an EdgegapAPI that can look at a session only when its rate
// limit has a call to spare at once (edgegap.Client.GetSessionNow; otherwise an error matching
// edgegap.ErrNoSpareCall). With it, the matchmaker looks at each session right after creating it.
type spareGetter interface {
	GetSessionNow(ctx context.Context, sessionID string) (*edgegap.Session, error)
}

var _ spareGetter = (*edgegap.Client)(nil)

// Deps are the matchmaker's connections to the outside world.
type Deps struct {
	// NATS is a connected client (see bus.Connect). The matchmaker does not close it.
	NATS *nats.Conn
	// Edgegap is the Edgegap API (usually *edgegap.Client). Its calls are counted in
	// bevygap_matchmaker_edgegap_calls_total when the client was built with
	// edgegap.WithObserver([EdgegapObserver](Registry)).
	Edgegap EdgegapAPI
	// Logger receives structured logs; nil means slog.Default().
	Logger *slog.Logger
	// Registry receives the matchmaker's Prometheus metrics; nil means a fresh private registry
	// nobody reads. The global default registry is never used.
	Registry prometheus.Registerer
}
