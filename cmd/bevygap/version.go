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
	fmt.Fprintln(env.Stdout, "bevygap", buildinfo.Version())
	return nil
}
