package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/bevygap-go/bevygap/internal/syncbuf"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/examples/dotroom/roomclient"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/protocol"
)

// TestDevUsageErrors: bad flags are refused with exit code 2 before anything starts (the
// whole stack itself is tested by package devstack, and `bevygap dev --smoke` in CI).
func TestDevUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"nats_addr", []string{"--nats-addr", "nowhere"}, nil, "--nats-addr"},
		{"faults_json", []string{"--faults", `{"boot_failure_rate":`}, nil, "--faults"},
		{"faults_unknown_field", []string{"--faults", `{"boot_failure":0.5}`}, nil, "--faults"},
		{"faults_file", []string{"--faults", "@/nonexistent/faults.json"}, nil, "--faults"},
		{"log_level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"log_format", []string{"--log-format", "xml"}, nil, "--log-format"},
		{"version_with_dot", []string{"--version", "v0.1"}, nil, "invalid name"},
		{"args_without_exec", []string{"--", "--flag"}, nil, "without --exec"},
		{"bad_key_flag", []string{"--private-key", "1,2,3"}, nil, "private key"},
		{"zero_key_env", nil, map[string]string{"BEVYGAP_LIGHTYEAR_PRIVATE_KEY": strings.Repeat("00", 32)}, "private key"},
		{"unknown_flag", []string{"--nope"}, nil, "nope"},
		{"game_transport", []string{"--game-transport", "tcp"}, nil, "--game-transport"},
		{"queues_file", []string{"--queues", "/nonexistent/queues.json"}, nil, "--queues"},
		{"queues_env", nil, map[string]string{"BEVYGAP_MATCHMAKER_QUEUES": "/nonexistent/queues.json"}, "--queues"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			env := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr,
				Getenv: func(k string) string { return tt.env[k] }}
			code := run(context.Background(), append([]string{"dev"}, tt.args...), env)
			if code != 2 {
				t.Fatalf("exit code %d, want 2 (stderr: %s)", code, stderr.String())
			}
			if !strings.Contains(stderr.String(), tt.want) {
				t.Errorf("stderr %q does not mention %q", stderr.String(), tt.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("something started: %q", stdout.String())
			}
		})
	}
}

func TestParseFaultsFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "faults.json")
	if err := os.WriteFile(path, []byte(`{"boot_failure_rate":0.25,"endpoints":{"session_create":{"fail_next":2}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := parseFaults("@" + path)
	if err != nil {
		t.Fatal(err)
	}
	if f.BootFailureRate != 0.25 || f.Endpoints["session_create"].FailNext != 2 {
		t.Fatalf("parsed %+v", f)
	}
}

func TestDevBannerHasCopyPasteLines(t *testing.T) {
	t.Parallel()
	info := devstack.Info{NATSURL: "nats://127.0.0.1:4222", HTTPURL: "http://127.0.0.1:3000",
		WebSocketURL: "ws://127.0.0.1:3000/matchmaker/ws", SimURL: "http://127.0.0.1:3080",
		WebhookURL: "http://127.0.0.1:3001/hook/session", AppName: "dotroom", AppVersion: "1", ProtocolID: 1982}
	for _, self := range []string{"bevygap", "go run ./cmd/bevygap", "/opt/bin/bevygap"} {
		var b bytes.Buffer
		printDevBanner(&b, info, devstack.Config{}, "generated for this run", self)
		for _, want := range []string{
			"\n  " + self + " play --url http://127.0.0.1:3000 --game dotroom --version 1\n",
			`nats --server nats://127.0.0.1:4222 req session.gensession '{"client_ip":"81.128.157.100"}'`,
			`curl -sN -X POST 'http://127.0.0.1:3000/matchmaker/request/dotroom/1?client_ip=81.2.69.160'`,
			"http://127.0.0.1:3080/admin/state",
			"  Queues        duo (2, match), room (2-4, seat)\n",
			"\n  " + self + " play --url http://127.0.0.1:3000 --game dotroom --version 1 --queue duo ",
		} {
			if !strings.Contains(b.String(), want) {
				t.Errorf("banner lacks %q:\n%s", want, b.String())
			}
		}
	}
	// The example's client line is there for the built-in game only, not for --exec.
	var def, exec bytes.Buffer
	printDevBanner(&def, info, devstack.Config{}, "generated", "bevygap")
	printDevBanner(&exec, info, devstack.Config{Exec: &devstack.Exec{Path: "./bin/server"}}, "generated", "bevygap")
	if !strings.Contains(def.String(), "go run ./examples/dotroom/client") || strings.Contains(exec.String(), "examples/dotroom/client") {
		t.Errorf("dotroom client line: built-in %v, --exec %v (want true, false)",
			strings.Contains(def.String(), "examples/dotroom/client"), strings.Contains(exec.String(), "examples/dotroom/client"))
	}
}

