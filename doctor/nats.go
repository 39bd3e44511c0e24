package doctor

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/protocol"
)

// nonce returns a short random token for probe keys and the webhook body.
func nonce() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// runNATS runs the NATS checks: connection, TLS, credentials, JetStream, buckets, permissions
// and the matchmakers.
func (r *runner) runNATS(ctx context.Context) {
	ids := []struct{ id, title string }{
		{"nats.connect", "NATS reachable"},
		{"nats.tls", "NATS TLS"},
		{"nats.auth", "NATS credentials"},
	}
	// skipRest reports every check that needs the connection as skipped.
	skipRest := func(why string) {
		r.skipped("nats.jetstream", "JetStream", why)
		for _, c := range r.streamChecks() {
			r.skipped(c[0], c[1], why)
		}
		if r.cfg.Role != "none" {
			r.skipped("permissions."+r.cfg.Role, "permissions of the "+r.cfg.Role+" role", why)
		}
		for _, rc := range r.cfg.RoleCredentials {
			r.skipped("permissions."+rc.Role, "permissions of the "+rc.Role+" role", why)
		}
		for _, g := range r.cfg.Games {
			r.skipped("matchmaker."+g.String(), "a matchmaker serves "+g.String(), why)
		}
	}
	if r.skip[GroupNATS] {
		for _, c := range ids {
			r.skipped(c.id, c.title, "skipped (--skip nats)")
		}
		skipRest("skipped (--skip nats)")
		return
	}
	start := time.Now()
	nc, err := r.connect(ctx, r.cfg.NATS)
	connect, tlsRes, auth := r.classifyConnect(nc, err)
	for i, res := range []Result{connect, tlsRes, auth} {
		res.ID, res.Title = ids[i].id, ids[i].title
		res.DurationMS = time.Since(start).Milliseconds()
		r.results = append(r.results, res)
	}
	if nc == nil {
		skipRest("not checked: no NATS connection (see nats.connect)")
		return
	}
	r.nc = nc // closed by Run
	js, err := jetstream.New(nc)
	jsOK := false
	r.check("nats.jetstream", "JetStream", func() Result {
		if err != nil {
			return fail("cannot use JetStream: "+err.Error(), "")
		}
		var res Result
		res, jsOK = r.checkJetStream(ctx, nc, js)
		return res
	})
	r.checkStreams(ctx, nc, js, jsOK)
	r.checkPermissions(ctx, nc)
	// Asking a matchmaker is httpd's right (deploy/nats/auth.conf): use httpd's credentials
	// when they are given.
	asker := nc
	for _, rc := range r.cfg.RoleCredentials {
		if rc.Role == RoleHTTPD && !r.skip[GroupMatchmaker] {
			if c, err := r.connect(ctx, r.roleConfig(rc)); err == nil {
				defer c.Close()
				asker = c
			}
		}
	}
	for _, g := range r.cfg.Games {
		r.group(GroupMatchmaker, "matchmaker."+g.String(), "a matchmaker serves "+g.String(), func() Result {
			return r.checkMatchmaker(ctx, asker, g)
		})
	}
}

// connect dials NATS once (retrying for at most CallTimeout), with a silent logger.
func (r *runner) connect(ctx context.Context, cfg bus.Config) (*nats.Conn, error) {
	cfg.ConnectWait = r.cfg.CallTimeout
	if cfg.Name == "" {
		cfg.Name = "bevygap-doctor"
	}
	return bus.Connect(ctx, cfg, slog.New(slog.DiscardHandler))
}

