package gameserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/protocol"
)

// contextBody is a context answer as Edgegap serves it (keys in Edgegap's order, not sorted).
const contextBody = `{
  "request_id": "9170f5211e17",
  "public_ip": "127.0.0.1",
  "status": "Status.READY",
  "ready": true,
  "whitelisting_active": false,
  "fqdn": "9170f5211e17.pr.edgegap.net",
  "ports": {
    "server": {"external": 31500, "internal": 6420, "protocol": "UDP", "name": "server",
               "tls_upgrade": false, "link": "9170f5211e17.pr.edgegap.net:31500", "proxy": null}
  },
  "location": {"city":"Montreal","country":"Canada","continent":"North America",
               "administrative_division":"Quebec","timezone":"Eastern Time",
               "latitude":45.513707,"longitude":-73.619073},
  "tags": [],
  "sockets": 6,
  "sockets_usage": 0,
  "is_joinable_by_session": true
}`

// contextPublished is what must appear on gameserver.contexts for contextBody: compact, keys
// sorted at every level (serde_json's default map), numbers as served.
const contextPublished = `{"fqdn":"9170f5211e17.pr.edgegap.net","is_joinable_by_session":true,` +
	`"location":{"administrative_division":"Quebec","city":"Montreal","continent":"North America","country":"Canada","latitude":45.513707,"longitude":-73.619073,"timezone":"Eastern Time"},` +
	`"ports":{"server":{"external":31500,"internal":6420,"link":"9170f5211e17.pr.edgegap.net:31500","name":"server","protocol":"UDP","proxy":null,"tls_upgrade":false}},` +
	`"public_ip":"127.0.0.1","ready":true,"request_id":"9170f5211e17","sockets":6,"sockets_usage":0,"status":"Status.READY","tags":[],"whitelisting_active":false}`

// contextServer is a fake context API. respond decides, per request number (from 1), what to do.
type contextServer struct {
	*httptest.Server
	mu       sync.Mutex
	requests []*http.Request
}

func newContextServer(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *contextServer {
	cs := &contextServer{}
	cs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cs.mu.Lock()
		cs.requests = append(cs.requests, r.Clone(r.Context()))
		n := len(cs.requests)
		cs.mu.Unlock()
		respond(n, w, r)
	}))
	t.Cleanup(cs.Close)
	return cs
}

func (cs *contextServer) request(i int) *http.Request {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return cs.requests[i]
}

func serveContext(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(contextBody))
}

func TestContextFetchedWithRetriesAndPublished(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		respond   func(n int, w http.ResponseWriter, r *http.Request)
		wantCalls int
	}{
		{"first try", func(n int, w http.ResponseWriter, r *http.Request) { serveContext(w) }, 1},
		{"two 5xx then ok", func(n int, w http.ResponseWriter, r *http.Request) {
			if n <= 2 {
				http.Error(w, `{"message":"try later"}`, []int{http.StatusBadGateway, http.StatusServiceUnavailable}[n-1])
				return
			}
			serveContext(w)
		}, 3},
		{"first attempt times out", func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				select { // longer than the client's 300 ms attempt timeout
				case <-time.After(2 * time.Second):
				case <-r.Context().Done():
				}
				return
			}
			serveContext(w)
		}, 2},
		{"edgegap client gives up, agent keeps trying", func(n int, w http.ResponseWriter, r *http.Request) {
			if n <= 4 { // the test client makes 3 attempts per call
				http.Error(w, "down", http.StatusInternalServerError)
				return
			}
			serveContext(w)
		}, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inBubble(t, func(t *testing.T, w *fakeWorld) {
				w.ctxAPI.respond = tt.respond
				a, _, _ := w.startAgent(t, w.config())
				select {
				case <-a.Ready():
				case <-time.After(time.Minute):
					t.Fatal("Ready not closed")
				}
				pub := w.nats.publishedContexts()
				if len(pub) != 1 || string(pub[0]) != contextPublished {
					t.Fatalf("published %q\nwant\n%s", pub, contextPublished)
				}
				if got := w.ctxAPI.count(); got != tt.wantCalls {
					t.Errorf("context API called %d times, want %d", got, tt.wantCalls)
				}
				for i := range w.ctxAPI.count() {
					r, _ := w.ctxAPI.request(i)
					if r.Method != http.MethodGet || r.URL.String() != fakeContextURL {
						t.Errorf("request %d: %s %s", i, r.Method, r.URL)
					}
					if got := r.Header.Get("Authorization"); got != testContextToken {
						t.Errorf("request %d: Authorization %q, want the raw context token", i, got)
					}
					if ua := r.Header.Get("User-Agent"); !strings.HasPrefix(ua, "bevygap-go/") {
						t.Errorf("request %d: User-Agent %q", i, ua)
					}
				}
				d, ok := a.Deployment()
				if !ok || d.FQDN != "9170f5211e17.pr.edgegap.net" || d.Sockets == nil || *d.Sockets != 6 {
					t.Errorf("Deployment() = %+v, %v", d, ok)
				}
				time.Sleep(time.Minute)
				synctest.Wait()
				if n := len(w.nats.publishedContexts()); n != 1 {
					t.Errorf("context published %d times", n)
				}
			})
		})
	}
}

