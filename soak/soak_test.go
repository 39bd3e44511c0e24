package soak_test

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/soak"
)

// TestRunAgainstDevstack runs a small soak against the one-process stack: players over both
// routes, a share abandoning while waiting and a share never using their token, an Edgegap
// error storm and a game server crash. Every session must be deleted (the matchmaker's short
// readiness limit reaps the unused ones), none under a connected player, and every player
// must get a working token or a clear error.
func TestRunAgainstDevstack(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end soak")
	}
	t.Parallel()
	st, err := devstack.Start(t.Context(), devstack.Config{
		BootTime: 200 * time.Millisecond, BootJitter: 100 * time.Millisecond, EmptyTTL: 3 * time.Second,
		ReadinessLimit: 2 * time.Second, ClaimGrace: 500 * time.Millisecond, ShutdownTimeout: 2 * time.Second,
		GameTick: 50 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = st.Shutdown(ctx)
	})
	info := st.Info()
	faults, err := soak.ParseFaults("edgegap-5xx@300ms+700ms,gameserver-crash@1500ms")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := soak.Run(t.Context(), soak.Config{
		URLs: []string{info.HTTPURL}, Game: info.AppName, Version: info.AppVersion,
		Players: 60, Concurrency: 16,
		Mix:     soak.Mix{Abandon: 0.15, NoConnect: 0.15, HTTP: 0.3},
		PlayMin: 300 * time.Millisecond, PlayMax: 1500 * time.Millisecond,
		Simulator: info.SimURL, PollInterval: 50 * time.Millisecond, Grace: 20 * time.Second,
		Faults: faults, Seed: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	_ = rep.WriteText(&text)
	t.Log("\n" + text.String())
	if p := rep.Problems(); len(p) > 0 {
		t.Errorf("problems: %v", p)
	}
	if got := rep.Granted + rep.Abandoned + rep.Failed; got != 60 || rep.Requested != 60 {
		t.Errorf("requested %d; granted + abandoned + failed = %d, want 60", rep.Requested, got)
	}
	if rep.Granted < 20 || rep.Connected == 0 {
		t.Errorf("granted %d, connected %d: too few to mean anything", rep.Granted, rep.Connected)
	}
	if rep.Sessions == nil || rep.Sessions.Created == 0 || rep.Sessions.Foreign != 0 {
		t.Fatalf("sessions %+v: want sessions, all tied to players", rep.Sessions)
	}
	if rep.Sessions.NoConnect.Sessions == 0 || rep.Sessions.LeaveToDelete.N == 0 {
		t.Errorf("no unused-token sessions (%d) or no left players' deletions (%d) measured",
			rep.Sessions.NoConnect.Sessions, rep.Sessions.LeaveToDelete.N)
	}
	if len(rep.Faults) != 2 {
		t.Errorf("faults fired: %+v, want 2", rep.Faults)
	}
	for _, f := range rep.Faults {
		if f.Error != "" {
			t.Errorf("fault %s: %s", f.Name, f.Error)
		}
	}
}
