// Package measure holds the building blocks of bevygap's performance measurements: a
// closed-loop load driver with process CPU accounting, latency percentiles, memory in use, the
// file descriptor limit, the "floor" baselines every measurement is compared with, and the
// client process that holds idle WebSockets. Package bench composes them against a running
// stack; the in-package benchmarks of matchmaker and httpd use them directly (this package
// imports neither, so their tests can import it).
package measure

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Result is what a closed-loop run did.
type Result struct {
	// Ops is the number of operations that completed without error.
	Ops int
	// Elapsed is the wall time of the run.
	Elapsed time.Duration
	// CPU is the CPU time (user + system) of this whole process during the run.
	CPU time.Duration
	// Latencies of every operation, in completion order (only when asked for).
	Latencies []time.Duration
}

// PerSecond returns completed operations per second of wall time.
func (r Result) PerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Ops) / r.Elapsed.Seconds()
}

// CPUPerOp returns the process CPU time per completed operation.
func (r Result) CPUPerOp() time.Duration {
	if r.Ops == 0 {
		return 0
	}
	return r.CPU / time.Duration(r.Ops)
}

// Percentile returns the p-th percentile (0 < p <= 100) of the latencies, nearest rank.
func (r Result) Percentile(p float64) time.Duration { return Percentile(r.Latencies, p) }

// Percentile returns the p-th percentile (0 < p <= 100) of ds by nearest rank, 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[max(0, min(i, len(s)-1))]
}

// Op is one operation of a closed-loop run: worker is the goroutine's number, i the
// operation's sequence number across all workers.
type Op func(ctx context.Context, worker, i int) error

// Closed runs op from conc goroutines, each starting its next operation when the previous one
// ends, for d (or until ctx ends), and returns what completed. The first error stops the run
// and is returned with the result so far.
func Closed(ctx context.Context, conc int, d time.Duration, latencies bool, op Op) (Result, error) {
	conc = max(conc, 1)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		seq      atomic.Int64
		ops      atomic.Int64
		mu       sync.Mutex
		lats     []time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	cpu0 := ProcessCPU()
	start := time.Now()
	deadline := start.Add(d) // so that Elapsed >= d: the last operations end past the deadline
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lats = append(lats, mine...)
				mu.Unlock()
			}()
			for ctx.Err() == nil && time.Now().Before(deadline) {
				i := int(seq.Add(1) - 1)
				t0 := time.Now()
				if err := op(ctx, w, i); err != nil {
					if ctx.Err() != nil {
						return // stopped by another worker's error
					}
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("operation %d: %w", i, err)
					}
					mu.Unlock()
					cancel()
					return
				}
				if latencies {
					mine = append(mine, time.Since(t0))
				}
				ops.Add(1)
			}
		}()
	}
	wg.Wait()
	r := Result{Ops: int(ops.Load()), Elapsed: time.Since(start), CPU: ProcessCPU() - cpu0, Latencies: lats}
	if firstErr == nil && r.Ops == 0 && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	return r, firstErr
}

// MemInUse runs the garbage collector twice and returns heap in use + goroutine stacks in use.
func MemInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// ErrNoFileLimit is returned (wrapped) by RaiseNoFile when the hard limit is below what is
// wanted; the limit it returns is what can be used.
var ErrNoFileLimit = errors.New("measure: RLIMIT_NOFILE hard limit too low")
