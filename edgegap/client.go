package edgegap

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/bevygap-go/bevygap/buildinfo"
	"github.com/bevygap-go/bevygap/internal/backoff"
	"github.com/bevygap-go/bevygap/internal/logkey"
)

// DefaultBaseURL is the Edgegap API used when NewClient gets an empty base URL.
const DefaultBaseURL = "https://api.edgegap.com"

// EnvAPIURL and EnvAPIKey are the environment variables that configure the client (read by the
// commands, never by this package).
const (
	EnvAPIURL = "EDGEGAP_API_URL"
	EnvAPIKey = "EDGEGAP_API_KEY"
)

// Defaults of the client options.
const (
	DefaultTimeout     = 10 * time.Second
	DefaultMaxAttempts = 4
	DefaultBackoffBase = 200 * time.Millisecond
	DefaultBackoffMax  = 5 * time.Second
	// DefaultRateLimit and DefaultRateBurst bound requests per endpoint; Edgegap documents
	// per-route limits of 20/s and more.
	DefaultRateLimit = rate.Limit(10)
	DefaultRateBurst = 20
	// maxBody bounds how much of a response body is read.
	maxBody = 4 << 20
)

// Client calls the Edgegap REST API (or the simulator in package edgegapsim, which serves the
// same API). It is safe for concurrent use.
//
// Every call honours ctx, has a per-attempt timeout, waits for the per-endpoint rate limiter and
// reports each attempt to the observer (see WithObserver). GET and DELETE calls are retried with
// exponential backoff and equal jitter on network errors, 429 (waiting at least Retry-After)
// and 5xx; session create is never retried, because a blind retry could create a second
// session. Errors from the API are *APIError values; test them with errors.Is and the Err*
// sentinels.
type Client struct {
	baseURL     string
	apiKey      string
	hc          *http.Client
	userAgent   string
	timeout     time.Duration
	maxAttempts int
	backoff     backoff.Policy
	limit       rate.Limit
	burst       int
	limiters    map[Endpoint]*rate.Limiter
	observer    func(CallEvent)
	logger      *slog.Logger
	// bodies holds *bytes.Buffer for reading response bodies (decoding copies what it keeps).
	bodies sync.Pool
	// hdr holds the request header values that never change (read-only once built).
	hdr struct{ apiKey, userAgent, json []string }
}

// maxIdleConnsPerHost is how many idle keep-alive connections the default HTTP client keeps to
// the API: concurrent session requests all go to one host, and net/http's default of 2 would
// open (and, for Edgegap, TLS-handshake) a new connection for nearly every call under load.
const maxIdleConnsPerHost = 128

