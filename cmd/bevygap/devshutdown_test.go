package main

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/eventually"
)

// TestDevShutdownSaysWhatWasLeft: when the shutdown cannot delete a session (the simulator
// refuses every DELETE here), `bevygap dev` does not claim a clean stop: its last line says what
// was left, and it exits 1.
func TestDevShutdownSaysWhatWasLeft(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	t.Parallel()
	ctx, ctrlC := context.WithCancel(t.Context())
	defer ctrlC()
	stdout, stderr, exit := startDev(ctx, "--log-level", "error",
		"--faults", `{"endpoints":{"session_delete":{"error_rate":1,"status":500}}}`)
	simRE := regexp.MustCompile(`Edgegap sim\s+(http://\S+)`)
	var simURL string
	eventually.True(t, 20*time.Second, func() bool {
		select {
		case code := <-exit:
			t.Fatalf("bevygap dev exited early with %d: %s", code, stderr.String())
		default:
		}
		if m := simRE.FindStringSubmatch(stdout.String()); m != nil {
			simURL = m[1]
		}
		return simURL != ""
	}, "the banner of bevygap dev")
	api := edgegap.NewClient(simURL, devstack.SimAPIKey)
	if _, err := api.CreateSession(t.Context(), edgegap.SessionCreateRequest{AppName: devstack.DefaultAppName, IPList: []string{"198.51.100.9"}}); err != nil {
		t.Fatal(err)
	}

	ctrlC()
	select {
	case code := <-exit:
		if code != 1 {
			t.Fatalf("exit code %d, want 1; stderr: %s", code, stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("bevygap dev did not stop within 40 s of Ctrl-C")
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	if last := lines[len(lines)-1]; last != "Stopped, not cleanly: 1 session could not be deleted." {
		t.Errorf("last line %q", last)
	}
	if strings.Contains(stdout.String(), "Stopped cleanly") {
		t.Errorf("claims a clean stop:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), "1 session could not be deleted") {
		t.Errorf("stderr does not say what was left: %s", stderr.String())
	}
}