// classifyConnect turns the outcome of the connection into the connect, TLS and credential
// checks.
func (r *runner) classifyConnect(nc *nats.Conn, err error) (connect, tlsRes, auth Result) {
	c := r.cfg.NATS
	host := c.Host
	if strings.TrimSpace(host) == "" {
		host = "(NATS_HOST not set: 127.0.0.1:4222)"
	}
	const notChecked = "not checked: no connection"
	skip := Result{Status: StatusSkip, Detail: notChecked}
	if err == nil {
		connect = ok("connected to %s (nats-server %s)", redact(nc.ConnectedUrl()), nc.ConnectedServerVersion())
		tlsRes = r.tlsResult(nc)
		switch {
		case c.User != "":
			auth = ok("the server accepted user %q", c.User)
		case loopback(nc.ConnectedAddr()):
			auth = ok("no user given and the server asks for none (loopback)")
		default:
			auth = warn("no user given and the server asks for none: anyone who can reach it can read connect tokens and forge game events",
				"give every role its own user with least-privilege permissions: deploy/nats/auth.conf, docs/deploy.md")
		}
		return connect, tlsRes, auth
	}
	msg := err.Error()
	var certErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, bus.ErrInboxPrefix):
		return fail(msg, "NATS_INBOX_PREFIX / --nats-inbox-prefix: subject tokens without wildcards or spaces, e.g. _INBOX_mm"), skip, skip
	case errors.Is(err, bus.ErrAuth):
		return ok("reached the NATS server at %s", host), ok("TLS as configured (the server answered)"),
			fail("the server refused the credentials: "+msg,
				"set NATS_USER and NATS_PASSWORD (NATS_PASS works too) to the user of this role in the server's authorization block")
	case errors.Is(err, bus.ErrBadCA):
		return skip, fail(msg, "NATS_CA must be the path of a PEM file with the CA certificate, or put the PEM text itself in NATS_CA_CONTENTS"), skip
	case (errors.As(err, &certErr) || strings.Contains(msg, "certificate")) && c.Insecure:
		// nats.go upgrades to TLS when the server requires it, with the system's roots only:
		// NATS_INSECURE turns the CA settings off.
		return ok("reached the NATS server at %s", host),
			fail("the server requires TLS, NATS_INSECURE is set, and the server's certificate is not trusted by the system: "+msg,
				"unset NATS_INSECURE (and drop --nats-insecure) and set NATS_CA=/path/ca.pem (or NATS_CA_CONTENTS) to the CA that signed the certificate"), skip
	case errors.As(err, &certErr) || strings.Contains(msg, "certificate"):
		return ok("reached the NATS server at %s", host),
			fail("the server's TLS certificate is not trusted: "+msg,
				"set NATS_CA=/path/ca.pem (or NATS_CA_CONTENTS) to the CA that signed it; NATS_HOST must be a name in the certificate"), skip
	case strings.Contains(msg, "secure connection not available"):
		return ok("reached the NATS server at %s", host),
			fail("the client wants TLS (NATS_INSECURE is not set) but the server has none: "+msg,
				"NATS_INSECURE=1 (--nats-insecure) for a plain server on a private network, or give nats-server TLS"), skip
	case strings.Contains(msg, "secure connection required"):
		return ok("reached the NATS server at %s", host),
			fail("the server requires TLS but NATS_INSECURE is set: "+msg, "unset NATS_INSECURE (and drop --nats-insecure)"), skip
	}
	fix := fmt.Sprintf("check that nats-server runs and listens at %s (NATS_HOST or --nats-host; a URL like nats://host:4222, "+
		"or host:port with TLS unless NATS_INSECURE=1), and that no firewall blocks the port", host)
	return fail("cannot reach NATS at "+host+": "+msg, fix), skip, skip
}

// tlsResult describes the TLS of an established connection.
func (r *runner) tlsResult(nc *nats.Conn) Result {
	st, err := nc.TLSConnectionState()
	if err != nil { // plain TCP
		if loopback(nc.ConnectedAddr()) {
			return ok("plain TCP (NATS_INSECURE) to a loopback address: fine on one machine")
		}
		return warn("plain TCP (NATS_INSECURE) over the network: passwords and connect tokens travel unencrypted",
			"give nats-server a TLS certificate and unset NATS_INSECURE; set NATS_CA for a private CA")
	}
	ca := "the system's roots"
	if r.cfg.NATS.CAFile != "" {
		ca = "NATS_CA " + r.cfg.NATS.CAFile
	} else if r.cfg.NATS.CAContents != "" {
		ca = "NATS_CA_CONTENTS"
	}
	if len(st.PeerCertificates) == 0 {
		return ok("%s, verified with %s", tls.VersionName(st.Version), ca)
	}
	cert := st.PeerCertificates[0]
	left := time.Until(cert.NotAfter)
	detail := fmt.Sprintf("%s, certificate %q issued by %q, verified with %s, valid until %s",
		tls.VersionName(st.Version), cert.Subject.CommonName, cert.Issuer.CommonName, ca, cert.NotAfter.UTC().Format(time.DateOnly))
	if left < 14*24*time.Hour {
		return warn(detail+": it expires in less than 14 days", "renew the NATS server's certificate")
	}
	return ok("%s", detail)
}

// loopback reports whether a host:port names a loopback address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// redact hides a password in a URL.
func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	return u.Redacted()
}