// newHTTPClient returns the default HTTP client: net/http's default transport settings
// (proxy from the environment, dial and TLS timeouts, HTTP/2), with keep-alive connections
// for many concurrent calls.
func newHTTPClient() *http.Client {
	dt, ok := http.DefaultTransport.(*http.Transport)
	if !ok {
		return &http.Client{} // replaced by the program: use it as it is
	}
	tr := dt.Clone()
	tr.MaxIdleConns = max(tr.MaxIdleConns, maxIdleConnsPerHost)
	tr.MaxIdleConnsPerHost = maxIdleConnsPerHost
	return &http.Client{Transport: tr}
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient sets the HTTP client (default: a client with no overall timeout, keeping up to
// 128 idle keep-alive connections to the API; the per-attempt timeout comes from WithTimeout).
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithTimeout sets the timeout of each HTTP attempt (default DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(c *Client) { c.timeout = d } }

// WithRetries sets how many attempts a retryable call makes at most (1 = no retry) and the
// bounds of the exponential backoff between attempts (each wait is between half and all of
// base·2ⁿ, at most max, and never shorter than the server's Retry-After).
func WithRetries(maxAttempts int, base, max time.Duration) Option {
	return func(c *Client) {
		c.maxAttempts = maxAttempts
		c.backoff.Base, c.backoff.Max = base, max
	}
}

// WithRateLimit sets the client-side rate limit, per endpoint (rate.Inf disables it).
func WithRateLimit(r rate.Limit, burst int) Option {
	return func(c *Client) { c.limit, c.burst = r, burst }
}

// WithObserver registers fn to be called after every HTTP attempt (a retried call reports each
// attempt), e.g. to feed Prometheus counters and histograms; it is the only way the client
// reports its calls. fn must be fast and safe for concurrent use.
func WithObserver(fn func(CallEvent)) Option { return func(c *Client) { c.observer = fn } }

// WithLogger sets the logger for retries (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *Client) { c.logger = l } }

// NewClient returns a client for the Edgegap API at baseURL (DefaultBaseURL if empty; a trailing
// slash is dropped). apiKey is sent verbatim as the authorization header, so it includes the
// "token " prefix, exactly like EDGEGAP_API_KEY. apiKey may be empty for a client that only makes
// the in-container calls (GetContext, SelfStop), which carry their own tokens.
func NewClient(baseURL, apiKey string, opts ...Option) *Client {
	if baseURL == "" {
		baseURL = DefaultBaseURL
	}
	c := &Client{
		baseURL:     strings.TrimRight(baseURL, "/"),
		apiKey:      apiKey,
		hc:          newHTTPClient(),
		userAgent:   buildinfo.UserAgent(),
		timeout:     DefaultTimeout,
		maxAttempts: DefaultMaxAttempts,
		backoff:     backoff.Policy{Base: DefaultBackoffBase, Max: DefaultBackoffMax},
		limit:       DefaultRateLimit,
		burst:       DefaultRateBurst,
		logger:      slog.Default(),
	}
	for _, o := range opts {
		o(c)
	}
	if c.maxAttempts < 1 {
		c.maxAttempts = 1
	}
	c.backoff.Jitter = 0.5 // "equal jitter": half fixed, half random
	if c.burst < 1 {
		c.burst = 1
	}
	c.hdr.apiKey = []string{c.apiKey}
	c.hdr.userAgent = []string{c.userAgent}
	c.hdr.json = []string{"application/json"}
	c.limiters = make(map[Endpoint]*rate.Limiter)
	for _, e := range endpoints() {
		c.limiters[e] = rate.NewLimiter(c.limit, c.burst)
	}
	return c
}

// String describes the client without its API key.
func (c *Client) String() string { return "edgegap.Client(" + c.baseURL + ")" }

// GoString describes the client without its API key.
func (c *Client) GoString() string { return c.String() }

// GetApp fetches an application (GET /v1/app/{app}).
func (c *Client) GetApp(ctx context.Context, app string) (*Application, error) {
	var out Application
	err := c.do(ctx, request{endpoint: EndpointAppGet, method: http.MethodGet,
		url: c.baseURL + "/v1/app/" + url.PathEscape(app), auth: c.apiKey}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// GetAppVersion fetches an app version (GET /v1/app/{app}/version/{version}).
func (c *Client) GetAppVersion(ctx context.Context, app, version string) (*AppVersion, error) {
	var out AppVersion
	err := c.do(ctx, request{endpoint: EndpointAppVersionGet, method: http.MethodGet,
		url:  c.baseURL + "/v1/app/" + url.PathEscape(app) + "/version/" + url.PathEscape(version),
		auth: c.apiKey}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// CreateSession asks Edgegap for a session (POST /v1/session). It is never retried: on an
// error other than an *APIError the caller cannot know whether a session was created, and
// should reconcile with ListSessions.
func (c *Client) CreateSession(ctx context.Context, req SessionCreateRequest) (*SessionCreated, error) {
	if req.AppName == "" {
		return nil, errors.New("edgegap: session create: app_name is required")
	}
	body, err := AppendJSON(make([]byte, 0, 256), req) // json.Marshal's bytes
	if err != nil {
		return nil, fmt.Errorf("edgegap: session create: encode: %w", err)
	}
	var out SessionCreated
	err = c.do(ctx, request{endpoint: EndpointSessionCreate, method: http.MethodPost,
		url: c.baseURL + "/v1/session", auth: c.apiKey, body: body, noRetry: true}, &out)
	if err != nil {
		return nil, err
	}
	if out.SessionID == "" {
		return nil, &APIError{Endpoint: EndpointSessionCreate, StatusCode: http.StatusOK,
			Message: "response without session_id"}
	}
	return &out, nil
}

// GetSession fetches a session (GET /v1/session/{id}). A deleted session, or one whose
// deployment was terminated, gives an error matching ErrNotFound.
func (c *Client) GetSession(ctx context.Context, sessionID string) (*Session, error) {
	var out Session
	err := c.do(ctx, request{endpoint: EndpointSessionGet, method: http.MethodGet,
		url: c.baseURL + "/v1/session/" + url.PathEscape(sessionID), auth: c.apiKey}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// GetSessionNow is GetSession made only if the client's rate limiter has a call to spare at
// once, and not retried: with none to spare it returns an error matching ErrNoSpareCall without
// calling Edgegap. It is for checks that are worth a call only when the call costs no one a wait
// (the matchmaker's look at a session right after creating it).
func (c *Client) GetSessionNow(ctx context.Context, sessionID string) (*Session, error) {
	var out Session
	err := c.do(ctx, request{endpoint: EndpointSessionGet, method: http.MethodGet,
		url: c.baseURL + "/v1/session/" + url.PathEscape(sessionID), auth: c.apiKey, spareOnly: true}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// ListOptions selects a page of a list call; zero values mean Edgegap's defaults.
type ListOptions struct {
	Page  int
	Limit int
}

// ListSessions fetches one page of the app's sessions (GET /v1/sessions).
func (c *Client) ListSessions(ctx context.Context, opts ListOptions) (*SessionList, error) {
	q := url.Values{}
	if opts.Page > 0 {
		q.Set("page", strconv.Itoa(opts.Page))
	}
	if opts.Limit > 0 {
		q.Set("limit", strconv.Itoa(opts.Limit))
	}
	u := c.baseURL + SessionListPath
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var out SessionList
	if err := c.do(ctx, request{endpoint: EndpointSessionList, method: http.MethodGet, url: u,
		auth: c.apiKey}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// maxListPages bounds ListAllSessions against a server that always claims a next page.
const maxListPages = 1000

// ListAllSessions walks every page of ListSessions (for reconciliation) and returns all
// sessions.
func (c *Client) ListAllSessions(ctx context.Context) ([]SessionSummary, error) {
	var all []SessionSummary
	for page := 1; page <= maxListPages; page++ {
		l, err := c.ListSessions(ctx, ListOptions{Page: page, Limit: 100})
		if err != nil {
			return nil, err
		}
		all = append(all, l.Data...)
		if l.Pagination == nil || !l.Pagination.HasNext || len(l.Data) == 0 {
			return all, nil
		}
	}
	return all, fmt.Errorf("edgegap: session list: more than %d pages", maxListPages)
}

// DeleteSession deletes a session (DELETE /v1/session/{id}). An error matching ErrNotFound
// (404 or 410) means the session is already gone, which callers usually treat as success.
func (c *Client) DeleteSession(ctx context.Context, sessionID string) (*SessionDeleted, error) {
	var out SessionDeleted
	err := c.do(ctx, request{endpoint: EndpointSessionDelete, method: http.MethodDelete,
		url: c.baseURL + "/v1/session/" + url.PathEscape(sessionID), auth: c.apiKey}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// DeploymentContext is the answer of the in-container context API.
type DeploymentContext struct {
	// Deployment is the typed view of the context.
	Deployment Deployment
	// Raw is the JSON object exactly as served, e.g. to republish it on gameserver.contexts.
	Raw json.RawMessage
}

// GetContext fetches a deployment's context from inside its container: GET contextURL
// (ARBITRIUM_CONTEXT_URL) with the raw contextToken (ARBITRIUM_CONTEXT_TOKEN, no "token "
// prefix) as authorization. The client's base URL and API key are not used.
func (c *Client) GetContext(ctx context.Context, contextURL, contextToken string) (*DeploymentContext, error) {
	var raw json.RawMessage
	if err := c.do(ctx, request{endpoint: EndpointContextGet, method: http.MethodGet,
		url: contextURL, auth: contextToken}, &raw); err != nil {
		return nil, err
	}
	out := DeploymentContext{Raw: raw}
	if err := json.Unmarshal(raw, &out.Deployment); err != nil {
		return nil, fmt.Errorf("edgegap %s: decode: %w", EndpointContextGet, err)
	}
	return &out, nil
}

// SelfStop stops the calling deployment from inside its container: DELETE deleteURL
// (ARBITRIUM_DELETE_URL) with deleteToken (ARBITRIUM_DELETE_TOKEN) as authorization.
func (c *Client) SelfStop(ctx context.Context, deleteURL, deleteToken string) (*StopResponse, error) {
	var out StopResponse
	if err := c.do(ctx, request{endpoint: EndpointSelfStop, method: http.MethodDelete,
		url: deleteURL, auth: deleteToken}, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// request is one logical API call.
type request struct {
	endpoint Endpoint
	method   string
	url      string
	auth     string
	body     []byte
	noRetry  bool
	// spareOnly: one attempt, made only if the rate limiter allows it at once (ErrNoSpareCall).
	spareOnly bool
}

// do performs r with rate limiting, timeouts and retries, decoding a 2xx body into out.
func (c *Client) do(ctx context.Context, r request, out any) error {
	attempts := c.maxAttempts
	if r.noRetry || r.spareOnly {
		attempts = 1
	}
	lim := c.limiters[r.endpoint]
	// A spare-only call takes its one attempt's call from the limiter now, or is not made.
	if r.spareOnly && !lim.Allow() {
		return fmt.Errorf("edgegap %s: %w", r.endpoint, ErrNoSpareCall)
	}
	for attempt := 1; ; attempt++ {
		if !r.spareOnly {
			if err := lim.Wait(ctx); err != nil {
				return fmt.Errorf("edgegap %s: rate limiter: %w", r.endpoint, contextErr(ctx, err))
			}
		}
		start := time.Now()
		status, retryAfter, err := c.attempt(ctx, r, out)
		retry := attempt < attempts && retryable(ctx, status, err)
		var wait time.Duration
		if retry {
			// The wait before the next attempt: the policy's, but never shorter than the
			// server asked for, and no retry at all if it would outlast the caller's deadline.
			wait = max(c.backoff.Delay(attempt), retryAfter)
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
				retry = false
			}
		}
		if c.observer != nil {
			c.observer(CallEvent{Endpoint: r.endpoint, Method: r.method, StatusCode: status,
				Outcome: outcomeOf(ctx, status, err), Attempt: attempt, Duration: time.Since(start),
				Err: err, WillRetry: retry})
		}
		if err == nil || !retry {
			return err
		}
		c.logger.DebugContext(ctx, "edgegap call failed, retrying", logkey.Endpoint, r.endpoint,
			logkey.Attempt, attempt, logkey.RetryIn, wait, logkey.Err, err)
		if serr := backoff.Sleep(ctx, wait); serr != nil {
			return fmt.Errorf("edgegap %s: %w (last error: %w)", r.endpoint, serr, err)
		}
	}
}

// errDecode marks a 2xx answer whose body does not decode.
var errDecode = errors.New("decode response")

// attempt makes one HTTP request. It returns the status (0 if none arrived), the Retry-After
// delay, and an error (an *APIError for 4xx/5xx).
func (c *Client) attempt(ctx context.Context, r request, out any) (int, time.Duration, error) {
	// The attempt's timeout; none of its own when the caller's deadline comes first anyway
	// (the matchmaker's calls have one), which spares a context and a timer per call.
	actx := ctx
	if dl, ok := ctx.Deadline(); !ok || time.Until(dl) > c.timeout {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, c.timeout)
		defer cancel()
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(actx, r.method, r.url, body)
	if err != nil {
		return 0, 0, fmt.Errorf("edgegap %s: build request: %w", r.endpoint, err)
	}
	// The header is built in one go; the values that never change are the client's own
	// slices, shared by its requests (net/http only reads a request's header).
	h := make(http.Header, 4)
	if r.auth != "" {
		if r.auth == c.apiKey {
			h["Authorization"] = c.hdr.apiKey
		} else {
			h["Authorization"] = []string{r.auth}
		}
	}
	h["User-Agent"] = c.hdr.userAgent
	h["Accept"] = c.hdr.json
	if r.body != nil {
		h["Content-Type"] = c.hdr.json
	}
	req.Header = h
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, 0, fmt.Errorf("edgegap %s: %w", r.endpoint, ctx.Err())
		}
		// The URL may carry nothing secret, but keep the error short and free of headers.
		return 0, 0, fmt.Errorf("edgegap %s: %w", r.endpoint, unwrapURLError(err))
	}
	defer resp.Body.Close()
	buf, _ := c.bodies.Get().(*bytes.Buffer)
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	defer c.putBody(buf)
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, maxBody))
	data := buf.Bytes()
	if err != nil {
		if ctx.Err() != nil {
			return resp.StatusCode, 0, fmt.Errorf("edgegap %s: %w", r.endpoint, ctx.Err())
		}
		return 0, 0, fmt.Errorf("edgegap %s: read body: %w", r.endpoint, err)
	}
	if resp.StatusCode >= 400 {
		return resp.StatusCode, retryAfter(resp.Header.Get("Retry-After")), &APIError{
			Endpoint:   r.endpoint,
			StatusCode: resp.StatusCode,
			Message:    errorMessage(data),
			RetryAfter: retryAfter(resp.Header.Get("Retry-After")),
		}
	}
	if out != nil {
		if err := decodeJSON(data, out); err != nil {
			return resp.StatusCode, 0, fmt.Errorf("edgegap %s: %w: %w", r.endpoint, errDecode, err)
		}
	}
	return resp.StatusCode, 0, nil
}

// putBody returns a response buffer to the pool, unless an unusually large body grew it.
func (c *Client) putBody(b *bytes.Buffer) {
	if b.Cap() > 64<<10 {
		return
	}
	b.Reset()
	c.bodies.Put(b)
}

// unwrapURLError drops the *url.Error wrapper (which repeats method and URL).
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// contextErr prefers the context's own error over a wrapper's.
func contextErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// retryable reports whether an attempt that ended with status/err may be retried.
func retryable(ctx context.Context, status int, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if err == nil {
		return false
	}
	if errors.Is(err, errDecode) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.StatusCode {
		case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
			http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	return status == 0 // transport error or attempt timeout
}

// retryAfter parses a Retry-After header (seconds or HTTP date); 0 if absent or invalid.
func retryAfter(h string) time.Duration {
	if h == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(h)); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := time.Until(t); d > 0 {
			return d
		}
	}
	return 0
}

// errorMessage extracts Edgegap's "message" from an error body, or a short excerpt of it.
func errorMessage(data []byte) string {
	var eb ErrorBody
	if json.Unmarshal(data, &eb) == nil && eb.Message != "" {
		return eb.Message
	}
	s := strings.TrimSpace(string(data))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
