package matchmaker

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/protocol"
)

// The match queue through JetStream, without Edgegap: a ticket is put in play_tickets, the
// lease holder sees it (watch), forms the match (match.Form), claims its tickets (one
// compare-and-set each) and deletes them once the match has run — here a runner that does
// nothing, so what is measured is the queue itself. Beside it, in the same run, the floor: the
// same number of bare KV operations a ticket costs at least (create, get, update with
// revision, delete), at the same concurrency.
//
//	go test -run '^$' -bench Queue -benchtime 1x ./matchmaker/

// benchQueues: "pairs" matches any two tickets; "modes" matches only tickets of equal "mode",
// so tickets with distinct modes wait (the waiting crowd of the time-to-form benchmark).
func benchQueues() match.Config {
	return match.Config{Queues: []match.Queue{
		{Name: "pairs", Min: 2, Max: 2},
		{Name: "modes", Min: 2, Max: 2, Equal: []string{"mode"}},
	}}
}

// benchEngine starts a quiet matchmaker serving benchQueues whose matches run nothing.
func benchEngine(b *testing.B) (*harness, *queueEngine, *bus.PlayBuckets) {
	h := newHarness(b, harnessOpts{quiet: true, configure: func(c *Config) {
		c.Queues = benchQueues()
		c.Reconcile = false
	}})
	e := h.mms[0].play.(*playEngine).queue
	e.mu.Lock()
	e.run = func(context.Context, match.Queue, []claimedTicket) error { return nil }
	e.mu.Unlock()
	pb, err := h.b.OpenPlay(context.Background(), h.cfg.Buckets)
	if err != nil {
		b.Fatal(err)
	}
	return h, e, pb
}

// ticketJSON is a waiting ticket of one player.
func ticketJSON(b *testing.B, mode string) []byte {
	rec := ticketRecord{Players: []ticketPlayer{{IP: "81.2.69.160", Inbox: "bench.nobody"}}, Created: time.Now().UTC(), State: ticketWaiting}
	if mode != "" {
		rec.Props = protocol.Props{"mode": protocol.Str(mode)}
	}
	v, err := json.Marshal(rec)
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// deletions returns a channel closed once want delete markers of keys under prefix have been
// written from now on, and a stop function.
func deletions(b *testing.B, kv jetstream.KeyValue, prefix string, want int) (<-chan struct{}, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := kv.WatchFiltered(ctx, []string{prefix + "*"}, jetstream.UpdatesOnly())
	if err != nil {
		b.Fatal(err)
	}
	reached := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		n := 0
		for e := range w.Updates() {
			if e != nil && e.Operation() != jetstream.KeyValuePut {
				if n++; n == want {
					close(reached)
				}
			}
		}
	}()
	return reached, func() { _ = w.Stop(); cancel(); <-done }
}

