package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/bench/measure"
	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/internal/natsembed"
)

func progress(o Options, format string, args ...any) {
	fmt.Fprintf(o.Progress, format+"\n", args...)
}

// runP1: grants/s and CPU per grant through session.gensession beside the grant floor, twice
// on the in-process stack: with the matchmaker creating sessions without a webhook URL (it finds
// them ready by its first GET: exactly the floor's create + get), and with session webhooks as
// `bevygap dev` runs (the simulator then also POSTs each session's webhook to the sink, which
// publishes it on NATS for the matchmaker).
func runP1(ctx context.Context, o Options, r *Report) error {
	if o.External != nil {
		return runP1Of(ctx, o, r, false, "")
	}
	if err := runP1Of(ctx, o, r, false, ", no webhooks"); err != nil {
		return err
	}
	if err := runP1Of(ctx, o, r, true, ", with webhooks"); err != nil {
		return err
	}
	r.Notes = append(r.Notes, "P1 \"no webhooks\": the matchmaker creates its sessions without a webhook URL and finds them ready by its first GET — "+
		"the floor's work exactly; \"with webhooks\" (bevygap dev's default): the simulator also POSTs each session's webhook to the webhook sink, "+
		"which publishes it on NATS to the matchmaker — work the floor does not do (the matchmaker's look right after the create grants the session first)")
	return nil
}

// runP1Of measures P1 on a stack with or without session webhooks; suffix ends the row names.
func runP1Of(ctx context.Context, o Options, r *Report, webhooks bool, suffix string) error {
	s, err := target(ctx, o, webhooks)
	if err != nil {
		return err
	}
	defer func() { _ = s.close(ctx) }()
	floor, err := measure.StartGrantFloor(ctx, s.floorNC, s.js, floorBucket("bench_floor_grant"))
	if err != nil {
		return err
	}
	defer floor.Close()

	floorOp := func(ctx context.Context, _, i int) error { return floor.Grant(ctx, i) }
	grantOp := func(ctx context.Context, _, _ int) error { return grant(ctx, s.nc) }
	// Warm up both paths at every concurrency (connections, pools, goroutine stacks), not recorded.
	for _, c := range o.P1Concurrency {
		for _, op := range []measure.Op{floorOp, grantOp} {
			if _, err := measure.Closed(ctx, c, min(o.Duration/4, 300*time.Millisecond), false, op); err != nil {
				return fmt.Errorf("warming up at concurrency %d: %w", c, err)
			}
		}
		s.release()
	}

	variant := ""
	if webhooks {
		variant = "webhooks-"
	}
	type point struct{ rate, cpu, frate, fcpu []float64 }
	pts := make([]point, len(o.P1Concurrency))
	for run := range o.Runs {
		for i, c := range o.P1Concurrency {
			phase := fmt.Sprintf("P1-%sc%d-run%d-", variant, c, run+1)
			fr, err := profiled(o, phase+"floor", func() (measure.Result, error) {
				return measure.Closed(ctx, c, o.Duration, false, floorOp)
			})
			if err != nil {
				return fmt.Errorf("floor at concurrency %d: %w", c, err)
			}
			gr, err := profiled(o, phase+"bevygap", func() (measure.Result, error) {
				return measure.Closed(ctx, c, o.Duration, false, grantOp)
			})
			s.release()
			if err != nil {
				return fmt.Errorf("grants at concurrency %d: %w", c, err)
			}
			p := &pts[i]
			p.rate, p.frate = append(p.rate, gr.PerSecond()), append(p.frate, fr.PerSecond())
			p.cpu, p.fcpu = append(p.cpu, ms(gr.CPUPerOp())), append(p.fcpu, ms(fr.CPUPerOp()))
			progress(o, "P1%s run %d concurrency %d: %.0f grants/s (%.3f ms CPU each), floor %.0f/s (%.3f ms)",
				suffix, run+1, c, gr.PerSecond(), ms(gr.CPUPerOp()), fr.PerSecond(), ms(fr.CPUPerOp()))
		}
	}
	const floorName = "NATS req/reply + 3 KV puts + 2 HTTP round trips"
	for i, c := range o.P1Concurrency {
		r.add(Row{ID: P1, Name: fmt.Sprintf("grants/s, concurrency %d%s", c, suffix), Unit: "/s", HigherIsBetter: true,
			FloorName: floorName}, pts[i].rate, pts[i].frate)
	}
	if s.st == nil {
		r.Notes = append(r.Notes, "P1 against an external stack: no CPU per grant (the stack's CPU is another process's); its seats are not released between points")
		return nil
	}
	for i, c := range o.P1Concurrency {
		r.add(Row{ID: P1, Name: fmt.Sprintf("CPU per grant, concurrency %d%s", c, suffix), Unit: "ms",
			FloorName: floorName + " (process CPU)"}, pts[i].cpu, pts[i].fcpu)
	}
	return nil
}

