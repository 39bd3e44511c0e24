package main

import (
	"context"
	"fmt"

	"github.com/bevygap-go/bevygap/buildinfo"
)

func runVersion(_ context.Context, env *Env, args []string) error {
	fs := newFlagSet(env, "version", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &usageError{message: fmt.Sprintf("unexpected argument %q", fs.Arg(0)), hint: "bevygap version"}
	}
	fmt.Fprintln(env.Stdout, "bevygap", buildinfo.Version())
	return nil
}
