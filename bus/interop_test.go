package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/internal/natsembed"
)

// Interoperability with the Rust bevygap, whose services (and every Rust game server, on each
// boot, panicking on failure) create the same streams with async-nats. The contract is the exact
// request bodies async-nats sends to $JS.API.STREAM.CREATE.<stream>, written down in
// testdata/async-nats-<version>/ (see SOURCES.md there for where every field comes from).

// asyncNatsVersion is the async-nats release the Rust bevygap pins (Cargo.toml "0.36.0",
// bevygap_matchmaker/Cargo.lock 0.36.0).
const asyncNatsVersion = "0.36.0"

// asyncNatsStream is one stream the Rust bevygap creates, with the Go bucket it corresponds to
// ("" for the delete work queue).
type asyncNatsStream struct {
	stream, bucket string
}

// asyncNatsStreams are the six streams, in the order BevygapNats::new_and_connect creates them.
var asyncNatsStreams = []asyncNatsStream{
	{"KV_sessions_eg2ly", "sessions_eg2ly"},
	{"KV_sessions_ly2eg", "sessions_ly2eg"},
	{"KV_active_connections", "active_connections"},
	{"KV_cert_digests", "cert_digests"},
	{"KV_unclaimed_sessions", "unclaimed_sessions"},
	{"DELETE_SESSION_STREAM", ""},
}

