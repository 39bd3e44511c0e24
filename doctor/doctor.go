// Package doctor checks a bevygap installation end to end and explains each finding in plain
// words: NATS reachable, TLS, credentials and permissions of each role, JetStream, the buckets
// and the delete stream against the configuration bus would create, the Edgegap API key, app
// and version, the clock against Edgegap's, the webhook path, the Lightyear private key, and a
// matchmaker serving each game. `bevygap doctor` is its command; this package never reads the
// environment or flags.
//
// Every check is read-only or leaves nothing behind, and none creates an Edgegap session:
//   - the matchmaker check sends a request without client_ip, which a matchmaker acknowledges
//     and answers with error 400 (counted in its metrics as a bad request);
//   - the webhook check posts {"bevygap_doctor":"<nonce>"}, which the matchmaker ignores (it
//     has no session_id);
//   - the permission checks subscribe for a moment and write one probe key (deleted at once)
//     only to buckets nobody watches for it: sessions_eg2ly (matchmaker) and cert_digests (game
//     server). What they cannot try without side effects is said in their detail.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// Status is the verdict of one check.
type Status string

// The verdicts. Only StatusFail makes a report fail.
const (
	StatusOK   Status = "ok"
	StatusWarn Status = "warn"
	StatusFail Status = "fail"
	// StatusSkip is a check that could not run (it needs an earlier one that failed) or was
	// switched off.
	StatusSkip Status = "skip"
)

// Result is the outcome of one check.
type Result struct {
	// ID names the check, e.g. "nats.connect" or "bucket.sessions_ly2eg"; stable across versions.
	ID string `json:"id"`
	// Title says what was checked, in a few words.
	Title string `json:"title"`
	// Status is the verdict.
	Status Status `json:"status"`
	// Detail explains what was found, in plain words.
	Detail string `json:"detail"`
	// Fix says how to repair a failure or warning ("" when there is nothing to do).
	Fix string `json:"fix,omitempty"`
	// DurationMS is how long the check took, in milliseconds.
	DurationMS int64 `json:"duration_ms"`
}

// Summary counts the results by status.
type Summary struct {
	OK   int `json:"ok"`
	Warn int `json:"warn"`
	Fail int `json:"fail"`
	Skip int `json:"skip"`
}

// Report is the result of [Run].
type Report struct {
	// OK is true when no check failed (warnings allowed).
	OK bool `json:"ok"`
	// Summary counts the checks by status.
	Summary Summary `json:"summary"`
	// Checks are the results, in the order they ran.
	Checks []Result `json:"checks"`
}

// Find returns the result with the given id, or false.
func (r Report) Find(id string) (Result, bool) {
	for _, c := range r.Checks {
		if c.ID == id {
			return c, true
		}
	}
	return Result{}, false
}

// Game is one game the matchmaker serves: an Edgegap app name and version.
type Game struct {
	Name, Version string
}

// String is "name/version".
func (g Game) String() string { return g.Name + "/" + g.Version }

// Roles whose NATS permissions the doctor knows how to try (docs/deploy.md).
const (
	RoleMatchmaker  = "matchmaker"
	RoleHTTPD       = "httpd"
	RoleWebhookSink = "webhook-sink"
	RoleGameServer  = "gameserver"
)

// Roles lists the known roles, in the order they are checked.
func Roles() []string {
	return []string{RoleMatchmaker, RoleHTTPD, RoleWebhookSink, RoleGameServer}
}

// RoleCredentials are the NATS credentials of one role, to check its permissions with its own
// user instead of the main one.
type RoleCredentials struct {
	Role        string
	User        string
	Password    string
	InboxPrefix string
}

// Config says what to check. The command fills it from the same flags and environment as the
// services.
type Config struct {
	// NATS is how to reach NATS (the services' NATS_* settings).
	NATS bus.Config
	// Role is the role whose permissions are tried with NATS's credentials ("" = matchmaker;
	// "none" = do not try).
	Role string
	// RoleCredentials are other roles' credentials, each tried with its own connection.
	RoleCredentials []RoleCredentials
	// Buckets are the matchmaker's bucket options (prefix, replicas, storage).
	Buckets bus.BucketOptions

	// EdgegapURL and EdgegapKey are EDGEGAP_API_URL ("" = api.edgegap.com) and EDGEGAP_API_KEY.
	EdgegapURL, EdgegapKey string
	// Games are the games (app name and version) the matchmakers serve; at least one.
	Games []Game

	// PrivateKey is the Lightyear private key as given to the matchmaker (text; never printed).
	PrivateKey string
	// AllowZeroKey is the matchmaker's --allow-zero-key.
	AllowZeroKey bool

	// WebhookURL is the matchmaker's --session-webhook-url ("" = none).
	WebhookURL string
	// WebhookSubject is the matchmaker's --webhook-subject ("" = webhook.*, its default).
	WebhookSubject string

	// Skip lists check groups not to run: "key", "nats", "permissions", "matchmaker",
	// "edgegap", "clock", "webhook".
	Skip []string

	// CallTimeout bounds each network call (0 = 5 s). The caller's ctx bounds the whole run.
	CallTimeout time.Duration
	// MaxClockSkew is the skew that fails the clock check (0 = 10 s); a third of it warns.
	MaxClockSkew time.Duration
	// HTTPClient is used for Edgegap and the webhook (nil = a plain client).
	HTTPClient *http.Client
}

// Check groups, for Config.Skip.
const (
	GroupKey         = "key"
	GroupNATS        = "nats"
	GroupPermissions = "permissions"
	GroupMatchmaker  = "matchmaker"
	GroupEdgegap     = "edgegap"
	GroupClock       = "clock"
	GroupWebhook     = "webhook"
)

