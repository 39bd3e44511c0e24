package measure

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// trivialAPI is the "Edgegap" of the floors: it answers every request at once with a small
// JSON body and records when each DELETE arrived.
type trivialAPI struct {
	srv *http.Server
	ln  net.Listener
	url string

	mu      sync.Mutex
	deletes map[string]chan time.Time
}

var trivialBody = []byte(`{"session_id":"floor","status":"Status.READY","ready":true,"kind":"Seat"}`)

func startTrivialAPI() (*trivialAPI, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("measure: trivial HTTP server: %w", err)
	}
	a := &trivialAPI{ln: ln, url: "http://" + ln.Addr().String(), deletes: map[string]chan time.Time{}}
	a.srv = &http.Server{Handler: a, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = a.srv.Serve(ln) }()
	return a, nil
}

func (a *trivialAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	if r.Method == http.MethodDelete {
		at := time.Now()
		id := strings.TrimPrefix(r.URL.Path, "/v1/session/")
		a.mu.Lock()
		ch := a.deletes[id]
		delete(a.deletes, id)
		a.mu.Unlock()
		if ch != nil {
			ch <- at
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(trivialBody)
}

// expectDelete returns a channel that receives the arrival time of DELETE /v1/session/id.
func (a *trivialAPI) expectDelete(id string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	a.mu.Lock()
	a.deletes[id] = ch
	a.mu.Unlock()
	return ch
}

// close closes the server and every connection at once (connections a client dialed but
// never used would hold a graceful shutdown for 5 s).
func (a *trivialAPI) close() { _ = a.srv.Close() }

// newHTTPClient is a client that keeps enough idle connections for any concurrency.
func newHTTPClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: time.Minute,
	}}
}

func roundTrip(ctx context.Context, hc *http.Client, method, url string, body []byte) error {
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(string(body))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, url, resp.Status)
	}
	return nil
}

// GrantFloor is the least any session grant must do, served the way the matchmaker serves
// session.gensession: one NATS request/reply whose responder makes three JetStream KV puts
// and two HTTP round trips (Edgegap create + get) to a trivial HTTP server, in a goroutine per
// request. Grants per second and CPU per grant are compared with it.
type GrantFloor struct {
	nc      *nats.Conn
	sub     *nats.Subscription
	kv      jetstream.KeyValue
	api     *trivialAPI
	hc      *http.Client
	subject string
}

// StartGrantFloor creates (or reuses) the KV bucket kvcfg, starts the trivial HTTP server and
// subscribes the responder on nc. Give kvcfg the settings of the matchmaker's own buckets
// (storage, replicas) and a name of its own.
func StartGrantFloor(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, kvcfg jetstream.KeyValueConfig) (*GrantFloor, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, kvcfg)
	if err != nil {
		return nil, fmt.Errorf("measure: floor bucket %s: %w", kvcfg.Bucket, err)
	}
	api, err := startTrivialAPI()
	if err != nil {
		return nil, err
	}
	f := &GrantFloor{nc: nc, kv: kv, api: api, hc: newHTTPClient(), subject: "bench.floor." + nats.NewInbox()[7:]}
	f.sub, err = nc.QueueSubscribe(f.subject, "floor", func(m *nats.Msg) { go f.serve(m) })
	if err == nil {
		err = nc.Flush()
	}
	if err != nil {
		api.close()
		return nil, fmt.Errorf("measure: floor responder: %w", err)
	}
	return f, nil
}

func (f *GrantFloor) serve(m *nats.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := string(m.Data)
	err := func() error {
		if err := roundTrip(ctx, f.hc, http.MethodPost, f.api.url+"/v1/session", []byte(`{"app_name":"floor"}`)); err != nil {
			return err
		}
		if err := roundTrip(ctx, f.hc, http.MethodGet, f.api.url+"/v1/session/"+id, nil); err != nil {
			return err
		}
		for _, k := range []string{"u_" + id, "e_" + id, "l_" + id} {
			if _, err := f.kv.Put(ctx, k, m.Data); err != nil {
				return err
			}
		}
		return nil
	}()
	if err != nil {
		_ = m.Respond([]byte("error: " + err.Error()))
		return
	}
	_ = m.Respond(trivialBody)
}

