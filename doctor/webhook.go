package doctor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/protocol"
)

// runWebhook checks the session webhook path: URL set, the sink answers, and a test body
// arrives on NATS where the matchmaker listens.
func (r *runner) runWebhook(ctx context.Context) {
	r.group(GroupWebhook, "webhook", "session webhook path", func() Result { return r.checkWebhook(ctx) })
}

func (r *runner) checkWebhook(ctx context.Context) Result {
	raw := r.cfg.WebhookURL
	if raw == "" {
		return warn("no session webhook URL: the matchmaker learns that a session is ready by polling Edgegap (slower grants, more API calls) and cannot reconcile its sessions",
			"run bevygap webhook-sink where Edgegap can reach it and give the matchmaker --session-webhook-url https://hooks.example.com/hook/session")
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fail("the session webhook URL is not an http(s) URL", "--session-webhook-url https://hooks.example.com/hook/session")
	}
	shown := u.Scheme + "://" + u.Host + u.Path // never the query: it may carry the sink's secret
	var notes []string
	if edgegapIsRemote(r.cfg.EdgegapURL) && privateHost(u.Hostname()) {
		notes = append(notes, "but Edgegap cannot reach "+u.Hostname()+" from the internet")
	}
	name, isSink := strings.CutPrefix(u.Path, "/hook/")
	isSink = isSink && name != "" && !strings.Contains(name, "/")
	subject := ""
	if isSink {
		subject = protocol.WebhookSubject(name)
		if !subjectMatches(r.cfg.WebhookSubject, subject) {
			return fail(fmt.Sprintf("the sink publishes this URL's webhooks on %s, but the matchmaker listens on %s", subject, r.cfg.WebhookSubject),
				"use a URL ending in /hook/<name> that --webhook-subject matches (default webhook.*)")
		}
	}

	var sub *nats.Subscription
	natsNote, natsFix := "", ""
	switch {
	case !isSink:
		natsNote = "the URL is not a bevygap webhook sink's (/hook/<name>), so its arrival on NATS was not checked"
		natsFix = "use the webhook sink (bevygap webhook-sink, POST /hook/<name>) so that the matchmaker hears the webhooks"
	case r.nc == nil:
		natsNote = "no NATS connection, so its arrival on NATS was not checked"
		natsFix = "see nats.connect"
	default:
		err := r.call(ctx, r.nc, func(context.Context) error {
			var err error
			sub, err = r.nc.SubscribeSync(subject)
			return err
		})
		if err != nil {
			sub = nil
			natsNote = "these NATS credentials may not subscribe " + subject + ", so its arrival was not checked (" + err.Error() + ")"
			natsFix = "run the doctor with the matchmaker's NATS credentials, which may subscribe " + r.cfg.WebhookSubject
		} else {
			defer func() { _ = sub.Unsubscribe() }()
		}
	}

	body := []byte(`{"bevygap_doctor":"` + r.nonce + `"}`)
	cctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, raw, bytes.NewReader(body))
	if err != nil {
		return fail("cannot build the request: "+err.Error(), "")
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := r.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fail("cannot reach the webhook sink at "+shown+": "+err.Error(),
			"run bevygap webhook-sink (default 0.0.0.0:3001) and check the URL's host and port")
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_ = resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK, http.StatusAccepted, http.StatusNoContent:
	case http.StatusUnauthorized, http.StatusForbidden:
		return fail(fmt.Sprintf("the sink at %s refused the test post (HTTP %d): it has a secret the URL does not carry", shown, resp.StatusCode),
			"add the sink's BEVYGAP_WEBHOOK_SECRET to the URL: --session-webhook-url "+shown+"?token=<secret>")
	case http.StatusServiceUnavailable:
		return fail("the sink at "+shown+" answered 503: it has no NATS connection", "check the webhook sink's NATS_* settings and its log")
	case http.StatusNotFound, http.StatusMethodNotAllowed:
		return fail(fmt.Sprintf("%s answered HTTP %d: nothing there takes webhooks", shown, resp.StatusCode),
			"point --session-webhook-url at the webhook sink: https://<sink host>/hook/session")
	default:
		return fail(fmt.Sprintf("the sink at %s answered HTTP %d: %s", shown, resp.StatusCode, strings.TrimSpace(string(msg))), "the webhook sink's log")
	}
	if sub == nil {
		return warn("the sink at "+shown+" took a test post, but "+natsNote+joinNotes(notes), natsFix)
	}
	for {
		m, err := sub.NextMsgWithContext(cctx)
		if err != nil {
			return fail(fmt.Sprintf("the sink at %s answered OK, but the test body did not arrive on %s on this NATS within %s", shown, subject, r.cfg.CallTimeout),
				"the sink publishes to another NATS server or account: give it the matchmaker's NATS_HOST and credentials")
		}
		if bytes.Equal(m.Data, body) {
			break
		}
	}
	res := ok("a test post to %s arrived on NATS %s, where the matchmaker listens (it ignores the test body: no session_id)%s", shown, subject, joinNotes(notes))
	if len(notes) > 0 {
		res.Status = StatusWarn
		res.Fix = "give the sink a public address (a reverse proxy with TLS) and use that in --session-webhook-url"
	}
	return res
}

func joinNotes(notes []string) string {
	if len(notes) == 0 {
		return ""
	}
	return ", " + strings.Join(notes, ", ")
}

// edgegapIsRemote reports whether the Edgegap API is not a local simulator.
func edgegapIsRemote(base string) bool {
	if base == "" {
		base = edgegap.DefaultBaseURL
	}
	u, err := url.Parse(base)
	return err == nil && !privateHost(u.Hostname())
}

// privateHost reports whether a host name or IP cannot be reached from the internet.
func privateHost(host string) bool {
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || strings.HasSuffix(host, ".local") || strings.HasSuffix(host, ".internal") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && (ip.IsLoopback() || ip.IsPrivate() || ip.IsLinkLocalUnicast() || ip.IsUnspecified())
}

// subjectMatches reports whether a NATS subject matches a pattern with * and > wildcards.
func subjectMatches(pattern, subject string) bool {
	p, s := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, tok := range p {
		if tok == ">" {
			return len(s) > i
		}
		if i >= len(s) || (tok != "*" && tok != s[i]) {
			return false
		}
	}
	return len(p) == len(s)
}
