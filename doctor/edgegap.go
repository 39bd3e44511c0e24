package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/bevygap-go/bevygap/edgegap"
)

// dateSample is one HTTP answer's Date header with the local times around the request.
type dateSample struct {
	sent, received, date time.Time
}

// dateRecorder is an http.RoundTripper that keeps the Date header of every answer, for the
// clock check.
type dateRecorder struct {
	next    http.RoundTripper
	mu      sync.Mutex
	samples []dateSample
}

func (d *dateRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	sent := time.Now()
	resp, err := d.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	if t, perr := http.ParseTime(resp.Header.Get("Date")); perr == nil {
		d.mu.Lock()
		d.samples = append(d.samples, dateSample{sent: sent, received: time.Now(), date: t})
		d.mu.Unlock()
	}
	return resp, nil
}

func (d *dateRecorder) all() []dateSample {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]dateSample(nil), d.samples...)
}

// runEdgegap checks the API key, each game's app and version, and the clock.
func (r *runner) runEdgegap(ctx context.Context) {
	base := r.cfg.EdgegapURL
	if base == "" {
		base = edgegap.DefaultBaseURL
	}
	if r.skip[GroupEdgegap] {
		r.skipped("edgegap.key", "Edgegap API key", "skipped (--skip edgegap)")
		r.skipped("clock", "clock against Edgegap", "skipped (--skip edgegap)")
		return
	}
	next := r.hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	rec := &dateRecorder{next: next}
	hc := *r.hc
	hc.Transport = rec
	api := edgegap.NewClient(base, r.cfg.EdgegapKey, edgegap.WithHTTPClient(&hc), edgegap.WithTimeout(r.cfg.CallTimeout),
		edgegap.WithRetries(1, 0, 0), edgegap.WithRateLimit(rate.Inf, 1))

	keyOK := false
	apps := map[string]*edgegap.Application{}
	appErr := map[string]error{}
	r.check("edgegap.key", "Edgegap API key", func() Result {
		var res Result
		res, keyOK = r.checkEdgegapKey(ctx, api, base, apps, appErr)
		return res
	})
	for _, g := range r.cfg.Games {
		id, title := "edgegap.app."+g.String(), "Edgegap app "+g.Name+" version "+g.Version
		if !keyOK {
			r.skipped(id, title, "not checked: the API key does not work (see edgegap.key)")
			continue
		}
		r.check(id, title, func() Result { return r.checkApp(ctx, api, g, apps, appErr) })
	}
	r.group(GroupClock, "clock", "clock against Edgegap", func() Result {
		return clockResult(rec.all(), r.cfg.MaxClockSkew)
	})
}

// checkEdgegapKey asks for the first game's app: any answer but 401/403 proves the key.
func (r *runner) checkEdgegapKey(ctx context.Context, api *edgegap.Client, base string, apps map[string]*edgegap.Application, appErr map[string]error) (Result, bool) {
	key := r.cfg.EdgegapKey
	if key == "" {
		return fail("EDGEGAP_API_KEY is not set", `EDGEGAP_API_KEY="token xxxxxxxx-..." (the whole authorization header value, from Edgegap's dashboard: User Settings, Tokens)`), false
	}
	if len(r.cfg.Games) == 0 {
		return fail("no game given", "--app-name and --app-version"), false
	}
	name := r.cfg.Games[0].Name
	_, err := r.getApp(ctx, api, name, apps, appErr)
	switch {
	case err == nil || errors.Is(err, edgegap.ErrNotFound):
		return ok("%s accepted the key", base), true
	case errors.Is(err, edgegap.ErrUnauthorized):
		fix := "EDGEGAP_API_KEY must be the whole authorization header value, token xxxxxxxx-... (a token of the account that owns the app)"
		if !strings.HasPrefix(strings.ToLower(key), "token ") {
			fix = `the key has no "token " prefix: EDGEGAP_API_KEY="token ` + "<the token>\""
		}
		return fail(fmt.Sprintf("%s refused the key (HTTP %d)", base, edgegap.StatusCode(err)), fix), false
	case edgegap.StatusCode(err) == 0:
		return fail("cannot reach the Edgegap API at "+base+": "+err.Error(),
			"check EDGEGAP_API_URL (unset = "+edgegap.DefaultBaseURL+") and the network from this host to it"), false
	}
	return fail("the Edgegap API answered an error: "+err.Error(), "retry later; Edgegap's status page"), false
}

