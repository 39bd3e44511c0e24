package main

// Usage errors, exit codes, help and flag sets: what every subcommand shares about talking to
// the user.

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
)

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

// exitCode prints err (if any) as one clear line (a runtime error also gets a pointer to the
// troubleshooting page) and maps it to the process exit code.
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
	printTroubleshootingPointer(stderr, err)
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