// Grant makes one floor grant (i names it).
func (f *GrantFloor) Grant(ctx context.Context, i int) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	msg, err := f.nc.RequestWithContext(ctx, f.subject, []byte("s"+strconv.Itoa(i)))
	if err != nil {
		return err
	}
	if strings.HasPrefix(string(msg.Data), "error: ") {
		return errors.New(string(msg.Data))
	}
	return nil
}

// Purge deletes the floor's keys (between measurement points).
func (f *GrantFloor) Purge(ctx context.Context) error {
	return f.kv.PurgeDeletes(ctx)
}

// Close stops the responder and the HTTP server.
func (f *GrantFloor) Close() {
	_ = f.sub.Unsubscribe()
	f.hc.CloseIdleConnections()
	f.api.close()
}

// Echo is the floor of a NATS round trip: a responder that answers every request with its
// payload from the subscription callback.
type Echo struct {
	nc      *nats.Conn
	sub     *nats.Subscription
	subject string
}

// StartEcho subscribes the echo responder on responder; RoundTrip requests on requester
// (the same connection or another).
func StartEcho(responder, requester *nats.Conn) (*Echo, error) {
	e := &Echo{nc: requester, subject: "bench.echo." + nats.NewInbox()[7:]}
	var err error
	e.sub, err = responder.Subscribe(e.subject, func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err == nil {
		err = responder.Flush()
	}
	if err != nil {
		return nil, fmt.Errorf("measure: echo responder: %w", err)
	}
	return e, nil
}

// RoundTrip makes one request/reply.
func (e *Echo) RoundTrip(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err := e.nc.RequestWithContext(ctx, e.subject, []byte(`{"client_ip":"127.0.0.1"}`))
	return err
}

// Close unsubscribes the responder.
func (e *Echo) Close() { _ = e.sub.Unsubscribe() }

// DeleteFloor is the least a disconnect → delete must take: a KV delete seen by a KV watcher,
// which makes one HTTP DELETE to a trivial server; measured from the KV delete to the DELETE's
// arrival.
type DeleteFloor struct {
	kv   jetstream.KeyValue
	w    jetstream.KeyWatcher
	api  *trivialAPI
	hc   *http.Client
	done chan struct{}
}

// StartDeleteFloor creates (or reuses) the KV bucket kvcfg and starts the watcher.
func StartDeleteFloor(ctx context.Context, js jetstream.JetStream, kvcfg jetstream.KeyValueConfig) (*DeleteFloor, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, kvcfg)
	if err != nil {
		return nil, fmt.Errorf("measure: floor bucket %s: %w", kvcfg.Bucket, err)
	}
	w, err := kv.WatchAll(context.WithoutCancel(ctx), jetstream.UpdatesOnly())
	if err != nil {
		return nil, fmt.Errorf("measure: floor watcher: %w", err)
	}
	api, err := startTrivialAPI()
	if err != nil {
		_ = w.Stop()
		return nil, err
	}
	f := &DeleteFloor{kv: kv, w: w, api: api, hc: newHTTPClient(), done: make(chan struct{})}
	go func() {
		defer close(f.done)
		for e := range w.Updates() {
			if e == nil || e.Operation() == jetstream.KeyValuePut {
				continue
			}
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_ = roundTrip(ctx, f.hc, http.MethodDelete, f.api.url+"/v1/session/"+e.Key(), nil)
			}()
		}
	}()
	return f, nil
}

// Once puts key, deletes it, and returns the time from the delete to the HTTP DELETE's arrival.
func (f *DeleteFloor) Once(ctx context.Context, key string) (time.Duration, error) {
	if _, err := f.kv.Put(ctx, key, []byte("1")); err != nil {
		return 0, err
	}
	arrived := f.api.expectDelete(key)
	t0 := time.Now()
	if err := f.kv.Delete(ctx, key); err != nil {
		return 0, err
	}
	select {
	case at := <-arrived:
		return at.Sub(t0), nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

// Close stops the watcher and the HTTP server.
func (f *DeleteFloor) Close() {
	_ = f.w.Stop()
	<-f.done
	f.hc.CloseIdleConnections()
	f.api.close()
}
