// Package bustest is the NATS scaffolding shared by the tests of the packages that talk to NATS:
// one embedded nats-server per test package and connections to it that close with the test.
package bustest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/internal/natsembed"
)

// Main is a whole TestMain: it starts one embedded nats-server with JetStream on a random
// loopback port, stores it in *srv, runs the tests, shuts the server down and exits with the
// tests' code (exit 1 if the server does not start).
func Main(m *testing.M, srv **natsembed.Server) {
	e, err := natsembed.Start(natsembed.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*srv = e
	code := m.Run()
	e.Shutdown()
	os.Exit(code)
}

// Connect connects to e with client name name and a silent logger, failing tb on error. The
// connection is closed when tb ends.
func Connect(tb testing.TB, e *natsembed.Server, name string) *nats.Conn {
	tb.Helper()
	nc, err := bus.Connect(context.Background(), Config(e, name), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(nc.Close)
	return nc
}

// Config returns a client bus.Config that reaches e (plain TCP on loopback) as client name.
func Config(e *natsembed.Server, name string) bus.Config {
	return bus.Config{Host: e.ClientURL(), User: e.User(), Password: e.Password(), Insecure: true, Name: name}
}
