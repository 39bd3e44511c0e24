package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// NATSServerModule is the Go package of nats-server, the program the cluster's nodes run.
const NATSServerModule = "github.com/nats-io/nats-server/v2"

// BuildNATSServer builds nats-server into dir and returns the program's path. With version ""
// it builds the version go.mod pins (`go build` in the current module: the caller must run
// inside the bevygap module, as tests do); with a version such as "v2.10.21" it runs
// `go install NATSServerModule@version` with GOBIN=dir, which downloads the module through the
// Go proxy the first time. The build is cached by Go; an existing program in dir is reused.
func BuildNATSServer(ctx context.Context, dir, version string) (string, error) {
	out := filepath.Join(dir, exeName("nats-server"))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	var cmd *exec.Cmd
	if version == "" {
		cmd = exec.CommandContext(ctx, "go", "build", "-o", out, NATSServerModule)
	} else {
		cmd = exec.CommandContext(ctx, "go", "install", NATSServerModule+"@"+version)
		// go install pkg@version works outside any module; -mod flags would make it fail.
		cmd.Env = append(withoutModFlags(os.Environ()), "GOBIN="+dir)
	}
	if err := runGo(cmd); err != nil {
		return "", fmt.Errorf("build nats-server %s: %w", version, err)
	}
	return out, nil
}

// BuildPackage builds the Go main package pkg (an import path or ./path, resolved in the
// current module) to dir/name and returns the program's path.
func BuildPackage(ctx context.Context, dir, name, pkg string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	out := filepath.Join(dir, exeName(name))
	if err := runGo(exec.CommandContext(ctx, "go", "build", "-o", out, pkg)); err != nil {
		return "", fmt.Errorf("build %s: %w", pkg, err)
	}
	return out, nil
}

func runGo(cmd *exec.Cmd) error {
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// withoutModFlags drops -mod=... from GOFLAGS in env.
func withoutModFlags(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GOFLAGS="); ok {
			var keep []string
			for _, f := range strings.Fields(v) {
				if !strings.HasPrefix(f, "-mod=") {
					keep = append(keep, f)
				}
			}
			kv = "GOFLAGS=" + strings.Join(keep, " ")
		}
		out = append(out, kv)
	}
	return out
}