// profiled runs a timed phase between o.Profile's start and stop.
func profiled(o Options, phase string, run func() (measure.Result, error)) (measure.Result, error) {
	stop := o.Profile(phase)
	defer stop()
	return run()
}

// runP5: first WebSocket message → SessionReady, beside a bare NATS round trip, two ways: the
// whole path (front door → matchmaker → Edgegap simulator → ready; bounded below by the grant
// throughput, Little's law) and, in-process only, the front door alone (the same WebSocket
// requests through the same front door, answered at once by an instant NATS responder). Each
// is measured right after its own floor point.
func runP5(ctx context.Context, o Options, r *Report) error {
	if o.External != nil && o.External.WebSocketURL == "" {
		r.Notes = append(r.Notes, "P5 skipped: an external stack without a WebSocket URL")
		return nil
	}
	s, err := target(ctx, o, true)
	if err != nil {
		return err
	}
	defer func() { _ = s.close(ctx) }()
	echo, err := measure.StartEcho(s.floorNC, s.nc)
	if err != nil {
		return err
	}
	defer echo.Close()
	echoOp := func(ctx context.Context, _, _ int) error { return echo.RoundTrip(ctx) }

	type path struct {
		id, name, game, version string
		pts                     []p5point
	}
	paths := []*path{{id: "whole", name: "whole path: WebSocket request → SessionReady", game: s.game, version: s.version}}
	if s.st != nil {
		fd, err := startInstantResponder(s.floorNC, frontDoorGame, frontDoorVersion)
		if err != nil {
			return err
		}
		defer fd.Close()
		paths = append(paths, &path{id: "frontdoor", name: "front door: WebSocket request → SessionReady (instant NATS responder)",
			game: frontDoorGame, version: frontDoorVersion})
	} else {
		r.Notes = append(r.Notes, "P5 front door rows skipped: the instant responder runs with the in-process stack only")
	}
	for _, p := range paths {
		p.pts = make([]p5point, len(o.P5Concurrency))
		if _, _, err := s.wsSessionOf(ctx, p.game, p.version); err != nil { // warm up
			return err
		}
	}

	for run := range o.Runs {
		for i, c := range o.P5Concurrency {
			for _, p := range paths {
				phase := fmt.Sprintf("P5-%s-c%d-run%d-", p.id, c, run+1)
				fr, err := profiled(o, phase+"floor", func() (measure.Result, error) {
					return measure.Closed(ctx, c, o.Duration, true, echoOp)
				})
				if err != nil {
					return fmt.Errorf("floor at concurrency %d: %w", c, err)
				}
				var lat latencies
				res, err := profiled(o, phase+"bevygap", func() (measure.Result, error) {
					return measure.Closed(ctx, c, o.Duration, false, func(ctx context.Context, _, _ int) error {
						_, d, err := s.wsSessionOf(ctx, p.game, p.version)
						if err == nil {
							lat.add(d)
						}
						return err
					})
				})
				s.release()
				if err != nil {
					return fmt.Errorf("%s at concurrency %d: %w", p.id, c, err)
				}
				pt := &p.pts[i]
				pt.p50 = append(pt.p50, ms(measure.Percentile(lat.ds, 50)))
				pt.p99 = append(pt.p99, ms(measure.Percentile(lat.ds, 99)))
				pt.f50 = append(pt.f50, ms(fr.Percentile(50)))
				pt.f99 = append(pt.f99, ms(fr.Percentile(99)))
				progress(o, "P5 %s run %d concurrency %d: p50 %.2f ms p99 %.2f ms (%.0f sessions/s, %.3f ms CPU each, the process using %.2f cores), NATS round trip p50 %.2f ms p99 %.2f ms",
					p.id, run+1, c, pt.p50[len(pt.p50)-1], pt.p99[len(pt.p99)-1], res.PerSecond(), ms(res.CPUPerOp()),
					res.CPU.Seconds()/res.Elapsed.Seconds(), pt.f50[len(pt.f50)-1], pt.f99[len(pt.f99)-1])
			}
		}
	}
	for _, p := range paths {
		for i, c := range o.P5Concurrency {
			way := "sequential"
			if c > 1 {
				way = strconv.Itoa(c) + "-way"
			}
			for _, q := range []struct {
				name string
				v, f []float64
			}{{"p50", p.pts[i].p50, p.pts[i].f50}, {"p99", p.pts[i].p99, p.pts[i].f99}} {
				r.add(Row{ID: P5, Name: fmt.Sprintf("%s %s, %s", p.name, q.name, way), Unit: "ms",
					FloorName: "bare NATS request/reply " + q.name + ", same concurrency"}, q.v, q.f)
				overhead(r)
			}
		}
	}
	return nil
}

