// Package bench measures bevygap's performance, each measurement beside its floor (the least
// the same work must cost, measured in the same run on the same machine), and reports the
// ratios: what `bevygap bench` prints (docs/bench.md). Everything runs in this process on
// loopback: embedded NATS, the Edgegap simulator with instant-ready boots, the matchmaker and
// the front door (package devstack). Only the idle WebSocket clients of P4 run in another
// process, so that their memory is not counted.
//
// The measurements:
//
//	P1  grants/s through session.gensession, and CPU per grant, at several concurrencies
//	    floor: NATS request/reply + 3 JetStream KV puts + 2 HTTP round trips (measure.GrantFloor)
//	P4  KiB of heap + stacks per waiting WebSocket in the stack's process
//	    floor: a bare coder/websocket echo server holding the same idle connections
//	P5  first WebSocket message → SessionReady, p50 and p99, sequential and 32-way: the whole
//	    path, and the front door alone (an instant NATS responder answers in the matchmaker's
//	    place, frontdoor.go); the clients are a minimal WebSocket client (wsclient.go)
//	    floor: a bare NATS request/reply at the same concurrency, beside each
//	P6  disconnect (active_connections delete marker) → Edgegap DELETE at the simulator
//	    floor: a KV delete seen by a KV watcher that makes one HTTP DELETE (measure.DeleteFloor)
//	P7  cold start: starting the whole stack → first grant
//	    floor: starting embedded NATS, opening the buckets, one request/reply
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
)

// Measurement ids.
const (
	P1 = "P1"
	P4 = "P4"
	P5 = "P5"
	P6 = "P6"
	P7 = "P7"
)

// All returns every measurement id, in the order they run.
func All() []string { return []string{P1, P5, P6, P7, P4} }

// Options configures a run. The zero value is the full run (about three minutes on two cores).
type Options struct {
	// Only runs these measurements (nil = All()).
	Only []string
	// Runs is how many times each measurement point is taken (0 = 3); the report shows the
	// minimum, median and maximum.
	Runs int
	// Duration of each P1 and P5 point, floor and measurement each (0 = 2 s).
	Duration time.Duration
	// P1Concurrency are the P1 concurrencies (nil = 1, 16, 64, 1000).
	P1Concurrency []int
	// P5Concurrency are the P5 concurrencies (nil = 1 and 32).
	P5Concurrency []int
	// P4Conns are the P4 connection counts (nil = 1000 and 10000).
	P4Conns []int
	// P4Settle is how long P4 lets the server goroutines park after the connections are open,
	// before it measures (0 = 500 ms).
	P4Settle time.Duration
	// P6Samples is how many disconnects each P6 run times (0 = 10); the run's value is their median.
	P6Samples int
	// ClientCmd returns a new command that runs measure.ServeClients on its stdin and stdout
	// (P4's client process). Without it P4 is skipped with a note.
	ClientCmd func() *exec.Cmd
	// ServerCmd returns a new command that runs ServeP4 on its stdin and stdout: each P4 point
	// (the echo server's and the stack's) is then measured in a fresh process of its own.
	// Without it P4 measures in this process, where what earlier measurements left in the heap
	// moves the numbers by a few KiB per connection.
	ServerCmd func() *exec.Cmd
	// Progress receives a line per measurement point taken (nil = none).
	Progress io.Writer
	// Profile, when set, is called at the start of every timed P1 and P5 phase, and of every
	// P4 point (from before its clients connect to when they all wait), with the phase's name
	// ("P1-c64-run1-bevygap", "P1-c64-run1-floor", "P5-frontdoor-c32-run1-bevygap",
	// "P4-n10000-run1-bevygap", …); the function it returns is called at the phase's end. `bevygap bench --profile DIR`
	// writes a CPU and an allocation profile of each phase with it.
	Profile func(phase string) (stop func())
	// External, when set, measures a stack running elsewhere instead of starting one: P1 and
	// P5 only (the floors run in this process against the same NATS); P4, P6 and P7 need the
	// in-process stack and are skipped with a note.
	External *External
}

// External is a running stack to measure.
type External struct {
	// NATS is a connection to its NATS (with JetStream: the floors create their own buckets).
	NATS *nats.Conn
	// WebSocketURL is its front door's ws://…/matchmaker/ws ("" = P5 is skipped), for Game
	// and Version.
	WebSocketURL  string
	Game, Version string
}