// asyncNatsBody returns the raw STREAM.CREATE request body async-nats sends for a stream.
func asyncNatsBody(t *testing.T, stream string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "async-nats-"+asyncNatsVersion, stream+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jsAPIError is the error object of a JetStream API response.
type jsAPIError struct {
	Code        int    `json:"code"`
	ErrCode     int    `json:"err_code"`
	Description string `json:"description"`
}

func (e *jsAPIError) Error() string {
	return fmt.Sprintf("jetstream API error %d (err_code %d): %s", e.Code, e.ErrCode, e.Description)
}

// errCodeStreamNameInUse is nats-server's JSStreamNameExistErr: "stream name already in use with
// a different configuration", what a Rust game server gets (and panics on) for a mismatch.
const errCodeStreamNameInUse = 10058

// errCodeStreamCreate is nats-server's JSStreamCreateErrF (500): the stream's store could not be
// created.
const errCodeStreamCreate = 10049

// rawJSRequest sends body to a JetStream API subject exactly as given and returns the response
// object, or the API error it carries.
func rawJSRequest(ctx context.Context, nc *nats.Conn, subject string, body []byte) (map[string]any, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg, err := nc.RequestWithContext(ctx, subject, body)
	if err != nil {
		return nil, fmt.Errorf("request %s: %w", subject, err)
	}
	var resp struct {
		Error *jsAPIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("response of %s: %w", subject, err)
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	var m map[string]any
	if err := json.Unmarshal(msg.Data, &m); err != nil {
		return nil, fmt.Errorf("response of %s: %w", subject, err)
	}
	return m, nil
}

// rustCreate does what async-nats' create_stream / create_key_value does on the wire: it sends
// the body and then requires of the response what async-nats needs to deserialize it into
// stream::Info (a response it cannot read fails the Rust boot just like an API error).
func rustCreate(ctx context.Context, nc *nats.Conn, stream string, body []byte) error {
	resp, err := rawJSRequest(ctx, nc, "$JS.API.STREAM.CREATE."+stream, body)
	if err != nil {
		return err
	}
	return checkAsyncNatsInfo(resp)
}

// checkAsyncNatsInfo checks a STREAM.CREATE response against async-nats 0.36 stream::Info
// (async-nats/src/jetstream/stream.rs): the fields without #[serde(default)] must be present and
// the enums must hold values its serde renames know.
func checkAsyncNatsInfo(resp map[string]any) error {
	cfg, ok := resp["config"].(map[string]any)
	if !ok {
		return errors.New("response has no config object")
	}
	state, ok := resp["state"].(map[string]any)
	if !ok {
		return errors.New("response has no state object")
	}
	if _, ok := resp["created"].(string); !ok {
		return errors.New("response has no created timestamp")
	}
	for _, k := range []string{"name", "max_bytes", "max_msgs", "max_msgs_per_subject", "discard", "retention", "max_consumers", "max_age", "storage", "num_replicas"} {
		if _, ok := cfg[k]; !ok {
			return fmt.Errorf("response config lacks %q, which async-nats requires", k)
		}
	}
	for _, k := range []string{"messages", "bytes", "first_seq", "first_ts", "last_seq", "last_ts", "consumer_count"} {
		if _, ok := state[k]; !ok {
			return fmt.Errorf("response state lacks %q, which async-nats requires", k)
		}
	}
	for k, allowed := range map[string][]string{
		"discard":     {"old", "new"},
		"retention":   {"limits", "interest", "workqueue"},
		"storage":     {"file", "memory"},
		"compression": {"s2", "none"},
	} {
		v, present := cfg[k]
		if s, isString := v.(string); present && (!isString || !slices.Contains(allowed, s)) {
			return fmt.Errorf("response config %s = %v, unknown to async-nats", k, v)
		}
	}
	return nil
}

// storedConfigs returns the configuration the server holds for each of the six streams, as the
// raw JSON object of STREAM.INFO (every field the server knows, not only those nats.go models).
func storedConfigs(ctx context.Context, t *testing.T, nc *nats.Conn) map[string]map[string]any {
	t.Helper()
	out := make(map[string]map[string]any, len(asyncNatsStreams))
	for _, s := range asyncNatsStreams {
		resp, err := rawJSRequest(ctx, nc, "$JS.API.STREAM.INFO."+s.stream, nil)
		if err != nil {
			t.Fatalf("info %s: %v", s.stream, err)
		}
		cfg, ok := resp["config"].(map[string]any)
		if !ok {
			t.Fatalf("info %s: no config in %v", s.stream, resp)
		}
		out[s.stream] = cfg
	}
	return out
}

// diffConfigs describes the differences between two stored configurations ("" when equal).
func diffConfigs(a, b map[string]map[string]any) string {
	var d []string
	for _, s := range asyncNatsStreams {
		ca, cb := a[s.stream], b[s.stream]
		keys := make([]string, 0, len(ca)+len(cb))
		for k := range ca {
			keys = append(keys, k)
		}
		for k := range cb {
			if _, ok := ca[k]; !ok {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			if !reflect.DeepEqual(ca[k], cb[k]) {
				d = append(d, fmt.Sprintf("%s.%s: %v != %v", s.stream, k, ca[k], cb[k]))
			}
		}
	}
	return strings.Join(d, "; ")
}

// deleteInteropStreams removes the six reference-named streams so that a phase starts from an
// empty server. Only this file's tests use the unprefixed names.
func deleteInteropStreams(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	for _, s := range asyncNatsStreams {
		if err := js.DeleteStream(ctx, s.stream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Fatalf("delete %s: %v", s.stream, err)
		}
	}
}

// interopConn connects to the server of cfg and removes the six reference-named streams, now
// and when the test ends.
func interopConn(t *testing.T, cfg Config) (context.Context, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	nc, err := Connect(ctx, cfg, quietLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	deleteInteropStreams(ctx, t, js)
	t.Cleanup(func() { deleteInteropStreams(context.Background(), t, js) })
	return ctx, nc, js
}

// TestAsyncNatsContractMatchesGoConfig checks, without a server, that the recorded async-nats
// bodies and the Go configuration describe the same buckets (names, subjects, TTL, value size,
// description, retention), so neither can drift without this failing.
func TestAsyncNatsContractMatchesGoConfig(t *testing.T) {
	t.Parallel()
	type body struct {
		Name        string   `json:"name"`
		Subjects    []string `json:"subjects"`
		MaxAge      int64    `json:"max_age"`
		MaxMsgSize  int32    `json:"max_msg_size"`
		Description *string  `json:"description"`
		Retention   string   `json:"retention"`
		Discard     string   `json:"discard"`
		History     int64    `json:"max_msgs_per_subject"`
		Storage     string   `json:"storage"`
		Replicas    int      `json:"num_replicas"`
	}
	names := namesFor("")
	byBucket := map[string]jetstream.KeyValueConfig{}
	for _, c := range BucketConfigs(BucketOptions{}) {
		byBucket[c.Bucket] = c
	}
	for _, s := range asyncNatsStreams {
		raw := asyncNatsBody(t, s.stream)
		if !json.Valid(raw) || strings.ContainsAny(string(raw), "\n\t") {
			t.Fatalf("%s: not a compact JSON body as serde_json::to_vec writes it", s.stream)
		}
		var b body
		if err := json.Unmarshal(raw, &b); err != nil {
			t.Fatal(err)
		}
		if b.Name != s.stream || b.Storage != "file" {
			t.Errorf("%s: name %q storage %q", s.stream, b.Name, b.Storage)
		}
		if s.bucket == "" {
			sc := DeleteStreamConfig(names, BucketOptions{})
			if b.Name != sc.Name || !slices.Equal(b.Subjects, sc.Subjects) || b.Retention != "workqueue" ||
				b.Discard != "old" || b.MaxAge != 0 || b.Description != nil || b.Replicas != 0 {
				t.Errorf("%s: body %+v does not match Go config %+v", s.stream, b, sc)
			}
			continue
		}
		c, ok := byBucket[s.bucket]
		if !ok {
			t.Fatalf("no Go bucket %s", s.bucket)
		}
		desc := ""
		if b.Description != nil {
			desc = *b.Description
		}
		if b.Name != "KV_"+c.Bucket || !slices.Equal(b.Subjects, []string{"$KV." + c.Bucket + ".>"}) ||
			time.Duration(b.MaxAge) != c.TTL || b.MaxMsgSize != c.MaxValueSize || desc != c.Description ||
			b.Retention != "limits" || b.Discard != "new" || b.History != 1 || b.Replicas != 1 {
			t.Errorf("%s: body %+v does not match Go config %+v", s.stream, b, c)
		}
	}
}

// interopChecks are the creation contract checks against a real server, run against the
// embedded server (the version go.mod pins) by the tests below and against older nats-server
// releases by TestAsyncNatsInteropOlderServers. Each uses the unprefixed reference names: they
// run one at a time per server.
var interopChecks = []struct {
	name string
	run  func(t *testing.T, cfg Config)
}{
	{"BothBootOrders", checkAsyncNatsInterop},
	{"GoGameServer", checkAsyncNatsInteropGoGameServer},
	{"MismatchDetected", checkAsyncNatsInteropMismatchDetected},
	{"Prefix", checkAsyncNatsInteropPrefix},
}

// TestAsyncNatsInterop runs both boot orders against the embedded server with the raw
// async-nats request bodies: the matchmaker (bus.Open) first and a Rust game server second, and
// the other way round, for the default options and explicit Replicas: 1.
func TestAsyncNatsInterop(t *testing.T) { checkAsyncNatsInterop(t, testConfig("interop")) }

func checkAsyncNatsInterop(t *testing.T, cfg Config) {
	ctx, nc, js := interopConn(t, cfg)
	rustBoot := func(t *testing.T, what string) {
		t.Helper()
		for _, s := range asyncNatsStreams {
			err := rustCreate(ctx, nc, s.stream, asyncNatsBody(t, s.stream))
			// nats-server 2.10 removes a deleted stream's directory in the background: creating
			// it again at once (this test deletes the streams between phases; a deployment never
			// does) can fail with "error creating store for stream" until that is done.
			var apiErr *jsAPIError
			for try := 0; try < 20 && errors.As(err, &apiErr) && apiErr.ErrCode == errCodeStreamCreate; try++ {
				time.Sleep(50 * time.Millisecond)
				err = rustCreate(ctx, nc, s.stream, asyncNatsBody(t, s.stream))
			}
			if err != nil {
				t.Fatalf("%s: async-nats STREAM.CREATE %s: %v (a Rust game server would panic at boot)", what, s.stream, err)
			}
		}
	}
	var reference map[string]map[string]any // stored configs of the first phase, for cross-checks
	for _, tt := range []struct {
		name string
		opts BucketOptions
	}{
		{"default options", BucketOptions{}},
		{"replicas 1", BucketOptions{Replicas: 1}},
	} {
		t.Run(tt.name+"/go first", func(t *testing.T) {
			deleteInteropStreams(ctx, t, js)
			if _, err := Open(ctx, nc, tt.opts); err != nil {
				t.Fatal(err)
			}
			goCfg := storedConfigs(ctx, t, nc)
			rustBoot(t, "after bus.Open")
			if d := diffConfigs(goCfg, storedConfigs(ctx, t, nc)); d != "" {
				t.Errorf("async-nats create changed the Go-created streams: %s", d)
			}
			rustBoot(t, "second Rust boot")
			// The matchmaker restarting after Rust game servers booted.
			if _, err := Open(ctx, nc, tt.opts); err != nil {
				t.Fatalf("second bus.Open: %v", err)
			}
			if d := diffConfigs(goCfg, storedConfigs(ctx, t, nc)); d != "" {
				t.Errorf("second bus.Open changed the streams: %s", d)
			}
			if reference == nil {
				reference = goCfg
			} else if d := diffConfigs(reference, goCfg); d != "" {
				t.Errorf("stored configs differ from the first phase: %s", d)
			}
		})
		t.Run(tt.name+"/rust first", func(t *testing.T) {
			deleteInteropStreams(ctx, t, js)
			rustBoot(t, "on an empty server")
			rustCfg := storedConfigs(ctx, t, nc)
			if _, err := Open(ctx, nc, tt.opts); err != nil {
				t.Fatalf("bus.Open on Rust-created streams: %v", err)
			}
			if d := diffConfigs(rustCfg, storedConfigs(ctx, t, nc)); d != "" {
				t.Errorf("bus.Open rewrote the Rust-created streams: %s", d)
			}
			rustBoot(t, "Rust reboot after bus.Open")
			if reference != nil {
				if d := diffConfigs(reference, rustCfg); d != "" {
					t.Errorf("Rust-created and Go-created streams differ: %s", d)
				}
			}
		})
	}
}

// TestAsyncNatsInteropGoGameServer checks the Go game server SDK path (OpenGameServer, which
// creates missing buckets with CreateKeyValue) against Rust services in both orders.
func TestAsyncNatsInteropGoGameServer(t *testing.T) {
	checkAsyncNatsInteropGoGameServer(t, testConfig("interop"))
}

func checkAsyncNatsInteropGoGameServer(t *testing.T, cfg Config) {
	ctx, nc, js := interopConn(t, cfg)
	gsStreams := []string{"KV_sessions_ly2eg", "KV_active_connections", "KV_cert_digests"}
	for _, goFirst := range []bool{true, false} {
		deleteInteropStreams(ctx, t, js)
		if !goFirst {
			for _, s := range gsStreams {
				if err := rustCreate(ctx, nc, s, asyncNatsBody(t, s)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if _, err := OpenGameServer(ctx, js, BucketOptions{}); err != nil {
			t.Fatalf("goFirst=%t: OpenGameServer: %v", goFirst, err)
		}
		for _, s := range gsStreams {
			if err := rustCreate(ctx, nc, s, asyncNatsBody(t, s)); err != nil {
				t.Errorf("goFirst=%t: async-nats STREAM.CREATE %s: %v", goFirst, s, err)
			}
		}
	}
}

// TestAsyncNatsInteropMismatchDetected shows that the server really compares configurations (so
// the tests above can fail) and documents the caveat of BucketOptions.Memory: streams the Go side
// created in memory are refused to async-nats, which always asks for file storage.
func TestAsyncNatsInteropMismatchDetected(t *testing.T) {
	checkAsyncNatsInteropMismatchDetected(t, testConfig("interop"))
}

func checkAsyncNatsInteropMismatchDetected(t *testing.T, cfg Config) {
	ctx, nc, _ := interopConn(t, cfg)
	if _, err := Open(ctx, nc, BucketOptions{Memory: true}); err != nil {
		t.Fatal(err)
	}
	for _, s := range asyncNatsStreams {
		err := rustCreate(ctx, nc, s.stream, asyncNatsBody(t, s.stream))
		var apiErr *jsAPIError
		if !errors.As(err, &apiErr) || apiErr.ErrCode != errCodeStreamNameInUse {
			t.Errorf("%s: err = %v, want err_code %d (different configuration)", s.stream, err, errCodeStreamNameInUse)
		}
	}
}

// TestAsyncNatsInteropPrefix documents that a bucket prefix gives the Go deployment its own
// streams: a Rust game server (which only knows the reference's names) creates and uses separate,
// unprefixed ones that the Go matchmaker never reads.
// TestAsyncNatsInteropPrefix runs on a server of its own: it creates the reference stream names
// right after other tests deleted them, and a server removes a deleted stream's directory in
// the background ("could not create storage directory" about 1 run in 25 under load).
func TestAsyncNatsInteropPrefix(t *testing.T) {
	srv, err := natsembed.Start(natsembed.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	checkAsyncNatsInteropPrefix(t, Config{Host: srv.ClientURL(), Insecure: true, Name: "interop"})
}

func checkAsyncNatsInteropPrefix(t *testing.T, cfg Config) {
	ctx, nc, js := interopConn(t, cfg)
	b, err := Open(ctx, nc, BucketOptions{Prefix: "interop_"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range asyncNatsStreams {
			_ = js.DeleteStream(context.Background(), strings.Replace(s.stream, "KV_", "KV_interop_", 1))
		}
		_ = js.DeleteStream(context.Background(), b.Names.DeleteStream)
	})
	for _, s := range asyncNatsStreams {
		if _, err := js.Stream(ctx, s.stream); !errors.Is(err, jetstream.ErrStreamNotFound) {
			t.Errorf("%s: err = %v, want not found (prefixed Open must not touch reference names)", s.stream, err)
		}
		if err := rustCreate(ctx, nc, s.stream, asyncNatsBody(t, s.stream)); err != nil {
			t.Errorf("%s: %v", s.stream, err)
		}
	}
}
