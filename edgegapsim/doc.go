// Package edgegapsim is a local simulator of the Edgegap API, good enough that bevygap's
// services (ours in Go and the original Rust ones) cannot tell it from the real thing.
//
// It serves the endpoints bevygap uses — app and app version get, session create / get / list
// / delete, the in-container context API and self-stop — with the JSON of package edgegap,
// accepting "//v1/..." paths like Edgegap does. Behind them runs a state machine:
//
//	POST /v1/session ──► free socket on a live deployment of that version? ──yes──► linked + ready
//	        │ no
//	        ▼
//	new deployment (Status.DEPLOYING; ports allocated; session Status.LINKED, webhook "Linked")
//	        │ boot time (Config.BootTime + jitter, simulated clock)
//	        ▼
//	Launcher starts the game server with the ARBITRIUM_* environment
//	        │ ok                                   │ launch error / boot-failure fault
//	        ▼                                      ▼
//	Status.READY, sessions ready (webhook "Ready")  Status.ERROR, sessions error (webhook "Error")
//	        │ last session deleted
//	        ▼
//	empty time-to-live ──► Status.TERMINATED: game server stopped, its sessions answer 410
//
// A game server that exits with an error marks its deployment Status.ERROR; one that exits
// cleanly, or calls ARBITRIUM_DELETE_URL, terminates it.
//
// Everything a test needs is switchable: the Clock (the wall clock by default, ScaledClock for
// "30 s boot in 30 ms", FakeClock for step-by-step tests), the random Seed, the Launcher
// (FuncLauncher for an in-process Go game server, ExecLauncher for a program) and Faults (error
// rates, fixed failures, latency, boot failures, deployments that never get ready, lost
// webhooks). The admin
// API (/admin/state, /admin/calls, /admin/faults) and the matching methods (State,
// LiveSessions, CallCounts, SetFaults) let tests assert "no leaked sessions" and count calls.
//
// In-process use:
//
//	sim, err := edgegapsim.New(edgegapsim.Config{
//		APIKeys: []string{"token test"},
//		Apps: []edgegapsim.AppConfig{{Name: "game", Versions: []edgegapsim.VersionConfig{{Name: "v1"}}}},
//		Launcher: edgegapsim.FuncLauncher(runGameServer),
//	})
//	srv := httptest.NewServer(sim)
//	sim.SetBaseURL(srv.URL)
//	defer func() { srv.Close(); sim.Close(ctx) }()
//	client := edgegap.NewClient(srv.URL, "token test")
package edgegapsim