func (o *Options) defaults() {
	if len(o.Only) == 0 {
		o.Only = All()
	}
	if o.Runs <= 0 {
		o.Runs = 3
	}
	if o.Duration <= 0 {
		o.Duration = 2 * time.Second
	}
	if len(o.P1Concurrency) == 0 {
		o.P1Concurrency = []int{1, 16, 64, 1000}
	}
	if len(o.P5Concurrency) == 0 {
		o.P5Concurrency = []int{1, 32}
	}
	if len(o.P4Conns) == 0 {
		o.P4Conns = []int{1000, 10000}
	}
	if o.P4Settle <= 0 {
		o.P4Settle = 500 * time.Millisecond
	}
	if o.P6Samples <= 0 {
		o.P6Samples = 10
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Profile == nil {
		o.Profile = func(string) func() { return func() {} }
	}
}

// Validate checks the measurement ids.
func (o Options) Validate() error {
	for _, id := range o.Only {
		if !slices.Contains(All(), id) {
			return fmt.Errorf("bench: unknown measurement %q (have %s)", id, strings.Join(All(), ", "))
		}
	}
	return nil
}

// Stat is the minimum, median and maximum of a measurement over the runs.
type Stat struct {
	Min    float64 `json:"min"`
	Median float64 `json:"median"`
	Max    float64 `json:"max"`
}

func statOf(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Min: s[0], Median: med, Max: s[len(s)-1]}
}

// Row is one measurement beside its floor.
type Row struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	Unit string `json:"unit"`
	// HigherIsBetter is true for rates (P1 grants/s), false for costs and latencies.
	HigherIsBetter bool `json:"higher_is_better"`
	Value          Stat `json:"value"`
	Floor          Stat `json:"floor"`
	// FloorName says what the floor is.
	FloorName string `json:"floor_name"`
	// Ratio is Value.Median / Floor.Median.
	Ratio float64 `json:"ratio"`
	// Overhead is Value.Median - Floor.Median (latencies only, else 0).
	Overhead float64 `json:"overhead,omitempty"`
	Note     string  `json:"note,omitempty"`
}

// Report is the outcome of a run.
type Report struct {
	Started    time.Time     `json:"started"`
	Took       time.Duration `json:"took_ns"`
	GoVersion  string        `json:"go_version"`
	GOMAXPROCS int           `json:"gomaxprocs"`
	// LoadAvg is /proc/loadavg at the start and at the end ("" where unavailable).
	LoadAvgStart string `json:"loadavg_start"`
	LoadAvgEnd   string `json:"loadavg_end"`
	Runs         int    `json:"runs"`
	Duration     string `json:"duration_per_point"`
	Rows         []Row  `json:"rows"`
	// Notes are caveats of this run (a capped connection count, a skipped measurement).
	Notes []string `json:"notes,omitempty"`
}

func (r *Report) add(row Row, values, floor []float64) {
	row.Value, row.Floor = statOf(values), statOf(floor)
	if row.Floor.Median != 0 {
		row.Ratio = row.Value.Median / row.Floor.Median
	}
	r.Rows = append(r.Rows, row)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

// Run takes the measurements of o and returns the report. It stops at the first error.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	o.defaults()
	r := &Report{Started: time.Now().UTC(), GoVersion: runtime.Version(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		LoadAvgStart: loadAvg(), Runs: o.Runs, Duration: o.Duration.String()}
	for _, id := range All() {
		if !slices.Contains(o.Only, id) {
			continue
		}
		var err error
		t0 := time.Now()
		switch id {
		case P1:
			err = runP1(ctx, o, r)
		case P4:
			err = runP4(ctx, o, r)
		case P5:
			err = runP5(ctx, o, r)
		case P6:
			err = runP6(ctx, o, r)
		case P7:
			err = runP7(ctx, o, r)
		}
		if err != nil {
			return r, fmt.Errorf("bench: %s: %w", id, err)
		}
		progress(o, "%s done in %s", id, time.Since(t0).Round(time.Millisecond))
	}
	r.Took = time.Since(r.Started)
	r.LoadAvgEnd = loadAvg()
	return r, nil
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(r)
}

// WriteText writes r as a table: each measurement, its floor, the ratio and (latencies) the
// overhead above the floor.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "bevygap bench: %s, GOMAXPROCS %d, %d run(s) of each point (min / median / max), %s per point, load average %s → %s, took %s\n\n",
		r.GoVersion, r.GOMAXPROCS, r.Runs, r.Duration, orNA(r.LoadAvgStart), orNA(r.LoadAvgEnd), r.Took.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "id\tmeasurement\tvalue\tfloor\tratio\tabove floor\tfloor is")
	for _, row := range r.Rows {
		over := ""
		if row.Overhead != 0 {
			over = fmt.Sprintf("%+.*f %s", prec(row.Overhead), row.Overhead, row.Unit)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s %s\t%.2f×\t%s\t%s\n", row.ID, row.Name,
			fmtStat(row.Value), row.Unit, fmtStat(row.Floor), row.Unit, row.Ratio, over, row.FloorName)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

func orNA(s string) string {
	if s == "" {
		return "n/a"
	}
	return s
}

func prec(x float64) int {
	switch ax := max(x, -x); {
	case ax >= 100:
		return 0
	case ax >= 10:
		return 1
	default:
		return 2
	}
}

func fmtStat(s Stat) string {
	p := prec(s.Median)
	return fmt.Sprintf("%.*f / %.*f / %.*f", p, s.Min, p, s.Median, p, s.Max)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// errStack is wrapped by errors of the stack under measurement (as opposed to the floors).
var errStack = errors.New("stack")