// checkJetStream asks for the account info; the bool says whether JetStream can be used.
func (r *runner) checkJetStream(ctx context.Context, nc *nats.Conn, js jetstream.JetStream) (Result, bool) {
	var info *jetstream.AccountInfo
	err := r.call(ctx, nc, func(ctx context.Context) error {
		var err error
		info, err = js.AccountInfo(ctx)
		return err
	})
	switch {
	case err == nil:
		return ok("JetStream is on (%d streams in this account, %s of file storage used)", info.Streams, bytesText(info.Store)), true
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fail("JetStream is off: the buckets and the delete queue need it ("+err.Error()+")",
			"run nats-server with -js, or put jetstream {} in its configuration (and jetstream: enabled in the account)"), false
	case errors.Is(err, nats.ErrPermissionViolation):
		// The account info needs $JS.API.INFO, which only the matchmaker role may ask for.
		return warn("cannot ask for JetStream's account info with these credentials ("+err.Error()+"); the bucket checks below still try",
			"nothing, if this user is not the matchmaker's (only it needs $JS.API.INFO)"), true
	}
	return fail("JetStream does not answer: "+err.Error(), "check the NATS server's log; with a cluster, that a JetStream meta leader is elected (nats server report jetstream)"), false
}

func bytesText(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// streamChecks are the ids and titles of the bucket and stream checks.
func (r *runner) streamChecks() [][2]string {
	var out [][2]string
	for _, c := range bus.BucketConfigs(r.cfg.Buckets) {
		out = append(out, [2]string{"bucket." + c.Bucket, "KV bucket " + c.Bucket})
	}
	stream := r.cfg.Buckets.Prefix + protocol.DeleteSessionStream
	return append(out, [2]string{"stream." + stream, "delete-session stream " + stream})
}

// checkStreams compares each bucket and the delete stream with what bus.Open would create.
func (r *runner) checkStreams(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, jsOK bool) {
	if err := bus.ValidatePrefix(r.cfg.Buckets.Prefix); err != nil {
		r.check("buckets", "bucket configuration", func() Result {
			return fail(err.Error(), "--bucket-prefix: letters, digits, '_' and '-'")
		})
		return
	}
	for _, want := range bus.BucketConfigs(r.cfg.Buckets) {
		id := "bucket." + want.Bucket
		title := "KV bucket " + want.Bucket
		if !jsOK {
			r.skipped(id, title, "not checked: JetStream is not available (see nats.jetstream)")
			continue
		}
		r.check(id, title, func() Result { return r.checkBucket(ctx, nc, js, want) })
	}
	names := bus.Names{
		DeleteStream:      r.cfg.Buckets.Prefix + protocol.DeleteSessionStream,
		DeleteSubjectBase: r.cfg.Buckets.Prefix + protocol.DeleteSessionSubjectPrefix,
	}
	want := bus.DeleteStreamConfig(names, r.cfg.Buckets)
	id, title := "stream."+want.Name, "delete-session stream "+want.Name
	if !jsOK {
		r.skipped(id, title, "not checked: JetStream is not available (see nats.jetstream)")
		return
	}
	r.check(id, title, func() Result { return r.checkDeleteStream(ctx, nc, js, want) })
}

// streamInfo fetches a stream's configuration.
func (r *runner) streamInfo(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, name string) (*jetstream.StreamInfo, error) {
	var info *jetstream.StreamInfo
	err := r.call(ctx, nc, func(ctx context.Context) error {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		info = s.CachedInfo()
		return nil
	})
	return info, err
}

// diff is one field that differs from the expected configuration.
type diff struct {
	field, have, want string
	fixed             bool // the matchmaker can change it in place (stream update)
}

func diffText(ds []diff) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = fmt.Sprintf("%s is %s, want %s", d.field, d.have, d.want)
	}
	return strings.Join(parts, "; ")
}

// streamError is the result for a bucket or stream that does not exist.
func (r *runner) streamError(kind, name string, err error) Result {
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fail("does not exist",
			"start a matchmaker with the same --bucket-prefix and --replicas: it creates every bucket and the delete stream (a Rust bevygap_matchmaker does too)")
	}
	if errors.Is(err, nats.ErrPermissionViolation) {
		return fail("these credentials may not look up "+name+": "+err.Error(),
			"allow publish $JS.API.STREAM.INFO."+name+" for this user (deploy/nats/auth.conf has the full list per role)")
	}
	return fail("cannot look up "+kind+" "+name+": "+err.Error(), "check JetStream (nats server report jetstream)")
}