// TestContextPublishedOnNATS: the context reaches a subscriber of gameserver.contexts on a real
// NATS server, byte for byte.
func TestContextPublishedOnNATS(t *testing.T) {
	nc := connect(t)
	resetBuckets(t, nc, 0)
	cs := newContextServer(t, func(n int, w http.ResponseWriter, r *http.Request) { serveContext(w) })
	sub, err := nc.SubscribeSync(protocol.SubjectGameserverContexts)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	a, _, _ := startAgent(t, fastConfig(testArbitrium(cs.URL+"/v1/context/9170f5211e17/17", cs.URL+"/stop")), nc)
	msg, err := sub.NextMsg(10 * time.Second)
	if err != nil {
		t.Fatalf("no context published: %v", err)
	}
	if string(msg.Data) != contextPublished {
		t.Fatalf("published\n%s\nwant\n%s", msg.Data, contextPublished)
	}
	select {
	case <-a.Ready():
	case <-time.After(5 * time.Second):
		t.Fatal("Ready not closed")
	}
	if r := cs.request(0); r.Method != http.MethodGet || r.URL.Path != "/v1/context/9170f5211e17/17" || r.Header.Get("Authorization") != testContextToken {
		t.Errorf("request: %s %s, Authorization %q", r.Method, r.URL.Path, r.Header.Get("Authorization"))
	}
}

func TestContextRejectedIsAConfigError(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		w.ctxAPI.respond = func(n int, rw http.ResponseWriter, r *http.Request) {
			rw.WriteHeader(http.StatusUnauthorized)
			_, _ = rw.Write([]byte(`{"message":"Invalid token"}`))
		}
		_, lb, runErr := w.startAgent(t, w.config())
		select {
		case err := <-runErr:
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("Run = %v, want ErrConfig", err)
			}
			if strings.Contains(err.Error(), testContextToken) || strings.Contains(lb.String(), testContextToken) {
				t.Fatal("context token leaked into error or log")
			}
		case <-time.After(time.Minute):
			t.Fatal("Run did not stop on a rejected context token")
		}
		if got := w.ctxAPI.count(); got != 1 {
			t.Errorf("a 401 was retried: %d calls", got)
		}
	})
}

