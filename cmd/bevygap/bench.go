package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/bench"
	"github.com/bevygap-go/bevygap/bench/measure"
)

// envBenchClient, set to 1, makes "bevygap bench" the client process of P4: it holds idle
// WebSockets for the parent bench (measure.ServeClients on stdin/stdout).
const envBenchClient = "BEVYGAP_BENCH_CLIENT"

// envBenchServer, set to 1, makes "bevygap bench" a server process of P4: it takes one memory
// measurement in its fresh heap for the parent bench (bench.ServeP4 on stdin/stdout); set to a
// directory path after "1:", it writes the measurement's profiles there.
const envBenchServer = "BEVYGAP_BENCH_SERVER"

// benchServerEnv reads envBenchServer's value: whether this process is one of P4's server
// processes, and the directory for its profiles ("" for none).
func benchServerEnv(v string) (server bool, profileDir string) {
	if v == "1" {
		return true, ""
	}
	dir, ok := strings.CutPrefix(v, "1:")
	return ok, dir
}

// benchCommand is "bevygap bench": bevygap's performance, each measurement beside its floor.
type benchCommand struct {
	env     *Env
	opts    bench.Options
	json    bool
	client  bool
	server  bool
	natsURL string
	ext     bench.External
	nc      *nats.Conn // to the external stack (--nats)
}

// ParseFlags reads the measurement selection and sizes.
func (c *benchCommand) ParseFlags(args []string) error {
	env := c.env
	if env.Getenv(envBenchClient) == "1" {
		c.client = true
		return nil
	}
	if server, dir := benchServerEnv(env.Getenv(envBenchServer)); server {
		c.server = true
		c.opts = bench.Options{Progress: env.Stderr}
		if dir != "" {
			c.opts.Profile = phaseProfiler(dir, env.Stderr)
		}
		return c.setProcesses("")
	}
	fs := newFlagSet(env, "bench", "[flags]")
	only := fs.String("only", "", "measurements to run, comma separated: "+strings.Join(bench.All(), ","))
	runs := fs.Int("runs", 3, "runs of each measurement point (the table shows min / median / max)")
	duration := fs.Duration("duration", 2*time.Second, "duration of each P1 and P5 point (floor and measurement each)")
	p1 := fs.String("p1-concurrency", "1,16,64,1000", "P1 concurrencies, comma separated")
	p4 := fs.String("p4-conns", "1000,10000", "P4 waiting WebSockets, comma separated")
	p5 := fs.String("p5-concurrency", "1,32", "P5 concurrencies, comma separated")
	p6 := fs.Int("p6-samples", 10, "disconnects timed per P6 run")
	quick := fs.Bool("quick", false, "one run of tiny sizes (P1 1,16; P5 1,8; P4 100,200; 100 ms points): checks that every measurement works, in seconds; the numbers mean little")
	asJSON := fs.Bool("json", false, "print the report as JSON instead of a table")
	profileDir := fs.String("profile", "", "write a CPU profile and an allocation profile of every timed P1/P5 phase and P4 point (floor and bevygap) into this directory: <phase>.cpu.pprof, <phase>.allocs.pprof (with <phase>.allocs-base.pprof for go tool pprof -diff_base)")
	fs.StringVar(&c.natsURL, "nats", "", "measure the stack running on this NATS (nats://user:pass@host:4222) instead of starting one: P1, and P5 with --url")
	fs.StringVar(&c.ext.WebSocketURL, "url", "", "with --nats: the front door's WebSocket, e.g. ws://127.0.0.1:3000/matchmaker/ws (P5)")
	fs.StringVar(&c.ext.Game, "game", "dotroom", "with --url: the game to ask for")
	fs.StringVar(&c.ext.Version, "version", "1", "with --url: the game version to ask for")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{message: fmt.Sprintf("unexpected argument %q", fs.Arg(0)), hint: "bevygap bench -h"}
	}
	c.json = *asJSON
	o := bench.Options{Runs: *runs, Duration: *duration, P6Samples: *p6, Progress: env.Stderr}
	if *only != "" {
		for _, id := range strings.Split(*only, ",") {
			o.Only = append(o.Only, strings.ToUpper(strings.TrimSpace(id)))
		}
	}
	var err error
	for _, l := range []struct {
		name string
		val  string
		dst  *[]int
	}{{"p1-concurrency", *p1, &o.P1Concurrency}, {"p4-conns", *p4, &o.P4Conns}, {"p5-concurrency", *p5, &o.P5Concurrency}} {
		if *l.dst, err = parseInts(l.val); err != nil {
			return &usageError{message: fmt.Sprintf("--%s: %v", l.name, err), hint: "bevygap bench -h"}
		}
	}
	if c.ext.WebSocketURL != "" && c.natsURL == "" {
		return &usageError{message: "--url needs --nats: P5's floor is a round trip on the same NATS", hint: "bevygap bench --nats nats://127.0.0.1:4222 --url " + c.ext.WebSocketURL}
	}
	if *quick {
		o.Runs, o.Duration, o.P6Samples, o.P4Settle = 1, 100*time.Millisecond, 2, 50*time.Millisecond
		o.P1Concurrency, o.P5Concurrency, o.P4Conns = []int{1, 16}, []int{1, 8}, []int{100, 200}
	}
	if err := o.Validate(); err != nil {
		return &usageError{message: err.Error(), hint: "bevygap bench --only " + strings.Join(bench.All(), ",")}
	}
	if *profileDir != "" {
		if err := os.MkdirAll(*profileDir, 0o755); err != nil {
			return fmt.Errorf("bench: --profile: %w", err)
		}
		o.Profile = phaseProfiler(*profileDir, env.Stderr)
	}
	c.opts = o
	return c.setProcesses(*profileDir)
}