// checkBucket compares a KV bucket's stream with the configuration bus would create. Each
// field is the one nats.go derives from the KeyValueConfig.
func (r *runner) checkBucket(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, want jetstream.KeyValueConfig) Result {
	info, err := r.streamInfo(ctx, nc, js, "KV_"+want.Bucket)
	if err != nil {
		return r.streamError("KV bucket", want.Bucket, err)
	}
	have := info.Config
	history := int64(max(want.History, 1))
	maxValue := want.MaxValueSize
	if maxValue == 0 {
		maxValue = -1
	}
	var ds []diff
	add := func(field string, h, w any, fixed bool) {
		if fmt.Sprint(h) != fmt.Sprint(w) {
			ds = append(ds, diff{field, fmt.Sprint(h), fmt.Sprint(w), fixed})
		}
	}
	add("TTL (max age)", ttlText(have.MaxAge), ttlText(want.TTL), true)
	add("history", have.MaxMsgsPerSubject, history, true)
	add("max value size", sizeText(have.MaxMsgSize), sizeText(maxValue), true)
	add("max bytes", sizeText(have.MaxBytes), sizeText(int64(-1)), true)
	add("description", fmt.Sprintf("%q", have.Description), fmt.Sprintf("%q", want.Description), true)
	add("replicas", have.Replicas, max(want.Replicas, 1), true)
	add("storage", have.Storage, want.Storage, false)
	return r.diffResult(fmt.Sprintf("keys: %d", info.State.NumSubjects), ds)
}

// checkDeleteStream compares the delete-session work queue with what bus would create.
func (r *runner) checkDeleteStream(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, want jetstream.StreamConfig) Result {
	info, err := r.streamInfo(ctx, nc, js, want.Name)
	if err != nil {
		return r.streamError("stream", want.Name, err)
	}
	have := info.Config
	var ds []diff
	if strings.Join(have.Subjects, ",") != strings.Join(want.Subjects, ",") {
		ds = append(ds, diff{"subjects", strings.Join(have.Subjects, ","), strings.Join(want.Subjects, ","), true})
	}
	if have.Retention != want.Retention {
		ds = append(ds, diff{"retention", have.Retention.String(), want.Retention.String(), false})
	}
	if have.Replicas != want.Replicas {
		ds = append(ds, diff{"replicas", fmt.Sprint(have.Replicas), fmt.Sprint(want.Replicas), true})
	}
	if have.Storage != want.Storage {
		ds = append(ds, diff{"storage", have.Storage.String(), want.Storage.String(), false})
	}
	return r.diffResult(fmt.Sprintf("deletions queued: %d", info.State.Msgs), ds)
}

// diffResult is ok without differences, else a failure listing them with the way to fix.
func (r *runner) diffResult(state string, ds []diff) Result {
	if len(ds) == 0 {
		return ok("the expected configuration (%s)", state)
	}
	fixable := true
	for _, d := range ds {
		fixable = fixable && d.fixed
	}
	fix := "if the matchmaker runs with other --bucket-prefix/--replicas, give the doctor the same flags; otherwise restart a matchmaker: it updates the configuration in place (bus.Open creates or updates), or change it with nats kv edit / nats stream edit"
	if !fixable {
		fix = "storage and retention cannot be changed in place: stop the services, remove it (nats stream rm; queued entries are lost) and start a matchmaker, which creates it again"
	}
	return fail("differs from what bevygap creates: "+diffText(ds)+
		" (Rust bevygap services refuse to start against it: their create must find the same configuration)", fix)
}

func ttlText(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return d.String()
}

func sizeText[T int32 | int64](n T) string {
	if n < 0 {
		return "unlimited"
	}
	return fmt.Sprintf("%d bytes", n)
}

// call runs op with the call timeout and fails as soon as the server reports a permissions
// violation on nc meanwhile (a denied request would otherwise only time out). After an op
// that succeeded at once (a publish, a subscribe), it flushes, so that a violation, which
// arrives before the flush's PONG, is seen.
func (r *runner) call(ctx context.Context, nc *nats.Conn, op func(ctx context.Context) error) error {
	prev := nc.LastError()
	violation := func() error {
		if e := nc.LastError(); e != nil && e != prev && errors.Is(e, nats.ErrPermissionViolation) {
			return e
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.CallTimeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err == nil {
				if ferr := nc.FlushWithContext(ctx); ferr != nil {
					return fmt.Errorf("flush: %w", ferr)
				}
			}
			if v := violation(); v != nil {
				return v
			}
			return err
		case <-tick.C:
			if v := violation(); v != nil {
				cancel()
				<-done
				return v
			}
		}
	}
}