func TestCertDigestStoredInReferenceBuckets(t *testing.T) {
	nc := connect(t)
	js := resetBuckets(t, nc, 0) // no buckets: the agent must create them like the reference
	cs := newContextServer(t, func(n int, w http.ResponseWriter, r *http.Request) { serveContext(w) })
	cfg := fastConfig(testArbitrium(cs.URL+"/ctx", cs.URL+"/stop"))
	cfg.CertDigest = "6c:2e:8a:5d:0f:ab:cd"
	a, _, _ := startAgent(t, cfg, nc)
	select {
	case <-a.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("not ready")
	}
	e, err := kv(t, js, protocol.BucketCertDigests).Get(t.Context(), "127.0.0.1")
	if err != nil {
		t.Fatalf("cert_digests[127.0.0.1]: %v", err)
	}
	if string(e.Value()) != cfg.CertDigest {
		t.Fatalf("digest %q, want %q", e.Value(), cfg.CertDigest)
	}
	for _, want := range bus.GameServerBucketConfigs(bus.BucketOptions{}) {
		st, err := kv(t, js, want.Bucket).Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		info := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config
		if want.MaxValueSize == 0 {
			want.MaxValueSize = -1 // unlimited
		}
		if st.TTL() != want.TTL || info.MaxMsgSize != want.MaxValueSize || info.Description != want.Description {
			t.Errorf("bucket %s: ttl %v max value %d desc %q; want %v %d %q", want.Bucket,
				st.TTL(), info.MaxMsgSize, info.Description, want.TTL, want.MaxValueSize, want.Description)
		}
	}
}

func TestContextJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "sorted and compact", in: `{ "b": 1, "a": {"z": [3, {"y": 2, "x": 1}], "c": null} }`,
			want: `{"a":{"c":null,"z":[3,{"x":1,"y":2}]},"b":1}`},
		{name: "numbers as served", in: `{"big":18446744073709551615,"f":45.513707,"e":1e3,"neg":-0.5}`,
			want: `{"big":18446744073709551615,"e":1e3,"f":45.513707,"neg":-0.5}`},
		{name: "no HTML escaping", in: `{"fqdn":"a<b>&c"}`, want: `{"fqdn":"a<b>&c"}`},
		{name: "unicode kept", in: `{"city":"Montréal"}`, want: `{"city":"Montréal"}`},
		{name: "empty object", in: ` {} `, want: `{}`},
		{name: "array", in: `[1,2]`, wantErr: true},
		{name: "null", in: `null`, wantErr: true},
		{name: "string", in: `"x"`, wantErr: true},
		{name: "trailing data", in: `{"a":1} {"b":2}`, wantErr: true},
		{name: "trailing garbage", in: `{"a":1} x`, wantErr: true},
		{name: "truncated", in: `{"a":`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := contextJSON([]byte(tt.in))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("accepted: %s", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func FuzzContextJSON(f *testing.F) {
	f.Add([]byte(contextBody))
	f.Add([]byte(`{"a":[1,{"b":"<"}]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := contextJSON(in)
		if err != nil {
			return
		}
		if !json.Valid(out) || out[0] != '{' {
			t.Fatalf("invalid output %q for %q", out, in)
		}
		again, err := contextJSON(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q (%v)", out, again, err)
		}
	})
}

func TestContextNotAnObjectIsLoggedNotFatal(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		w.ctxAPI.respond = func(n int, rw http.ResponseWriter, r *http.Request) {
			_, _ = rw.Write([]byte(`["not", "a", "deployment"]`))
		}
		a, lb, runErr := w.startAgent(t, w.config())
		time.Sleep(time.Minute)
		synctest.Wait()
		if !strings.Contains(lb.String(), "could not publish the deployment context") {
			t.Fatal("error not logged")
		}
		select {
		case err := <-runErr:
			t.Fatalf("Run stopped: %v", err)
		case <-a.Ready():
			t.Fatal("Ready without a context")
		default:
		}
		if pub := w.nats.publishedContexts(); len(pub) != 0 {
			t.Fatalf("published %q", pub)
		}
		if got := w.ctxAPI.count(); got != 1 {
			t.Fatalf("a malformed context was fetched %d times", got)
		}
	})
}