// setProcesses gives c.opts P4's client and server process commands: this program again, with
// envBenchClient or envBenchServer set (the server's with profileDir, when profiling).
func (c *benchCommand) setProcesses(profileDir string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("bench: finding this program for P4's processes: %w", err)
	}
	self := func(env string) *exec.Cmd {
		cmd := exec.Command(exe, "bench")
		cmd.Env = append(os.Environ(), env)
		cmd.Stderr = c.env.Stderr
		return cmd
	}
	c.opts.ClientCmd = func() *exec.Cmd { return self(envBenchClient + "=1") }
	if !c.server {
		server := envBenchServer + "=1"
		if profileDir != "" {
			server += ":" + profileDir
		}
		c.opts.ServerCmd = func() *exec.Cmd { return self(server) }
	}
	return nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// Run takes the measurements and prints the report (progress lines go to stderr).
func (c *benchCommand) Run(ctx context.Context) error {
	if c.client {
		return measure.ServeClients(ctx, c.env.Stdin, c.env.Stdout)
	}
	if c.server {
		return bench.ServeP4(ctx, c.opts, c.env.Stdin, c.env.Stdout)
	}
	if c.natsURL != "" {
		nc, err := nats.Connect(c.natsURL, nats.Name("bevygap-bench"), nats.Timeout(5*time.Second))
		if err != nil {
			return fmt.Errorf("bench: NATS %s: %w", c.natsURL, err)
		}
		c.nc, c.ext.NATS = nc, nc
		c.opts.External = &c.ext
	}
	r, err := bench.Run(ctx, c.opts)
	if err != nil {
		if r != nil && len(r.Rows) > 0 { // what was measured before the failure
			_ = r.WriteText(c.env.Stderr)
		}
		return err
	}
	if c.json {
		return r.WriteJSON(c.env.Stdout)
	}
	return r.WriteText(c.env.Stdout)
}

// Close closes the connection to an external stack's NATS.
func (c *benchCommand) Close() error {
	if c.nc != nil {
		c.nc.Close()
	}
	return nil
}

// phaseProfiler returns a bench.Options.Profile that writes, for each phase, the CPU profile
// of the phase and the allocation profile at its start and end (diff them: go tool pprof
// -sample_index=alloc_space -diff_base <phase>.allocs-base.pprof <phase>.allocs.pprof).
// Failures are reported on errw and do not stop the bench.
func phaseProfiler(dir string, errw io.Writer) func(string) func() {
	writeAllocs := func(path string) {
		f, err := os.Create(path)
		if err == nil {
			err = errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
		}
		if err != nil {
			fmt.Fprintf(errw, "bench: profile: %v\n", err)
		}
	}
	return func(phase string) func() {
		base := filepath.Join(dir, phase)
		writeAllocs(base + ".allocs-base.pprof")
		f, err := os.Create(base + ".cpu.pprof")
		if err == nil {
			if err = pprof.StartCPUProfile(f); err != nil {
				_ = f.Close()
			}
		}
		if err != nil {
			fmt.Fprintf(errw, "bench: profile: %v\n", err)
			return func() { writeAllocs(base + ".allocs.pprof") }
		}
		return func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				fmt.Fprintf(errw, "bench: profile: %v\n", err)
			}
			writeAllocs(base + ".allocs.pprof")
		}
	}
}
