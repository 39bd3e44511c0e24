package doctor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/protocol"
)

// probe is one operation a role needs, tried without side effects.
type probe struct {
	what string
	op   func(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) error
}

// probeKey is the KV key the probes read, and the write probes put and purge at once. It is
// always the same, so that repeated runs leave at most one purge marker per bucket.
func (r *runner) probeKey() string { return "bevygap-doctor-probe" }

// subscribeProbe subscribes to subject for a moment (a plain subscription: it takes no
// request away from a queue group).
func subscribeProbe(subject, why string) probe {
	return probe{"subscribe " + subject + " (" + why + ")", func(ctx context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
		sub, err := nc.SubscribeSync(subject)
		if err != nil {
			return err
		}
		defer func() { _ = sub.Unsubscribe() }()
		return nc.FlushWithContext(ctx)
	}}
}

// publishProbe publishes data on subject without a reply subject.
func publishProbe(subject, why string, data []byte) probe {
	return probe{"publish " + subject + " (" + why + ")", func(_ context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
		return nc.Publish(subject, data)
	}}
}

// lookupProbe looks a stream up.
func lookupProbe(stream string) probe {
	return probe{"look up stream " + stream, func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		_, err := js.Stream(ctx, stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil // allowed; the bucket checks report the missing stream
		}
		return err
	}}
}

// getProbe reads a key that does not exist from a bucket.
func getProbe(bucket, key string) probe {
	return probe{"read KV " + bucket, func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		kv, err := js.KeyValue(ctx, bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		_, err = kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return err
	}}
}

// purgeProbe purges one key of a bucket's stream (the probe key, which holds nothing), as the
// matchmaker's delete worker does with the markers of deleted sessions.
func purgeProbe(bucket, key string) probe {
	return probe{"purge keys of KV " + bucket + " (stream purge, key " + key + ")", func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		st, err := js.Stream(ctx, "KV_"+bucket)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return st.Purge(ctx, jetstream.WithPurgeSubject("$KV."+bucket+"."+key))
	}}
}

