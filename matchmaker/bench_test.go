package matchmaker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bench/measure"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/protocol"
)

// BenchmarkGrants measures session grants per second through session.gensession against an
// instant-ready simulator (one deployment with room for everyone, so every session is ready at
// its first GET), beside a floor measured in the same run at the same concurrency: what a grant
// must do at least — a bare NATS request/reply, the three KV puts every grant makes and two
// HTTP round trips (Edgegap create + get) to a trivial HTTP server. Each reports ops/s and the
// CPU time of the whole process (NATS server, simulator and requesters included) per op.
//
//	go test -run '^$' -bench Grants -benchtime 3s ./matchmaker/
func BenchmarkGrants(b *testing.B) {
	h := newHarness(b, harnessOpts{quiet: true, sockets: 1 << 30, configure: func(c *Config) {
		c.ReadinessLimit = 10 * time.Minute // no reaping during the run
		c.Reconcile = false
		c.CertDigestWait = 0
	}})
	body := []byte(`{"client_ip":"81.2.69.160"}`)
	trivial := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"session_id":"x"}`)
	}))
	b.Cleanup(trivial.Close)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	hc := &http.Client{Transport: tr}
	roundTrip := func(method string) error {
		var rd io.Reader
		if method == http.MethodPost {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequest(method, trivial.URL+"/v1/session", rd)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}
	sub, err := h.nc.QueueSubscribe("bench.floor", "q", func(m *nats.Msg) { _ = m.Respond(body) })
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Unsubscribe() })

	for _, clients := range []int{16, 64} {
		// RunParallel runs parallelism × GOMAXPROCS requesters.
		par := max(1, clients/runtime.GOMAXPROCS(0))
		b.Run(fmt.Sprintf("c%d/floor_nats_reqreply_3_kv_puts_2_http", clients), func(b *testing.B) {
			var n atomic.Int64
			b.SetParallelism(par)
			m := startOpMeter(b)
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					id := "floor" + strconv.FormatInt(n.Add(1), 10)
					if _, err := h.nc.Request("bench.floor", body, 5*time.Second); err != nil {
						b.Error(err)
						return
					}
					if err := roundTrip(http.MethodPost); err != nil {
						b.Error(err)
						return
					}
					if err := roundTrip(http.MethodGet); err != nil {
						b.Error(err)
						return
					}
					for _, kv := range []jetstream.KeyValue{h.b.UnclaimedSessions, h.b.SessionsLy2Eg, h.b.SessionsEg2Ly} {
						if _, err := kv.Put(ctx, id, []byte(id)); err != nil {
							b.Error(err)
							return
						}
					}
				}
			})
			m.report(b, "ops/s")
		})

		b.Run(fmt.Sprintf("c%d/gensession", clients), func(b *testing.B) {
			b.SetParallelism(par)
			h.sim.ResetCallCounts()
			m := startOpMeter(b)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					msg, err := h.nc.Request(protocol.SubjectGenSession, body, 10*time.Second)
					if err != nil {
						b.Error(err)
						return
					}
					if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
						b.Errorf("error %s %s", code, msg.Header.Get("Nats-Service-Error"))
						return
					}
				}
			})
			m.report(b, "grants/s")
			b.ReportMetric(float64(h.sim.CallCounts().Total())/float64(b.N), "edgegap-calls/op")
		})
	}
}

// opMeter measures the wall time and the CPU time of the whole process over a benchmark.
type opMeter struct {
	start time.Time
	cpu   time.Duration
}

func startOpMeter(b *testing.B) opMeter {
	b.ResetTimer()
	return opMeter{start: time.Now(), cpu: measure.ProcessCPU()}
}

// report adds rate (ops per second, named unit) and cpu-µs/op.
func (m opMeter) report(b *testing.B, unit string) {
	cpu := measure.ProcessCPU() - m.cpu
	b.ReportMetric(float64(b.N)/time.Since(m.start).Seconds(), unit)
	if cpu > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/op")
	}
}

// BenchmarkEdgegapCallsPerSession counts Edgegap API calls per granted session (create, GETs,
// and the final DELETE after the player leaves) with a simulated 30 s boot. Simulated time and
// the matchmaker's limits are scaled by the same factor (30 s boot = 300 ms, readiness limit
// 60 s = 600 ms), so the schedule is the production one. Compare: the Rust matchmaker polls
// every 200 ms, ~150 GETs for a 30 s boot.
//
//	go test -run '^$' -bench CallsPerSession -benchtime 20x ./matchmaker/
func BenchmarkEdgegapCallsPerSession(b *testing.B) {
	const scale = 100 // simulated seconds per real second
	for _, tc := range []struct {
		name    string
		webhook bool
		faults  edgegapsim.Faults
	}{
		{"webhook", true, edgegapsim.Faults{}},
		{"webhook_lost_fallback_poll", true, edgegapsim.Faults{WebhookLossRate: 1}},
		{"no_webhook_poll_only", false, edgegapsim.Faults{}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := newHarness(b, harnessOpts{quiet: true, webhook: tc.webhook, faults: tc.faults,
				clock: edgegapsim.ScaledClock(scale), boot: 30 * time.Second,
				configure: func(c *Config) {
					c.ReadinessLimit = 60 * time.Second / scale
					c.ClaimGrace = 2 * time.Second / scale * 10
					c.PollInitial = 500 * time.Millisecond / scale
					c.PollMax = 3 * time.Second / scale
					c.CertDigestWait = 0
					c.Reconcile = false
				}})
			h.sim.ResetCallCounts()
			b.ResetTimer()
			var wg sync.WaitGroup
			sem := make(chan struct{}, 20) // players arriving together, not b.N at once
			for i := 0; i < b.N; i++ {
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					msg, err := h.nc.Request(protocol.SubjectGenSession, []byte(`{"client_ip":"1.2.3.4"}`), 10*time.Second)
					if err != nil || msg.Header.Get("Nats-Service-Error-Code") != "" {
						b.Errorf("request failed: %v %v", err, msg.Header)
						return
					}
				}()
			}
			wg.Wait()
			// Every player connects and leaves: the sessions are deleted.
			ctx := context.Background()
			keys, err := h.b.SessionsEg2Ly.Keys(ctx)
			if err != nil {
				b.Fatal(err)
			}
			for _, sid := range keys {
				if _, err := h.b.ActiveConnections.Put(ctx, sid, []byte("1")); err != nil {
					b.Fatal(err)
				}
				if err := h.b.ActiveConnections.Delete(ctx, sid); err != nil {
					b.Fatal(err)
				}
			}
			h.noLeaks(b, 10*time.Second)
			b.StopTimer()
			calls := h.sim.CallCounts()
			n := float64(b.N)
			b.ReportMetric(float64(calls.Total())/n, "calls/session")
			b.ReportMetric(float64(calls.Endpoint(edgegap.EndpointSessionCreate))/n, "creates/session")
			b.ReportMetric(float64(calls.Endpoint(edgegap.EndpointSessionGet))/n, "gets/session")
			b.ReportMetric(float64(calls.Endpoint(edgegap.EndpointSessionDelete))/n, "deletes/session")
			b.ReportMetric(0, "ns/op")
		})
	}
}
