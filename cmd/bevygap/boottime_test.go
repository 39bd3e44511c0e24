package main

import (
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegapsim"
)

// TestBootTimeZeroMeansInstant: `--boot-time 0` is an instant boot in both dev and edgegap-sim
// (it used to fall back to the default), while leaving the flag out keeps the default.
func TestBootTimeZeroMeansInstant(t *testing.T) {
	t.Parallel()
	env := func() *Env {
		return &Env{Stdin: strings.NewReader(""), Stdout: &strings.Builder{}, Stderr: &strings.Builder{}, Getenv: func(string) string { return "" }}
	}
	cases := []struct {
		name     string
		args     []string
		wantBoot time.Duration
	}{
		{"sim default", nil, edgegapsim.DefaultBootTime},
		{"sim zero", []string{"--boot-time", "0"}, -1}, // negative: the simulator's "instant"
		{"sim 5s", []string{"--boot-time", "5s"}, 5 * time.Second},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := &edgegapSimCommand{env: env()}
			if err := cmd.ParseFlags(c.args); err != nil {
				t.Fatal(err)
			}
			if got := cmd.cfg.BootTime.D(); got != c.wantBoot {
				t.Fatalf("boot time %v, want %v", got, c.wantBoot)
			}
		})
	}
	dev := &devCommand{env: env()}
	if err := dev.ParseFlags([]string{"--boot-time", "0"}); err != nil {
		t.Fatal(err)
	}
	if dev.cfg.BootTime >= 0 {
		t.Fatalf("dev --boot-time 0 gives BootTime %v, want negative (instant)", dev.cfg.BootTime)
	}
}