// getApp fetches an app once per run.
func (r *runner) getApp(ctx context.Context, api *edgegap.Client, name string, apps map[string]*edgegap.Application, appErr map[string]error) (*edgegap.Application, error) {
	if a, ok := apps[name]; ok {
		return a, nil
	}
	if err, ok := appErr[name]; ok {
		return nil, err
	}
	a, err := api.GetApp(ctx, name)
	if err != nil {
		appErr[name] = err
		return nil, err
	}
	apps[name] = a
	return a, nil
}

// checkApp checks that a game's app and version exist and are active, as the matchmaker does
// at start.
func (r *runner) checkApp(ctx context.Context, api *edgegap.Client, g Game, apps map[string]*edgegap.Application, appErr map[string]error) Result {
	app, err := r.getApp(ctx, api, g.Name, apps, appErr)
	if errors.Is(err, edgegap.ErrNotFound) {
		return fail(fmt.Sprintf("Edgegap does not know application %q (or the key belongs to another account)", g.Name),
			"--app-name exactly as in Edgegap's dashboard (case matters)")
	}
	if err != nil {
		return fail("cannot fetch application "+g.Name+": "+err.Error(), "retry; check the network to Edgegap")
	}
	if !app.IsActive {
		return fail(fmt.Sprintf("application %q is not active on Edgegap: every session request would fail", g.Name),
			"activate the application in Edgegap's dashboard")
	}
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	v, err := api.GetAppVersion(cctx, g.Name, g.Version)
	if errors.Is(err, edgegap.ErrNotFound) {
		return fail(fmt.Sprintf("Edgegap does not know version %q of application %q", g.Version, g.Name),
			"--app-version exactly as in Edgegap's dashboard, or create that version")
	}
	if err != nil {
		return fail("cannot fetch version "+g.Version+": "+err.Error(), "retry; check the network to Edgegap")
	}
	if !v.Active() {
		return fail(fmt.Sprintf("version %q of application %q is not active on Edgegap: sessions cannot be created, and the matchmaker refuses to start", g.Version, g.Name),
			"activate the version in Edgegap's dashboard (Application, Versions), or point --app-version at an active one")
	}
	if len(v.Ports) == 0 {
		return warn(fmt.Sprintf("version %q of %q is active but has no port: the matchmaker answers \"No ports found in deployment\"", g.Version, g.Name),
			"add a port (UDP, e.g. named server) to the app version")
	}
	return ok("application %q and its version %q exist and are active (%d port(s))", g.Name, g.Version, len(v.Ports))
}

// clockResult compares the local clock with the Date headers of Edgegap's answers. A Date has
// one-second resolution, so the server's time lies in [date, date+1s); with the round trip that
// gives the uncertainty.
func clockResult(samples []dateSample, maxSkew time.Duration) Result {
	if len(samples) == 0 {
		return Result{Status: StatusSkip, Detail: "not checked: no answer from Edgegap carried a Date header"}
	}
	// The sample with the shortest round trip is the most precise.
	best := samples[0]
	for _, s := range samples[1:] {
		if s.received.Sub(s.sent) < best.received.Sub(best.sent) {
			best = s
		}
	}
	rtt := best.received.Sub(best.sent)
	local := best.sent.Add(rtt / 2)
	server := best.date.Add(500 * time.Millisecond)
	skew := local.Sub(server)
	margin := rtt/2 + 500*time.Millisecond
	abs := max(skew, -skew) - margin
	dir := "ahead of"
	if skew < 0 {
		dir = "behind"
	}
	detail := fmt.Sprintf("this clock is about %s %s Edgegap's (±%s)", (max(skew, -skew)).Round(100*time.Millisecond), dir, margin.Round(100*time.Millisecond))
	fix := "synchronise the clock (NTP: timedatectl set-ntp true, chrony): connect tokens carry times and expire 30 s after they are made"
	switch {
	case abs > maxSkew:
		return fail(detail+fmt.Sprintf(": more than %s", maxSkew), fix)
	case abs > maxSkew/3:
		return warn(detail, fix)
	}
	return ok("%s", detail)
}
