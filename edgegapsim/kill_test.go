//go:build unix

package edgegapsim_test

import (
	"bytes"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/eventually"
)

// TestExecGameServerKilled: a game server process killed with SIGKILL (kill -9, no chance to
// clean up) puts its deployment in error, as on Edgegap: its session reports Status.ERROR in
// GET and in the session list, and the session's webhook says "Error" — what the matchmaker
// acts on to delete sessions whose game server died with players connected.
func TestExecGameServerKilled(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts processes")
	}
	f, out := newExecFixture(t)
	id := f.create(t, edgegap.SessionCreateRequest{WebhookURL: f.hooks.srv.URL + "/hook/session"})
	f.hooks.next(t) // Linked
	f.clock.Advance(3 * time.Second)
	if w, _ := edgegap.ParseSessionWebhook(f.hooks.next(t)); !w.Ready {
		t.Fatalf("ready webhook: %+v", w)
	}
	rid := f.get(t, id).Deployment.RequestID
	pidLine := regexp.MustCompile(`\[` + rid + `\] pid (\d+)`)
	eventually.True(t, 10*time.Second, func() bool { return pidLine.Match([]byte(out.String())) }, "game server started")
	pid, err := strconv.Atoi(string(pidLine.FindSubmatch([]byte(out.String()))[1]))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w, err := edgegap.ParseSessionWebhook(f.hooks.next(t))
	if err != nil || w.SessionID != id || w.Status != "Error" || w.Ready {
		t.Fatalf("webhook after kill -9: %+v %v", w, err)
	}
	g := f.get(t, id)
	if !edgegap.StatusIs(g.Status, edgegap.SessionStatusError) || g.Error == nil ||
		!edgegap.StatusIs(g.Deployment.Status, edgegap.DeploymentStatusError) {
		t.Fatalf("session after kill -9: %+v", g)
	}
	if !bytes.Contains([]byte(*g.Error), []byte("killed")) {
		t.Errorf("session error %q does not say the game server was killed", *g.Error)
	}
	list, err := f.client.ListAllSessions(t.Context())
	if err != nil || len(list) != 1 || !edgegap.StatusIs(list[0].Status, edgegap.SessionStatusError) {
		t.Fatalf("session list after kill -9: %+v %v", list, err)
	}
}