// parallel runs f(i) for i in [0, n) on workers goroutines.
func parallel(n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// kvFloor does, for n keys at workers concurrency, the KV operations a ticket costs at least:
// create, get, update with revision, delete with revision.
func kvFloor(ctx context.Context, kv jetstream.KeyValue, prefix string, n, workers int, val []byte) (time.Duration, error) {
	start := time.Now()
	err := parallel(n, workers, func(i int) error {
		key := prefix + strconv.Itoa(i)
		rev, err := kv.Create(ctx, key, val)
		if err != nil {
			return err
		}
		if _, err := kv.Get(ctx, key); err != nil {
			return err
		}
		rev, err = kv.Update(ctx, key, val, rev)
		if err != nil {
			return err
		}
		return kv.Delete(ctx, key, jetstream.LastRevision(rev))
	})
	return time.Since(start), err
}

// BenchmarkQueueThroughput: tickets per second from put to deleted (matched in pairs), beside
// the bare-KV floor of the same number of tickets.
func BenchmarkQueueThroughput(b *testing.B) {
	const tickets, workers = 4000, 32
	h, e, pb := benchEngine(b)
	ctx := context.Background()
	val := ticketJSON(b, "")
	prefix := e.ticketPrefix("pairs")
	var engineTotal, floorTotal time.Duration
	for i := 0; b.Loop(); i++ {
		deleted, stop := deletions(b, pb.Tickets, prefix, tickets)
		start := time.Now()
		err := parallel(tickets, workers, func(j int) error {
			_, err := pb.Tickets.Create(ctx, prefix+fmt.Sprintf("r%dt%d", i, j), val)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		<-deleted
		engineTotal += time.Since(start)
		stop()
		d, err := kvFloor(ctx, pb.Tickets, fmt.Sprintf("floor.%s.r%d.", h.cfg.AppName, i), tickets, workers, val)
		if err != nil {
			b.Fatal(err)
		}
		floorTotal += d
	}
	n := float64(b.N * tickets)
	b.ReportMetric(n/engineTotal.Seconds(), "tickets/s")
	b.ReportMetric(n/floorTotal.Seconds(), "floor_tickets/s")
	b.ReportMetric(engineTotal.Seconds()/floorTotal.Seconds(), "x_floor")
}

// BenchmarkQueueTimeToForm: with 1k or 10k tickets waiting that match nothing, the time from
// putting the two tickets of a match to both being deleted, beside the floor of their bare KV
// operations (sequential: one match's tickets). It also logs the time to fill the queue (put
// and seen by the holder) beside as many bare KV puts and gets.
func BenchmarkQueueTimeToForm(b *testing.B) {
	for _, waiting := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("waiting=%d", waiting), func(b *testing.B) {
			_, e, pb := benchEngine(b)
			ctx := context.Background()
			prefix := e.ticketPrefix("modes")
			val0 := ticketJSON(b, "m")
			fill := time.Now()
			err := parallel(waiting, 32, func(j int) error {
				_, err := pb.Tickets.Create(ctx, prefix+"w"+strconv.Itoa(j), ticketJSON(b, "m"+strconv.Itoa(j)))
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			// Wait until the holder knows the crowd.
			for {
				e.mu.Lock()
				hq := e.queues["modes"]
				e.mu.Unlock()
				if hq != nil {
					hq.mu.Lock()
					n := len(hq.tickets)
					hq.mu.Unlock()
					if n >= waiting {
						break
					}
				}
				time.Sleep(5 * time.Millisecond)
			}
			fillDur := time.Since(fill)
			// The floor of the fill: as many bare KV writes and reads (put, get) at the same
			// concurrency.
			floorStart := time.Now()
			err = parallel(waiting, 32, func(j int) error {
				key := "floor.fill." + strconv.Itoa(j)
				if _, err := pb.Tickets.Put(ctx, key, val0); err != nil {
					return err
				}
				_, err := pb.Tickets.Get(ctx, key)
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			floorFill := time.Since(floorStart)
			b.Logf("%d waiting tickets put and seen by the holder in %v; %d bare KV put+get in %v (x%.1f)", waiting,
				fillDur.Round(time.Millisecond), waiting, floorFill.Round(time.Millisecond), fillDur.Seconds()/floorFill.Seconds())
			val := ticketJSON(b, "x")
			var engineTotal, floorTotal time.Duration
			for i := 0; b.Loop(); i++ {
				deleted, stop := deletions(b, pb.Tickets, prefix, 2)
				start := time.Now()
				for j := range 2 {
					if _, err := pb.Tickets.Create(ctx, prefix+fmt.Sprintf("x%dt%d", i, j), val); err != nil {
						b.Fatal(err)
					}
				}
				<-deleted
				engineTotal += time.Since(start)
				stop()
				d, err := kvFloor(ctx, pb.Tickets, fmt.Sprintf("floor.x%d.", i), 2, 1, val)
				if err != nil {
					b.Fatal(err)
				}
				floorTotal += d
			}
			b.ReportMetric(float64(engineTotal.Microseconds())/1000/float64(b.N), "ms_to_form")
			b.ReportMetric(float64(floorTotal.Microseconds())/1000/float64(b.N), "floor_ms")
			b.ReportMetric(engineTotal.Seconds()/floorTotal.Seconds(), "x_floor")
		})
	}
}
