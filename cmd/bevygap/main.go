// Command bevygap is the one binary of bevygap in Go: every service and tool is a subcommand.
//
// main only picks the subcommand; each subcommand lives in its own file, parses its own flags
// and calls the library packages. Run "bevygap help" for the list.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
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

// command is one subcommand: its name, a one-line summary for "bevygap help", and its entry point.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *Env, args []string) error
}

// commands lists every subcommand. Add a line here when you add a file for a new subcommand.
func commands() []command {
	return []command{
		{"version", "print the version", runVersion},
		{"edgegap-sim", "run the local Edgegap API simulator", runEdgegapSim},
		{"token", "mint or inspect a Lightyear connect token", runToken},
		{"play", "request a game session through httpd, connect to the game server, measure round trips", runPlay},
		{"httpd", "run the HTTP/WebSocket front door of the matchmaker", runHTTPD},
		{"webhook-sink", "receive webhooks over HTTP and publish them on NATS", runWebhookSink},
		{"matchmaker", "run the session service: Edgegap sessions + connect tokens over NATS", runMatchmaker},
		{"dev", "run everything locally in one process: NATS, Edgegap simulator, example game, matchmaker, httpd", runDev},
	}
}

// usageError is a mistake in how the command was called. It is printed as "Error: …" with an
// optional "Try: …" hint and exits with code 2.
type usageError struct {
	message string
	hint    string
}

func (e *usageError) Error() string { return e.message }

// exitCodeError lets a subcommand choose its exit code (e.g. "play" documents several).
type exitCodeError struct {
	code int
	err  error
}

func (e *exitCodeError) Error() string { return e.err.Error() }
func (e *exitCodeError) Unwrap() error { return e.err }

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
			return exitCode(env.Stderr, c.run(ctx, env, args[1:]))
		}
	}
	return exitCode(env.Stderr, &usageError{
		message: fmt.Sprintf("unknown command %q", args[0]),
		hint:    "bevygap help",
	})
}

// exitCode prints err (if any) as one clear line and maps it to the process exit code.
func exitCode(stderr io.Writer, err error) int {
	if err == nil {
		return 0
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	var ue *usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "Error: %s\n", ue.message)
		if ue.hint != "" {
			fmt.Fprintf(stderr, "Try: %s\n", ue.hint)
		}
		return 2
	}
	fmt.Fprintf(stderr, "Error: %s\n", err)
	var ec *exitCodeError
	if errors.As(err, &ec) {
		return ec.code
	}
	return 1
}

func printUsage(w io.Writer) {
	cs := commands()
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	fmt.Fprintln(w, "bevygap — matchmaking and Edgegap game-server orchestration (Go)")
	fmt.Fprintln(w, "\nUsage: bevygap <command> [flags]\n\nCommands:")
	for _, c := range cs {
		fmt.Fprintf(w, "  %-14s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun \"bevygap <command> -h\" for the flags of a command.")
}

// newFlagSet returns a FlagSet for a subcommand that reports parse errors as usage errors
// instead of exiting, and prints its help to env.Stderr.
func newFlagSet(env *Env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("bevygap "+name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "Usage: bevygap %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args with fs, turning a bad flag into a usageError.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return &usageError{message: err.Error(), hint: fs.Name() + " -h"}
	}
	return nil
}