// p5point is one P5 point over the runs: the measurement's and the floor's p50 and p99.
type p5point struct{ p50, p99, f50, f99 []float64 }

// overhead fills in the last row's overhead above its floor.
func overhead(r *Report) {
	row := &r.Rows[len(r.Rows)-1]
	row.Overhead = row.Value.Median - row.Floor.Median
}

// runP6: a game server's disconnect (active_connections delete marker) → the Edgegap DELETE.
func runP6(ctx context.Context, o Options, r *Report) error {
	if o.External != nil {
		r.Notes = append(r.Notes, "P6 skipped: it needs the in-process stack")
		return nil
	}
	s, err := startStack(ctx, -1)
	if err != nil {
		return err
	}
	defer func() { _ = s.close(ctx) }()
	floor, err := measure.StartDeleteFloor(ctx, s.st.Buckets().JS, floorBucket("bench_floor_delete"))
	if err != nil {
		return err
	}
	defer floor.Close()
	var vals, floors []float64
	for run := range o.Runs {
		var ds, fs []time.Duration
		for i := range o.P6Samples {
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			sid, _, err := s.wsSession(wctx)
			if err == nil {
				err = s.claim(wctx, sid)
			}
			if err != nil {
				cancel()
				return err
			}
			// The simulator's GET answers in well under a millisecond: poll it to see the DELETE.
			t0 := time.Now()
			if err := s.st.Buckets().ActiveConnections.Delete(wctx, sid); err != nil {
				cancel()
				return err
			}
			gone, err := s.waitGone(wctx, sid)
			cancel()
			if err != nil {
				return fmt.Errorf("%w: session %s not deleted: %w", errStack, sid, err)
			}
			ds = append(ds, gone.Sub(t0))
			fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
			fd, err := floor.Once(fctx, "s"+strconv.Itoa(run)+"_"+strconv.Itoa(i))
			fcancel()
			if err != nil {
				return fmt.Errorf("floor: %w", err)
			}
			fs = append(fs, fd)
		}
		vals = append(vals, ms(measure.Percentile(ds, 50)))
		floors = append(floors, ms(measure.Percentile(fs, 50)))
		progress(o, "P6 run %d: disconnect → delete median %.2f ms, floor %.2f ms", run+1, vals[run], floors[run])
	}
	r.add(Row{ID: P6, Name: "disconnect → Edgegap DELETE (median of " + strconv.Itoa(o.P6Samples) + ")", Unit: "ms",
		FloorName: "KV delete → KV watcher → HTTP DELETE", Note: "seen by polling GET every 0.1 ms"}, vals, floors)
	overhead(r)
	return nil
}

// runP7: cold start of the whole stack → first grant, beside NATS + buckets + one round trip.
func runP7(ctx context.Context, o Options, r *Report) error {
	if o.External != nil {
		r.Notes = append(r.Notes, "P7 skipped: it needs the in-process stack")
		return nil
	}
	var vals, floors []float64
	for run := range o.Runs {
		t0 := time.Now()
		s, err := startStack(ctx, -1)
		if err != nil {
			return err
		}
		for {
			err = grant(ctx, s.nc)
			if err == nil || !errors.Is(err, nats.ErrNoResponders) || ctx.Err() != nil {
				break
			}
			time.Sleep(time.Millisecond)
		}
		d := time.Since(t0)
		cerr := s.close(ctx)
		if err != nil {
			return err
		}
		if cerr != nil {
			return fmt.Errorf("%w: shutdown: %w", errStack, cerr)
		}
		fd, err := floorColdStart(ctx)
		if err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		vals, floors = append(vals, ms(d)), append(floors, ms(fd))
		progress(o, "P7 run %d: stack start → first grant %.1f ms, floor %.1f ms", run+1, ms(d), ms(fd))
	}
	r.add(Row{ID: P7, Name: "cold start → first grant (in-process stack)", Unit: "ms",
		FloorName: "embedded NATS start + open buckets + 1 request/reply"}, vals, floors)
	overhead(r)
	return nil
}