// Groups lists the check groups.
func Groups() []string {
	return []string{GroupKey, GroupNATS, GroupPermissions, GroupMatchmaker, GroupEdgegap, GroupClock, GroupWebhook}
}

const (
	defaultCallTimeout  = 5 * time.Second
	defaultMaxClockSkew = 10 * time.Second
)

// runner holds one run's state.
type runner struct {
	cfg     Config
	results []Result
	skip    map[string]bool
	hc      *http.Client
	nonce   string
	nc      *nats.Conn // the main NATS connection, nil when it failed
}

// Run runs every check and returns the report. It never returns early on a failure: checks
// that depend on a failed one are reported as skipped. ctx bounds the whole run; each network
// call also has cfg.CallTimeout.
func Run(ctx context.Context, cfg Config) Report {
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = defaultCallTimeout
	}
	if cfg.MaxClockSkew <= 0 {
		cfg.MaxClockSkew = defaultMaxClockSkew
	}
	if cfg.WebhookSubject == "" {
		cfg.WebhookSubject = protocol.SubjectWebhookPrefix + ".*" // the matchmaker's default
	}
	if cfg.Role == "" {
		cfg.Role = RoleMatchmaker
	}
	r := &runner{cfg: cfg, skip: map[string]bool{}, hc: cfg.HTTPClient, nonce: nonce()}
	if r.hc == nil {
		r.hc = &http.Client{}
	}
	for _, g := range cfg.Skip {
		r.skip[g] = true
	}

	r.group(GroupKey, "key", "Lightyear private key", r.checkKey)
	r.runNATS(ctx)
	if r.nc != nil {
		defer r.nc.Close()
	}
	r.runEdgegap(ctx)
	r.runWebhook(ctx)
	return r.report()
}

// check runs one check and records its result.
func (r *runner) check(id, title string, f func() Result) {
	start := time.Now()
	res := f()
	res.ID, res.Title = id, title
	res.DurationMS = time.Since(start).Milliseconds()
	r.results = append(r.results, res)
}

// group runs a check unless its group is skipped.
func (r *runner) group(group, id, title string, f func() Result) {
	if r.skip[group] {
		r.skipped(id, title, "skipped (--skip "+group+")")
		return
	}
	r.check(id, title, f)
}

// skipped records a check that did not run.
func (r *runner) skipped(id, title, why string) {
	r.results = append(r.results, Result{ID: id, Title: title, Status: StatusSkip, Detail: why})
}

func (r *runner) report() Report {
	rep := Report{Checks: r.results}
	for _, c := range r.results {
		switch c.Status {
		case StatusOK:
			rep.Summary.OK++
		case StatusWarn:
			rep.Summary.Warn++
		case StatusFail:
			rep.Summary.Fail++
		case StatusSkip:
			rep.Summary.Skip++
		}
	}
	rep.OK = rep.Summary.Fail == 0
	return rep
}

func ok(format string, a ...any) Result {
	return Result{Status: StatusOK, Detail: fmt.Sprintf(format, a...)}
}

func warn(detail, fix string) Result { return Result{Status: StatusWarn, Detail: detail, Fix: fix} }

func fail(detail, fix string) Result { return Result{Status: StatusFail, Detail: detail, Fix: fix} }

// checkKey parses and validates the private key, never printing it.
func (r *runner) checkKey() Result {
	text := strings.TrimSpace(r.cfg.PrivateKey)
	const fixGive = `give the matchmaker the game servers' key: BEVYGAP_MATCHMAKER_LIGHTYEAR_PRIVATE_KEY="1,2,...,32" (32 bytes as decimal list, 64 hex characters or base64); a new one: openssl rand -hex 32`
	if text == "" {
		if r.cfg.AllowZeroKey {
			return warn("no private key: with --allow-zero-key the matchmaker uses the all-zero key, so anyone can mint tokens your game servers accept",
				"only for local development; in production give a real key and drop --allow-zero-key")
		}
		return fail("no Lightyear private key given: the matchmaker refuses to start without one", fixGive)
	}
	k, err := netcode.ParseKey(text)
	if err != nil {
		// err describes the format problem; it never contains the key bytes.
		return fail("the private key cannot be read: "+err.Error(), fixGive)
	}
	if err := netcode.ValidateKey(k, r.cfg.AllowZeroKey); err != nil {
		return fail("the private key is all zeros: "+err.Error(), fixGive)
	}
	if k.IsZero() {
		return warn("the private key is all zeros (allowed by --allow-zero-key): anyone can mint tokens your game servers accept",
			"only for local development; in production give a real key")
	}
	return ok("a valid 32-byte key (not shown); the game servers must have the same one, which the doctor cannot see")
}

// WriteText writes the report for a terminal: one line per check, the fix under each failure
// or warning, and a summary line.
func WriteText(w io.Writer, rep Report) error {
	width := 0
	for _, c := range rep.Checks {
		width = max(width, len(c.ID))
	}
	var b strings.Builder
	for _, c := range rep.Checks {
		label := map[Status]string{StatusOK: "ok", StatusWarn: "WARN", StatusFail: "FAIL", StatusSkip: "skip"}[c.Status]
		fmt.Fprintf(&b, "%-4s  %-*s  %s: %s\n", label, width, c.ID, c.Title, c.Detail)
		if c.Fix != "" {
			fmt.Fprintf(&b, "      %-*s  fix: %s\n", width, "", c.Fix)
		}
	}
	verdict := "nothing failed"
	if !rep.OK {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "\n%s: %d ok, %d warnings, %d failed, %d skipped\n", verdict, rep.Summary.OK, rep.Summary.Warn, rep.Summary.Fail, rep.Summary.Skip)
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one indented JSON object (the shape of [Report]).
func WriteJSON(w io.Writer, rep Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