// TestDevBannerWebTransport: with --game-transport webtransport the banner names the transport
// and the browser page.
func TestDevBannerWebTransport(t *testing.T) {
	t.Parallel()
	info := devstack.Info{HTTPURL: "http://127.0.0.1:3000", PlayURL: "http://127.0.0.1:3000/play/", AppName: "dotroom", AppVersion: "1"}
	var b bytes.Buffer
	printDevBanner(&b, info, devstack.Config{GameTransport: "webtransport", Play: true}, "given", "bevygap")
	for _, want := range []string{
		"dotroom (built-in example, in-process), over webtransport\n",
		"\n  Browser       http://127.0.0.1:3000/play/   (the dotroom player, WebAssembly + WebTransport)\n  Tokens",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, b.String())
		}
	}
	b.Reset()
	printDevBanner(&b, devstack.Info{}, devstack.Config{}, "given", "bevygap")
	if strings.Contains(b.String(), "Browser") || !strings.Contains(b.String(), "over udp") {
		t.Errorf("UDP banner:\n%s", b.String())
	}
}

// TestCommandFor: the banner's copy-paste lines name a command that works: `go run` for a
// go-run build (its binary is deleted when go run ends), the bare name when $PATH finds the
// same file, else the path.
func TestCommandFor(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	onPath := filepath.Join(dir, "bevygap")
	other := filepath.Join(dir, "other", "bevygap")
	for _, p := range []string{onPath, other} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	lookPath := func(name string) (string, error) {
		if name == "bevygap" {
			return onPath, nil
		}
		return "", os.ErrNotExist
	}
	tests := []struct{ exe, want string }{
		{filepath.Join(os.TempDir(), "go-build2281520841", "b001", "exe", "bevygap"), "go run ./cmd/bevygap"},
		{onPath, "bevygap"},
		{other, other},
		{filepath.Join(dir, "missing"), filepath.Join(dir, "missing")},
	}
	for _, tt := range tests {
		if got := commandFor(tt.exe, lookPath); got != tt.want {
			t.Errorf("commandFor(%q) = %q, want %q", tt.exe, got, tt.want)
		}
	}
}