// putProbe writes key to bucket and deletes it again.
func putProbe(bucket, key string) probe {
	return probe{"write KV " + bucket + " (key " + key + ", deleted at once)", func(ctx context.Context, _ *nats.Conn, js jetstream.JetStream) error {
		kv, err := js.KeyValue(ctx, bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if _, err := kv.Put(ctx, key, []byte("bevygap doctor probe")); err != nil {
			return err
		}
		return kv.Purge(ctx, key)
	}}
}

// probes returns the operations tried for a role and those it needs but that cannot be tried
// without side effects.
func (r *runner) probes(role string) (ps []probe, untried []string) {
	opts := r.cfg.Buckets
	pre := opts.Prefix
	switch role {
	case RoleMatchmaker:
		for _, g := range r.cfg.Games {
			tail := "." + g.Name + "." + g.Version
			ps = append(ps, subscribeProbe(protocol.SubjectMatchmakerRequestPrefix+tail, "serve players"),
				subscribeProbe(protocol.SubjectMatchmakerCancelPrefix+tail, "players who went away"),
				subscribeProbe(protocol.SubjectMatchmakerPartyPrefix+tail, "parties"),
				subscribeProbe(protocol.SubjectMatchmakerBackfillPrefix+tail, "backfill requests of game servers"))
		}
		ps = append(ps,
			subscribeProbe(protocol.SubjectGenSession, "NATS micro service"),
			subscribeProbe("$SRV.PING."+protocol.GenSessionServiceName, "NATS micro PING"),
			subscribeProbe(r.cfg.WebhookSubject, "session webhooks"))
		for _, c := range bus.BucketConfigs(opts) {
			ps = append(ps, lookupProbe("KV_"+c.Bucket))
		}
		ps = append(ps, lookupProbe(pre+protocol.DeleteSessionStream),
			getProbe(pre+protocol.BucketActiveConnections, r.probeKey()),
			purgeProbe(pre+protocol.BucketActiveConnections, r.probeKey()),
			getProbe(pre+protocol.BucketUnclaimedSessions, r.probeKey()),
			getProbe(pre+protocol.BucketCertDigests, r.probeKey()),
			putProbe(pre+protocol.BucketSessionsEg2Ly, r.probeKey()))
		for _, c := range bus.PlayBucketConfigs(opts) { // play together: tickets, leases, parties
			ps = append(ps, lookupProbe("KV_"+c.Bucket), getProbe(c.Bucket, r.probeKey()), putProbe(c.Bucket, r.probeKey()))
		}
		untried = []string{"create or update buckets", "enqueue deletions on " + pre + protocol.DeleteSessionSubjectPrefix + ".*",
			"reply to httpd's inbox", "write sessions_ly2eg and unclaimed_sessions"}
	case RoleHTTPD:
		ps = append(ps,
			publishProbe(protocol.SubjectMatchmakerRequestPrefix+".bevygap-doctor.probe", "send session requests; no game has this name", nil),
			publishProbe(protocol.SubjectMatchmakerCancelPrefix+".bevygap-doctor.probe", "cancel the requests of players who went away; no game has this name", nil),
			publishProbe(protocol.SubjectMatchmakerPartyPrefix+".bevygap-doctor.probe", "relay party requests; no game has this name", nil),
			probe{"ask $SRV.PING." + protocol.GenSessionServiceName + " and read the reply on its inbox (/readyz)",
				func(ctx context.Context, nc *nats.Conn, _ jetstream.JetStream) error {
					_, err := nc.RequestWithContext(ctx, "$SRV.PING."+protocol.GenSessionServiceName, nil)
					if errors.Is(err, nats.ErrNoResponders) {
						return nil
					}
					return err
				}})
		untried = []string{"publish " + protocol.SubjectGenSession + " (it would ask for a session)"}
	case RoleWebhookSink:
		ps = append(ps, publishProbe(protocol.WebhookSubject("bevygap-doctor"), "publish webhooks; the matchmaker ignores this empty one", []byte("{}")))
	case RoleGameServer:
		for _, c := range bus.GameServerBucketConfigs(opts) {
			ps = append(ps, lookupProbe("KV_"+c.Bucket))
		}
		ps = append(ps, getProbe(pre+protocol.BucketSessionsLy2Eg, r.probeKey()),
			putProbe(pre+protocol.BucketCertDigests, r.probeKey()))
		untried = []string{"write active_connections (the matchmaker would take it for a player leaving)", "publish " + protocol.SubjectGameserverContexts,
			"ask " + protocol.SubjectMatchmakerBackfillPrefix + ".<game>.<version> for players (Go game servers' backfill)"}
	}
	return ps, untried
}

// checkPermissions tries each role's operations: the main credentials as cfg.Role, and every
// RoleCredentials with its own connection.
func (r *runner) checkPermissions(ctx context.Context, main *nats.Conn) {
	type target struct {
		role string
		user string
		nc   *nats.Conn
		cfg  *bus.Config
	}
	var targets []target
	if r.cfg.Role != "none" {
		targets = append(targets, target{role: r.cfg.Role, user: r.cfg.NATS.User, nc: main})
	}
	for _, rc := range r.cfg.RoleCredentials {
		c := r.roleConfig(rc)
		targets = append(targets, target{role: rc.Role, user: rc.User, cfg: &c})
	}
	for _, t := range targets {
		id, title := "permissions."+t.role, "permissions of the "+t.role+" role"
		r.group(GroupPermissions, id, title, func() Result {
			nc := t.nc
			if nc == nil {
				c, err := r.connect(ctx, *t.cfg)
				if err != nil {
					return fail(fmt.Sprintf("cannot connect as user %q: %v", t.user, err),
						"check BEVYGAP_DOCTOR_"+envRole(t.role)+"_NATS_USER / _NATS_PASSWORD against the server's users")
				}
				defer c.Close()
				nc = c
			}
			return r.checkRole(ctx, nc, t.role, t.user)
		})
	}
}

// roleConfig is the NATS configuration with a role's credentials.
func (r *runner) roleConfig(rc RoleCredentials) bus.Config {
	c := r.cfg.NATS
	c.User, c.Password, c.InboxPrefix, c.Name = rc.User, rc.Password, rc.InboxPrefix, "bevygap-doctor-"+rc.Role
	return c
}

// envRole is a role's part of the BEVYGAP_DOCTOR_<ROLE>_NATS_* variables.
func envRole(role string) string { return strings.ToUpper(strings.ReplaceAll(role, "-", "_")) }

// checkRole tries the role's probes on nc.
func (r *runner) checkRole(ctx context.Context, nc *nats.Conn, role, user string) Result {
	ps, untried := r.probes(role)
	if ps == nil {
		return fail(fmt.Sprintf("unknown role %q", role), "one of: "+strings.Join(Roles(), ", "))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fail("cannot use JetStream: "+err.Error(), "")
	}
	who := fmt.Sprintf("user %q", user)
	if user == "" {
		who = "no user"
	}
	var denied []string
	var fixes []string
	for _, p := range ps {
		err := r.call(ctx, nc, func(ctx context.Context) error { return p.op(ctx, nc, js) })
		if err == nil {
			continue
		}
		denied = append(denied, p.what+": "+err.Error())
		msg := err.Error()
		switch {
		case errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(msg, "Subscription") && strings.Contains(msg, "_INBOX"):
			fixes = append(fixes, "the user may not read its replies: set NATS_INBOX_PREFIX to the prefix its permissions allow (_INBOX_mm, _INBOX_httpd, _INBOX_gs in deploy/nats/auth.conf)")
		case errors.Is(err, nats.ErrPermissionViolation):
			fixes = append(fixes, "allow it for "+who+" in the server's authorization block (deploy/nats/auth.conf lists every subject per role)")
		case errors.Is(err, context.DeadlineExceeded):
			fixes = append(fixes, "no answer within the call timeout: check JetStream and the user's permissions for its inbox")
		}
	}
	notTried := ""
	if len(untried) > 0 {
		notTried = " (not tried, because they would change something: " + strings.Join(untried, ", ") + ")"
	}
	if len(denied) > 0 {
		fix := "see the errors"
		if len(fixes) > 0 {
			fix = fixes[0]
		}
		return fail(fmt.Sprintf("as %s, %d of the %d operations the %s needs failed: %s%s", who, len(denied), len(ps), role, strings.Join(denied, "; "), notTried), fix)
	}
	return ok("as %s, all %d operations the %s needs that the doctor tries were allowed%s", who, len(ps), role, notTried)
}

// checkMatchmaker sends the game's streaming request without client_ip: a matchmaker answers
// "Acknowledged" and then error 400, and creates no session.
func (r *runner) checkMatchmaker(ctx context.Context, nc *nats.Conn, g Game) Result {
	subject := protocol.SubjectMatchmakerRequestPrefix + "." + g.Name + "." + g.Version
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fail("cannot subscribe to a reply inbox: "+err.Error(), "")
	}
	defer func() { _ = sub.Unsubscribe() }()
	var replies []protocol.Feedback
	noResponders := false
	err = r.call(ctx, nc, func(ctx context.Context) error {
		if err := nc.PublishRequest(subject, inbox, []byte(`{"bevygap_doctor":"probe without client_ip"}`)); err != nil {
			return err
		}
		for {
			msg, err := sub.NextMsgWithContext(ctx)
			if err != nil {
				return err
			}
			if msg.Header.Get("Status") == "503" {
				noResponders = true
				return nil
			}
			if len(msg.Data) == 0 {
				return nil // end of stream
			}
			var f protocol.Feedback
			if err := f.UnmarshalJSON(msg.Data); err != nil {
				return fmt.Errorf("reply is not SessionRequestFeedback: %w", err)
			}
			replies = append(replies, f)
		}
	})
	fixStart := fmt.Sprintf("start a matchmaker with --app-name %s --app-version %s on this NATS (and the same NATS_HOST); "+
		"the names are case-sensitive and must match what clients send", g.Name, g.Version)
	if errors.Is(err, nats.ErrNoResponders) {
		noResponders, err = true, nil
	}
	switch {
	case errors.Is(err, nats.ErrPermissionViolation):
		return warn("these credentials may not send matchmaker requests, so the doctor cannot ask ("+err.Error()+")",
			"give the doctor the httpd role's credentials: BEVYGAP_DOCTOR_HTTPD_NATS_USER / BEVYGAP_DOCTOR_HTTPD_NATS_PASSWORD (and _NATS_INBOX_PREFIX)")
	case noResponders:
		return fail("no matchmaker subscribes "+subject+": players asking for this game get \"No matchmaker is serving this game and version\"", fixStart)
	case err != nil && len(replies) == 0:
		return fail("no answer on "+subject+" within "+r.cfg.CallTimeout.String()+": "+err.Error(),
			"a subscriber took the request but did not answer: check the matchmaker's log; "+fixStart)
	}
	if len(replies) > 0 && replies[0].Kind == protocol.FeedbackError && replies[0].Code == 404 {
		return fail("only a matchmaker for other games answered (--answer-unknown-games): "+replies[0].Text, fixStart)
	}
	if len(replies) == 0 || replies[0].Kind != protocol.FeedbackAcknowledged {
		return warn(fmt.Sprintf("something answers %s, but not like a bevygap matchmaker (first reply %v)", subject, replies), fixStart)
	}
	detail := "a matchmaker acknowledged a request on " + subject
	if len(replies) > 1 && replies[1].Kind == protocol.FeedbackError {
		detail += fmt.Sprintf(" and refused the doctor's probe without client_ip with %d, as expected (no session was created)", replies[1].Code)
	}
	if n, err := r.pingGenSession(ctx, nc); err == nil {
		detail += fmt.Sprintf("; %d gensession service instance(s) answered $SRV.PING.gensession", n)
	}
	return ok("%s", detail)
}

// pingGenSession counts the NATS micro gensession instances (all games' matchmakers).
func (r *runner) pingGenSession(ctx context.Context, nc *nats.Conn) (int, error) {
	inbox := nc.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return 0, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	n := 0
	err = r.call(ctx, nc, func(ctx context.Context) error {
		if err := nc.PublishRequest("$SRV.PING."+protocol.GenSessionServiceName, inbox, nil); err != nil {
			return err
		}
		wait := r.cfg.CallTimeout
		for {
			wctx, cancel := context.WithTimeout(ctx, wait)
			msg, err := sub.NextMsgWithContext(wctx)
			cancel()
			if err != nil {
				if n > 0 {
					return nil
				}
				return err
			}
			if msg.Header.Get("Status") == "503" {
				return nil
			}
			n++
			wait = 200 * time.Millisecond // the others answer about as fast as the first
		}
	})
	return n, err
}