func floorColdStart(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	srv, err := natsembed.Start(natsembed.Config{})
	if err != nil {
		return 0, err
	}
	defer srv.Shutdown()
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	if _, err := bus.Open(ctx, nc, bus.BucketOptions{}); err != nil {
		return 0, err
	}
	echo, err := measure.StartEcho(nc, nc)
	if err != nil {
		return 0, err
	}
	defer echo.Close()
	if err := echo.RoundTrip(ctx); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// runP4: memory per waiting WebSocket in the stack's process beside a bare echo server, each
// measured in a process of its own (Options.ServerCmd) when it can.
func runP4(ctx context.Context, o Options, r *Report) error {
	if o.External != nil {
		r.Notes = append(r.Notes, "P4 skipped: it needs the in-process stack")
		return nil
	}
	if o.ClientCmd == nil {
		r.Notes = append(r.Notes, "P4 skipped: no client process command")
		return nil
	}
	largest := 0
	for _, n := range o.P4Conns {
		largest = max(largest, n)
	}
	limit, err := measure.RaiseNoFile(uint64(largest + 4096))
	conns := o.P4Conns
	if err != nil {
		capN := int(limit) - 4096
		if capN < 100 {
			return err
		}
		conns = nil
		for _, n := range o.P4Conns {
			conns = append(conns, min(n, capN))
		}
		r.Notes = append(r.Notes, fmt.Sprintf("P4: open file limit %d: connections capped at %d", limit, capN))
	}
	for _, n := range conns {
		var vals, floors []float64
		for run := range o.Runs {
			phase := fmt.Sprintf("P4-n%d-run%d-", n, run+1)
			f, err := p4KiB(ctx, o, p4Echo, n, phase+"floor")
			if err != nil {
				return fmt.Errorf("echo server, %d connections: %w", n, err)
			}
			v, err := p4KiB(ctx, o, p4Stack, n, phase+"bevygap")
			if err != nil {
				return fmt.Errorf("stack, %d connections: %w", n, err)
			}
			vals, floors = append(vals, v), append(floors, f)
			progress(o, "P4 run %d, %d waiting: %.1f KiB each, bare echo server %.1f KiB", run+1, n, v, f)
		}
		r.add(Row{ID: P4, Name: fmt.Sprintf("memory per waiting WebSocket, %d waiting", n), Unit: "KiB",
			FloorName: "bare coder/websocket echo server, same idle connections (heap + stacks)"}, vals, floors)
	}
	return nil
}

// kibPerConn has the client process open spec's connections and hold them idle, and returns
// the growth of this process's heap + stacks in use per connection, in KiB. With --profile, the phase's heap profiles (allocs-base before the clients came,
// allocs with them all waiting; compare their inuse_space) tell what holds it.
func kibPerConn(ctx context.Context, o Options, spec measure.ClientSpec, phase string) (float64, error) {
	before := measure.MemInUse()
	stop := o.Profile(phase)
	release, err := measure.HoldIdle(ctx, o.ClientCmd(), spec)
	if err != nil {
		stop()
		return 0, err
	}
	defer release()
	time.Sleep(o.P4Settle) // let the server goroutines park
	after := measure.MemInUse()
	stop()
	return float64(int64(after)-int64(before)) / float64(spec.N) / 1024, nil
}

func echoKiB(ctx context.Context, o Options, n int, phase string) (float64, error) {
	ts := httptest.NewServer(http.HandlerFunc(measure.EchoWebSocket))
	defer ts.Close()
	return kibPerConn(ctx, o, measure.ClientSpec{URL: "ws" + strings.TrimPrefix(ts.URL, "http"), N: n,
		First: "hello", WantPrefix: "hello"}, phase)
}

// stackKiB measures a stack whose deployments never become ready within the run: every
// player waits (the first ones for their session to boot, the rest in the admission queue).
func stackKiB(ctx context.Context, o Options, n int, phase string) (float64, error) {
	s, err := startStack(ctx, time.Hour)
	if err != nil {
		return 0, err
	}
	defer func() { _ = s.close(ctx) }()
	first := fmt.Sprintf(`{"game":%q,"version":%q,"client_ip":null}`, s.game, s.version)
	return kibPerConn(ctx, o, measure.ClientSpec{URL: s.wsURL, N: n, First: first,
		WantPrefix: `"Acknowledged"`}, phase)
}