// TestDevCtrlCMidFlight runs `bevygap dev` for real (random ports), with a player connected and
// requests stuck in Edgegap's session create, then cancels its context as Ctrl-C does: the
// command must exit 0 with no session left in the simulator, and the player must be
// disconnected.
func TestDevCtrlCMidFlight(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	t.Parallel()
	ctx, ctrlC := context.WithCancel(t.Context())
	defer ctrlC()
	stdout, stderr, exit := startDev(ctx, "--boot-time", "200ms", "--log-level", "error")

	bannerRE := regexp.MustCompile(`HTTP\s+(http://\S+)[\s\S]*Edgegap sim\s+(http://\S+)`)
	var url, simURL string
	eventually.True(t, 20*time.Second, func() bool {
		select {
		case code := <-exit:
			t.Fatalf("bevygap dev exited early with %d: %s", code, stderr.String())
		default:
		}
		if m := bannerRE.FindStringSubmatch(stdout.String()); m != nil {
			url, simURL = m[1], m[2]
		}
		return url != ""
	}, "the banner of bevygap dev")

	pctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	player, _, err := roomclient.Join(pctx, url, devstack.DefaultAppName, devstack.DefaultAppVersion, client.Options{})
	if err != nil {
		t.Fatalf("player: %v", err)
	}
	defer player.Close()
	// From now on Edgegap takes 1 s to create a session: the next requests stay inside it.
	req, err := http.NewRequestWithContext(pctx, http.MethodPut, simURL+"/admin/faults",
		strings.NewReader(`{"endpoints":{"session_create":{"latency":"1s"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("setting the faults: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		t.Fatalf("PUT /admin/faults: %s", resp.Status)
	}
	inflight := make(chan error, 3)
	acked := make(chan struct{}, cap(inflight))
	opts := client.Options{OnProgress: func(p client.Progress) {
		if p.Feedback != nil && p.Feedback.Kind == protocol.FeedbackAcknowledged {
			acked <- struct{}{}
		}
	}}
	for range cap(inflight) {
		go func() {
			_, err := client.Request(pctx, url, devstack.DefaultAppName, devstack.DefaultAppVersion, opts)
			inflight <- err
		}()
	}
	for range cap(acked) { // the matchmaker has taken each request: it goes on to Edgegap's create
		select {
		case <-acked:
		case err := <-inflight:
			t.Fatalf("a request ended before the matchmaker took it: %v", err)
		case <-pctx.Done():
			t.Fatal("the matchmaker did not acknowledge the requests")
		}
	}

	ctrlC()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("exit code %d after Ctrl-C; stderr: %s", code, stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("bevygap dev did not stop within 40 s of Ctrl-C")
	}
	if !strings.Contains(stdout.String(), "Stopped cleanly: 0 live sessions left in the simulator.") {
		t.Errorf("no clean-stop line in the output:\n%s", stdout.String())
	}
	select {
	case <-player.Done():
	case <-time.After(10 * time.Second):
		t.Error("the player is still connected after bevygap dev stopped")
	}
	for range cap(inflight) {
		select {
		case <-inflight:
		case <-time.After(10 * time.Second):
			t.Fatal("a session request still hangs after bevygap dev stopped")
		}
	}
}

// TestDevBusyPort: a fixed address already in use (another bevygap dev) fails at once, exit 1,
// with one line naming the flag to change, and nothing started (no banner).
func TestDevBusyPort(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for _, flagName := range []string{"--nats-addr", "--http-addr", "--webhook-addr", "--sim-addr"} {
		t.Run(flagName, func(t *testing.T) {
			args := []string{"dev", "--log-level", "error"}
			for _, f := range []string{"--nats-addr", "--http-addr", "--webhook-addr", "--sim-addr"} {
				addr := "127.0.0.1:0"
				if f == flagName {
					addr = busy.Addr().String()
				}
				args = append(args, f, addr)
			}
			var stdout, stderr bytes.Buffer
			env := &Env{Stdin: strings.NewReader(""), Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }}
			start := time.Now()
			if code := run(t.Context(), args, env); code != 1 {
				t.Fatalf("exit code %d, want 1 (stderr: %s)", code, stderr.String())
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %s to fail", d)
			}
			line := stderr.String()
			for _, want := range []string{"Error: ", busy.Addr().String() + " is already in use", "change " + flagName} {
				if !strings.Contains(line, want) {
					t.Errorf("stderr %q does not contain %q", line, want)
				}
			}
			// One Error: line, then the pointer to the troubleshooting page (exitCode).
			if first, rest, _ := strings.Cut(line, "\n"); !strings.HasPrefix(first, "Error: ") || rest != "See: "+troubleshootingURL+" (what the message means and the fix)\n" {
				t.Errorf("stderr %q: want one Error: line and the troubleshooting pointer", line)
			}
			if stdout.Len() != 0 {
				t.Errorf("something started: %q", stdout.String())
			}
		})
	}
}

// TestForceExitOnSignal: the second-signal watcher listens only once armed (so the first
// Ctrl-C, which arms it, is not counted twice), exits 130 with one line on a signal, and stops
// listening when the command returns. Each case runs in a synctest bubble: synctest.Wait says
// when the watcher is blocked, so "not listening yet" needs no sleep.
func TestForceExitOnSignal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		arm      bool
		signal   bool
		wantExit bool
	}{
		{"signal_while_shutting_down", true, true, true},
		{"shutdown_finished_first", true, false, false},
		{"never_armed", false, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				sigs := make(chan os.Signal, 1)
				var mu sync.Mutex
				registered, stopped := 0, 0
				notify := func() (<-chan os.Signal, func()) {
					mu.Lock()
					defer mu.Unlock()
					registered++
					return sigs, func() { mu.Lock(); stopped++; mu.Unlock() }
				}
				armed, done, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
				exits := make(chan int, 1)
				var out syncbuf.Buffer
				go func() {
					defer close(returned)
					forceExitOnSignal(armed, done, notify, &out, devForceMessage(false), func(code int) { exits <- code })
				}()
				synctest.Wait() // the watcher is blocked, waiting to be armed or done
				mu.Lock()
				if registered != 0 {
					t.Error("listening for signals before being armed")
				}
				mu.Unlock()
				if tt.arm {
					close(armed)
				}
				if tt.signal {
					sigs <- os.Interrupt
					select {
					case code := <-exits:
						if code != 130 {
							t.Errorf("exit code %d, want 130", code)
						}
					case <-time.After(5 * time.Second):
						t.Fatal("no exit after the second signal")
					}
				}
				close(done)
				select {
				case <-returned:
				case <-time.After(5 * time.Second):
					t.Fatal("the watcher did not return after done")
				}
				select {
				case code := <-exits:
					if !tt.wantExit {
						t.Errorf("exit(%d) without a second signal", code)
					}
				default:
				}
				mu.Lock()
				defer mu.Unlock()
				if tt.arm && (registered != 1 || stopped != 1) {
					t.Errorf("registered %d, stopped %d times, want 1 and 1", registered, stopped)
				}
				if !tt.arm && registered != 0 {
					t.Errorf("registered %d times without being armed", registered)
				}
				got := out.String()
				if tt.wantExit != (got != "") {
					t.Errorf("output %q", got)
				}
				if tt.wantExit && (strings.Count(got, "\n") != 1 || !strings.Contains(got, "cut short") ||
					!strings.Contains(got, "sessions may be left in the simulator")) {
					t.Errorf("output %q: want one line saying the shutdown was cut short", got)
				}
			})
		})
	}
}

func TestDevForceMessage(t *testing.T) {
	t.Parallel()
	if m := devForceMessage(false); !strings.Contains(m, "nothing outlives it") {
		t.Errorf("in-process message %q", m)
	}
	if m := devForceMessage(true); !strings.Contains(m, "--exec") || strings.Contains(m, "nothing outlives") {
		t.Errorf("--exec message %q", m)
	}
}

// startDev runs `bevygap dev` on random loopback ports with the extra args, in the background
// until ctx ends (as Ctrl-C does). It returns its stdout, stderr and exit code channel.
func startDev(ctx context.Context, args ...string) (stdout, stderr *syncbuf.Buffer, exit chan int) {
	stdout, stderr = &syncbuf.Buffer{}, &syncbuf.Buffer{}
	env := &Env{Stdin: strings.NewReader(""), Stdout: stdout, Stderr: stderr, Getenv: func(string) string { return "" }}
	exit = make(chan int, 1)
	all := append([]string{"dev", "--nats-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0",
		"--webhook-addr", "127.0.0.1:0", "--sim-addr", "127.0.0.1:0"}, args...)
	go func() { exit <- run(ctx, all, env) }()
	return stdout, stderr, exit
}
