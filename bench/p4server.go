package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// p4Spec is one P4 measurement for a process of its own (Options.ServerCmd, ServeP4).
type p4Spec struct {
	Kind   string        `json:"kind"` // p4Echo or p4Stack
	N      int           `json:"n"`
	Settle time.Duration `json:"settle"`
	Phase  string        `json:"phase"`
}

// p4Result is the answer of a P4 server process.
type p4Result struct {
	KiB float64 `json:"kib"`
	Err string  `json:"err,omitempty"`
}

const (
	p4Echo  = "echo"
	p4Stack = "stack"
	// p4ServerLimit bounds one measurement in its own process (10,000 connections take ~10 s).
	p4ServerLimit = 5 * time.Minute
)

// errP4Server marks a failure of P4's server process.
var errP4Server = errors.New("bench: P4 server process")

// p4KiB measures the memory per waiting connection of kind (the bare echo server or the stack)
// with n connections: in a process of its own when o.ServerCmd is set — a fresh heap, the same
// for the floor and for bevygap, so that what an earlier measurement left in the heap (spans
// still in use after a whole stack shut down) changes neither — else in this process.
func p4KiB(ctx context.Context, o Options, kind string, n int, phase string) (float64, error) {
	if o.ServerCmd == nil {
		if kind == p4Echo {
			return echoKiB(ctx, o, n, phase)
		}
		return stackKiB(ctx, o, n, phase)
	}
	ctx, cancel := context.WithTimeout(ctx, p4ServerLimit)
	defer cancel()
	cmd := o.ServerCmd()
	spec, err := json.Marshal(p4Spec{Kind: kind, N: n, Settle: o.P4Settle, Phase: phase})
	if err != nil {
		return 0, err
	}
	cmd.Stdin = bytes.NewReader(append(spec, '\n'))
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("%w: starting: %w", errP4Server, err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-waited
		return 0, fmt.Errorf("%w: %w", errP4Server, ctx.Err())
	}
	var res p4Result
	if err := json.Unmarshal(lastLine(out.Bytes()), &res); err != nil {
		return 0, fmt.Errorf("%w: no result (%v): %q", errP4Server, werr, out.String())
	}
	if res.Err != "" {
		return 0, fmt.Errorf("%w: %s", errP4Server, res.Err)
	}
	return res.KiB, werr
}

func lastLine(b []byte) []byte {
	b = bytes.TrimRight(b, "\n")
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return b[i+1:]
	}
	return b
}

// ServeP4 is P4's server process (Options.ServerCmd): it reads one measurement from in, takes it
// in this process — which should be fresh — with o's ClientCmd, Profile and Progress, and writes
// its result to out as one JSON line.
func ServeP4(ctx context.Context, o Options, in io.Reader, out io.Writer) error {
	o.defaults()
	o.ServerCmd = nil // the measurement itself runs here
	line, err := bufio.NewReader(in).ReadBytes('\n')
	if err != nil && len(line) == 0 {
		return fmt.Errorf("bench: P4 server: reading the measurement: %w", err)
	}
	var spec p4Spec
	res := p4Result{}
	switch err := json.Unmarshal(line, &spec); {
	case err != nil:
		res.Err = "bad measurement: " + err.Error()
	case spec.Kind != p4Echo && spec.Kind != p4Stack, spec.N <= 0:
		res.Err = fmt.Sprintf("bad measurement: kind %q, %d connections", spec.Kind, spec.N)
	case o.ClientCmd == nil:
		res.Err = "no client process command"
	default:
		if spec.Settle > 0 {
			o.P4Settle = spec.Settle
		}
		kib, err := p4KiB(ctx, o, spec.Kind, spec.N, spec.Phase)
		if err != nil {
			res.Err = err.Error()
		}
		res.KiB = kib
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = out.Write(append(b, '\n'))
	return err
}
