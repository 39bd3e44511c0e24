package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/bench"
	"github.com/bevygap-go/bevygap/devstack"
)

// TestMain lets this test binary be the processes "bevygap bench" starts for P4, as the real
// binary is: the bench re-executes os.Executable with BEVYGAP_BENCH_CLIENT=1 (P4's client
// process) or BEVYGAP_BENCH_SERVER=1 (P4's server processes).
func TestMain(m *testing.M) {
	if server, _ := benchServerEnv(os.Getenv(envBenchServer)); server || os.Getenv(envBenchClient) == "1" {
		os.Exit(run(context.Background(), []string{"bench"}, &Env{
			Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv,
		}))
	}
	os.Exit(m.Run())
}

// TestBenchQuick runs every measurement at tiny sizes and checks the report has every row with
// sane values (not how fast anything is), so that the command does not rot.
func TestBenchQuick(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several stacks")
	}
	t.Parallel()
	var stdout, stderr bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	if code := run(t.Context(), []string{"bench", "--quick", "--json"}, env); code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, stderr.String())
	}
	var r bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout.String())
	}
	// P1: ready by GET and ready by webhook + GET; P5: whole path + front door.
	want := map[string]int{bench.P1: 8, bench.P5: 8, bench.P6: 1, bench.P7: 1, bench.P4: 2}
	got := map[string]int{}
	variants := map[string]int{}
	for _, row := range r.Rows {
		got[row.ID]++
		for _, v := range []string{", no webhooks", ", with webhooks"} {
			if row.ID == bench.P1 && strings.HasSuffix(row.Name, v) {
				variants[v]++
			}
		}
		finite := func(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
		if !finite(row.Value.Median) || !finite(row.Floor.Median) || row.FloorName == "" || row.Unit == "" {
			t.Errorf("row %s %q: value %v floor %v floor name %q unit %q", row.ID, row.Name, row.Value, row.Floor, row.FloorName, row.Unit)
		}
		// Memory deltas of a hundred connections may be noise; everything else is a positive
		// rate, CPU time or latency, with a floor measured beside it.
		if row.ID != bench.P4 && (row.Value.Min <= 0 || row.Floor.Min <= 0 || row.Ratio <= 0) {
			t.Errorf("row %s %q: value %v floor %v ratio %v: want positive", row.ID, row.Name, row.Value, row.Floor, row.Ratio)
		}
		if row.Value.Min > row.Value.Median || row.Value.Median > row.Value.Max {
			t.Errorf("row %s %q: min/median/max out of order: %v", row.ID, row.Name, row.Value)
		}
	}
	for id, n := range want {
		if got[id] != n {
			t.Errorf("%s: %d rows, want %d", id, got[id], n)
		}
	}
	if len(variants) != 2 || variants[", no webhooks"] != 4 {
		t.Errorf("P1 rows per variant: %v, want 4 of each (grants/s and CPU at 2 concurrencies)", variants)
	}
	if len(r.Notes) > 0 {
		t.Logf("notes: %v", r.Notes)
	}
	t.Logf("progress:\n%s", stderr.String())
}

// TestBenchText checks the table: a header, a row per measurement with its floor and ratio.
func TestBenchText(t *testing.T) {
	t.Parallel()
	r := &bench.Report{Runs: 3, Duration: "2s", GOMAXPROCS: 2, GoVersion: "go1.26", Rows: []bench.Row{
		{ID: bench.P1, Name: "grants/s, concurrency 16", Unit: "/s", Value: bench.Stat{Min: 1, Median: 2, Max: 3},
			Floor: bench.Stat{Min: 4, Median: 4, Max: 5}, FloorName: "floor", Ratio: 0.5},
		{ID: bench.P5, Name: "p50", Unit: "ms", Value: bench.Stat{Min: 1, Median: 2, Max: 3},
			Floor: bench.Stat{Min: 1, Median: 1, Max: 1}, FloorName: "nats", Ratio: 2, Overhead: 1},
	}, Notes: []string{"capped"}}
	var b bytes.Buffer
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"id  measurement", "grants/s, concurrency 16", "1.00 / 2.00 / 3.00 /s", "0.50×", "+1.00 ms", "note: capped"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// TestBenchFlags checks the usage errors.
func TestBenchFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"unknown measurement", []string{"--only", "P9"}},
		{"bad list", []string{"--p1-concurrency", "1,x"}},
		{"zero", []string{"--p4-conns", "0"}},
		{"argument", []string{"extra"}},
		{"url without nats", []string{"--url", "ws://127.0.0.1:3000/matchmaker/ws"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stderr bytes.Buffer
			env := &Env{Stdout: &bytes.Buffer{}, Stderr: &stderr, Getenv: func(string) string { return "" }}
			if code := run(t.Context(), append([]string{"bench"}, tc.args...), env); code != 2 {
				t.Errorf("exit %d, want 2; stderr %s", code, stderr.String())
			}
		})
	}
}

// TestBenchProfile: --profile writes a CPU and an allocation profile (with its base) of every
// timed phase, floor and bevygap.
func TestBenchProfile(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a stack")
	}
	t.Parallel()
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	if code := run(t.Context(), []string{"bench", "--quick", "--only", "P1", "--profile", dir}, env); code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, stderr.String())
	}
	for _, phase := range []string{"P1-c1-run1-floor", "P1-c1-run1-bevygap", "P1-c16-run1-floor", "P1-c16-run1-bevygap", // --quick: concurrency 1 and 16
		"P1-webhooks-c1-run1-floor", "P1-webhooks-c16-run1-bevygap"} {
		for _, kind := range []string{".cpu.pprof", ".allocs.pprof", ".allocs-base.pprof"} {
			fi, err := os.Stat(filepath.Join(dir, phase+kind))
			if err != nil || fi.Size() == 0 {
				t.Errorf("%s%s: %v (size %d)", phase, kind, err, sizeOf(fi))
			}
		}
	}
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return -1
	}
	return fi.Size()
}

// TestBenchExternal measures a stack started elsewhere (--nats, --url): P1 without CPU rows,
// P5, and a note for each measurement that needs the in-process stack.
func TestBenchExternal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a stack")
	}
	t.Parallel()
	st, err := devstack.Start(t.Context(), devstack.Config{BootTime: -1, BootJitter: -1, Sockets: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := st.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	info := st.Info()
	var stdout, stderr bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
	args := []string{"bench", "--quick", "--json", "--only", "P1,P5,P6", "--nats", info.NATSURL, "--url", info.WebSocketURL,
		"--game", info.AppName, "--version", info.AppVersion}
	if code := run(t.Context(), args, env); code != 0 {
		t.Fatalf("exit %d\nstderr:\n%s", code, stderr.String())
	}
	var r bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout.String())
	}
	got := map[string]int{}
	for _, row := range r.Rows {
		got[row.ID]++
		if row.Value.Min <= 0 || row.Floor.Min <= 0 {
			t.Errorf("row %s %q: value %v floor %v", row.ID, row.Name, row.Value, row.Floor)
		}
	}
	if got[bench.P1] != 2 || got[bench.P5] != 4 || got[bench.P6] != 0 {
		t.Errorf("rows per measurement %v, want P1 2 (no CPU rows), P5 4, P6 none", got)
	}
	if notes := strings.Join(r.Notes, "\n"); !strings.Contains(notes, "P6 skipped") || !strings.Contains(notes, "no CPU per grant") {
		t.Errorf("notes %q lack the P6 skip and the missing CPU rows", notes)
	}
}
