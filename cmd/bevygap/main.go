// Command bevygap is the one binary of bevygap in Go: every service and tool is a subcommand.
//
// main only starts run; run picks the subcommand. Each subcommand lives in its own file as a
// command (ParseFlags, Run, Close) that parses its own flags and calls the library packages.
// Run "bevygap help" for the list.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], &Env{
		Stdin:  os.Stdin,
		Stdout: os.Stdout,
		Stderr: os.Stderr,
		Getenv: os.Getenv,
	}))
}

// Env is what a subcommand may touch of the outside world. Tests fill it with buffers and a
// map-backed Getenv so that no subcommand reads the real process environment behind their back.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// command is one subcommand, in the shape of Litestream's commands: ParseFlags reads the
// command line (and the environment through Env) and checks it without touching anything else;
// Run does the work until it is done or ctx ends; Close releases what Run opened. run calls
// Close once ParseFlags was called, whatever happened.
type command interface {
	ParseFlags(args []string) error
	Run(ctx context.Context) error
	Close() error
}

// commandEntry names a subcommand, with a one-line summary for "bevygap help".
type commandEntry struct {
	name    string
	summary string
	new     func(env *Env) command
}

// commands lists every subcommand. Add a line here when you add a file for a new subcommand.
func commands() []commandEntry {
	return []commandEntry{
		{"version", "print the version", func(env *Env) command { return &versionCommand{env: env} }},
		{"edgegap-sim", "run the local Edgegap API simulator", func(env *Env) command { return &edgegapSimCommand{env: env} }},
		{"token", "mint or inspect a Lightyear connect token", func(env *Env) command { return &tokenCommand{env: env} }},
		{"play", "request a game session through httpd, connect to the game server, measure round trips", func(env *Env) command { return &playCommand{env: env} }},
		{"httpd", "run the HTTP/WebSocket front door of the matchmaker", func(env *Env) command { return &httpdCommand{env: env} }},
		{"webhook-sink", "receive webhooks over HTTP and publish them on NATS", func(env *Env) command { return &webhookSinkCommand{env: env} }},
		{"matchmaker", "run the session service: Edgegap sessions + connect tokens over NATS", func(env *Env) command { return &matchmakerCommand{env: env} }},
		{"doctor", "check an installation (NATS, buckets, permissions, Edgegap, webhooks, key, matchmakers) and explain what is wrong", func(env *Env) command { return &doctorCommand{env: env} }},
		{"dev", "run everything locally in one process: NATS, Edgegap simulator, example game, matchmaker, httpd", func(env *Env) command { return &devCommand{env: env} }},
		{"cluster", "run deploy/compose.yaml's topology as processes on loopback (3 NATS nodes, 2 matchmakers, 2 httpd, sink, simulator)", func(env *Env) command { return &clusterCommand{env: env} }},
		{"bench", "measure grants/s, memory per waiting player, latencies, delete and start times, each beside its floor", func(env *Env) command { return &benchCommand{env: env} }},
		{"soak", "load and chaos driver: many players through the front doors, faults on a schedule, leaked and lost sessions counted", func(env *Env) command { return &soakCommand{env: env} }},
	}
}

// run is the whole program as a function of its arguments and its world: it picks the
// subcommand, runs it and returns the exit code (2 for usage errors).
func run(ctx context.Context, args []string, env *Env) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		printUsage(env.Stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return exitCode(env.Stderr, runCommand(ctx, c.new(env), args[1:]))
		}
	}
	return exitCode(env.Stderr, &usageError{
		message: fmt.Sprintf("unknown command %q", args[0]),
		hint:    "bevygap help",
	})
}

// runCommand parses args with c, runs it, and closes it. The first error wins.
func runCommand(ctx context.Context, c command, args []string) (err error) {
	defer func() {
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}()
	if err := c.ParseFlags(args); err != nil {
		return err
	}
	return c.Run(ctx)
}

// nothingToClose is the Close of a command whose Run leaves nothing open.
type nothingToClose struct{}

// Close does nothing.
func (nothingToClose) Close() error { return nil }
