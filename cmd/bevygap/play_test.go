package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/netcode"
)

// playFrontDoor is a fake matchmaker front door that answers every WebSocket and chunked
// request with the given frames (then close "Goodbye"), or hangs when hang is set. It speaks
// the wire contract of DESIGN.md; package httpd is deliberately not used.
func playFrontDoor(t *testing.T, frames []string, hang bool) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /matchmaker/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, _, err := conn.Read(ctx); err != nil {
			return
		}
		if hang {
			_, _, _ = conn.Read(ctx)
			return
		}
		for _, f := range frames {
			if err := conn.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
				return
			}
		}
		_ = conn.Close(websocket.StatusNormalClosure, "Goodbye")
	})
	mux.HandleFunc("POST /matchmaker/request/{game}/{version}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for _, f := range frames {
			_, _ = w.Write([]byte(f + "\n"))
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// playToken mints a lightyear-0.17 connect token for addr with a fresh key.
func playToken(t *testing.T, addr netip.AddrPort) (string, netcode.Key) {
	t.Helper()
	key, err := netcode.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	tok, err := (&netcode.Minter{Key: key}).Mint(netcode.TokenParams{
		ProtocolID: 1982, ClientID: 7, ServerAddrs: []netip.AddrPort{addr},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Base64(), key
}

func playReadyFrame(b64 string, addr netip.AddrPort) string {
	return `{"SessionReady":{"token":"` + b64 + `","ip":"` + addr.Addr().String() + `","port":` +
		strconv.Itoa(int(addr.Port())) + `,"cert_digest":""}}`
}

// runPlayCLI runs "bevygap play args..." through the binary's entry point with buffers.
func runPlayCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{
		Stdin:  strings.NewReader(""),
		Stdout: &out,
		Stderr: &errb,
		Getenv: func(string) string { return "" },
	}
	code = run(context.Background(), append([]string{"play"}, args...), env)
	return code, out.String(), errb.String()
}

func decodePlayResult(t *testing.T, stdout string) playResult {
	t.Helper()
	var res playResult
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&res); err != nil {
		t.Fatalf("stdout is not one playResult JSON document: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Fatalf("stdout has more than one JSON document:\n%s", stdout)
	}
	return res
}

func TestPlayMatchmakingOnly(t *testing.T) {
	t.Parallel()
	addr := netip.MustParseAddrPort("127.0.0.1:40123")
	b64, _ := playToken(t, addr)
	srv := playFrontDoor(t, []string{`"Acknowledged"`, `{"SessionRequestAccepted":"sess-1"}`,
		`{"ProgressReport":"booting"}`, playReadyFrame(b64, addr)}, false)

	for _, transport := range []string{"ws", "http"} {
		t.Run(transport+"/json", func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runPlayCLI(t, "--url", srv.URL, "--transport", transport, "--packets", "0", "--json")
			if code != 0 {
				t.Fatalf("exit %d\nstderr: %s", code, stderr)
			}
			res := decodePlayResult(t, stdout)
			if !res.OK || res.ExitCode != 0 || res.Error != nil || res.Transport != transport || res.Game != "dotroom" || res.Version != "1" {
				t.Errorf("result = %+v", res)
			}
			if res.Session == nil || res.Session.SessionID != "sess-1" || res.Session.Server != addr.String() ||
				res.Session.ProtocolID != 1982 || res.Session.TokenFormat != "lightyear-0.17" ||
				!reflect.DeepEqual(res.Session.ServerAddrs, []string{addr.String()}) {
				t.Errorf("session = %+v", res.Session)
			}
			if strings.Contains(stdout, b64[:40]) || strings.Contains(stderr, b64[:40]) {
				t.Error("the connect token (a credential) was printed")
			}
			var states []string
			for _, s := range res.Progress {
				states = append(states, s.State+":"+s.Message)
			}
			want := []string{
				"AwaitingResponse:Requesting ...", "AwaitingResponse:Request acknowledged",
				"AwaitingResponse:Session created: sess-1", "AwaitingResponse:Progress: booting",
				"ReadyToConnect:" + addr.String(), "Finished:",
			}
			if len(states) != len(want)+1 || !reflect.DeepEqual(states[1:], want) || !strings.HasPrefix(states[0], "Request:") {
				t.Errorf("progress:\n got %q\nwant Request + %q", states, want)
			}
			// stderr is not a terminal: one plain line per step, no escape sequences.
			if strings.Contains(stderr, "\033[") || !strings.Contains(stderr, "] AwaitingResponse: Progress: booting\n") {
				t.Errorf("stderr progress:\n%s", stderr)
			}
		})
	}

	t.Run("text", func(t *testing.T) {
		t.Parallel()
		code, stdout, stderr := runPlayCLI(t, "--url", srv.URL+"/matchmaker/ws", "--packets", "0")
		if code != 0 {
			t.Fatalf("exit %d\nstderr: %s", code, stderr)
		}
		if !strings.Contains(stdout, "Session ready: sess-1 at 127.0.0.1:40123") ||
			!strings.Contains(stdout, "Connect token: lightyear-0.17, protocol id 1982, 1 server address(es), expires in ") {
			t.Errorf("stdout:\n%s", stdout)
		}
	})
}

func TestPlayFailures(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "ws://" + ln.Addr().String() + "/matchmaker/ws"
	ln.Close()
	mmErr := playFrontDoor(t, []string{`"Acknowledged"`, `{"Error":[504,"Game server not ready in time"]}`}, false)
	errFrame := playFrontDoor(t, []string{`ERR Timeout waiting for websocket request message: 10s`}, false)
	garbage := playFrontDoor(t, []string{`<html>`}, false)
	hang := playFrontDoor(t, nil, true)

	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantKind   string // "" for usage errors (no JSON document)
		wantCodeMM int
		wantStderr string
	}{
		{"matchmaker error", []string{"--url", mmErr.URL}, 1, "matchmaker", 504, "Error: matchmaking: matchmaker error 504: Game server not ready in time"},
		{"ERR frame", []string{"--url", errFrame.URL}, 1, "front_door", 0, "Timeout waiting for websocket request message"},
		{"garbage", []string{"--url", garbage.URL}, 1, "protocol", 0, "unexpected message"},
		{"timeout", []string{"--url", hang.URL, "--timeout", "300ms"}, 1, "timeout", 0, "timed out"},
		{"unreachable", []string{"--url", dead}, 1, "connect", 0, "cannot reach the matchmaker"},
		{"bad scheme", []string{"--url", "ftp://127.0.0.1:3000"}, 2, "", 0, "invalid matchmaker URL"},
		{"bad transport", []string{"--transport", "udp"}, 2, "", 0, "unknown transport"},
		{"bad game transport", []string{"--game-transport", "ws"}, 2, "", 0, "--game-transport"},
		{"bad format", []string{"--token-format", "lightyear-9"}, 2, "", 0, "unknown token format"},
		{"bad game", []string{"--game", "a/b"}, 2, "", 0, "Game name invalid"},
		{"long version", []string{"--version", strings.Repeat("v", 31)}, 2, "", 0, "Game version too long"},
		{"negative packets", []string{"--packets", "-1"}, 2, "", 0, "--packets must be"},
		{"zero timeout", []string{"--timeout", "0s"}, 2, "", 0, "--timeout must be positive"},
		{"bad client ip", []string{"--client-ip", "near-london"}, 2, "", 0, "not an IP address"},
		{"extra argument", []string{"now"}, 2, "", 0, `unexpected argument "now"`},
		{"unknown flag", []string{"--color"}, 2, "", 0, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, stdout, stderr := runPlayCLI(t, append([]string{"--json", "--packets", "0"}, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstderr: %s", code, tt.wantCode, stderr)
			}
			if !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("stderr does not mention %q:\n%s", tt.wantStderr, stderr)
			}
			if tt.wantKind == "" {
				if stdout != "" {
					t.Errorf("usage error printed a result: %s", stdout)
				}
				return
			}
			res := decodePlayResult(t, stdout)
			if res.OK || res.ExitCode != tt.wantCode || res.Error == nil || res.Error.Kind != tt.wantKind ||
				res.Error.Code != tt.wantCodeMM || res.Error.Stage != "matchmaking" {
				t.Errorf("result = %+v, error = %+v", res, res.Error)
			}
			if last := res.Progress[len(res.Progress)-1]; last.State != "Error" {
				t.Errorf("last progress step = %+v", last)
			}
		})
	}
}

func TestPlayHelp(t *testing.T) {
	t.Parallel()
	code, _, stderr := runPlayCLI(t, "-h")
	if code != 0 || !strings.Contains(stderr, "Usage: bevygap play") || !strings.Contains(stderr, "-packets") ||
		!strings.Contains(stderr, "Exit codes:\n  0  session obtained") || !strings.Contains(stderr, "  3  session obtained, but") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
}

func TestProgressDisplayTerminal(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	d := newProgressDisplay(&buf, true)
	d.update(client.Progress{State: client.StateAwaitingResponse, Message: "Request acknowledged"})
	d.update(client.Progress{State: client.StateFinished})
	d.finish()
	d.finish() // idempotent
	d.update(client.Progress{State: client.StateAwaitingResponse, Message: "late"})
	out := buf.String()
	if !strings.HasPrefix(out, "\r\033[K") || !strings.Contains(out, "AwaitingResponse: Request acknowledged (") ||
		!strings.HasSuffix(out, "\r\033[K") || strings.Contains(out, "late") || strings.Contains(out, "\n") {
		t.Errorf("terminal output %q", out)
	}
}

func TestIsTerminal(t *testing.T) {
	t.Parallel()
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	noEnv := func(string) string { return "" }
	if isTerminal(f, noEnv) {
		t.Error("a regular file is not a terminal")
	}
	if isTerminal(&bytes.Buffer{}, noEnv) {
		t.Error("a buffer is not a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(w, noEnv) {
		t.Error("a pipe is not a terminal")
	}
}

// playGameServerUDP starts a netcode game server on loopback that echoes every payload when
// echo is set, and denies client id 13. It returns its address and private key.
func playGameServerUDP(t *testing.T, echo bool) (netip.AddrPort, netcode.Key) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	key, err := netcode.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := netcode.NewServer(netcode.ServerConfig{
		Addr: "127.0.0.1:0", ProtocolID: 1982, PrivateKey: key,
		OnConnectRequest: func(_ context.Context, clientID uint64, _ [netcode.UserDataBytes]byte) error {
			if clientID == 13 {
				return &netcode.DeniedError{Reason: netcode.DeniedBanned}
			}
			return nil
		},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(ctx) }()
	if echo {
		go func() {
			for {
				p, err := srv.Recv(ctx)
				if err != nil {
					return
				}
				_ = srv.Send(p.ClientID, p.Data)
			}
		}()
	}
	t.Cleanup(func() {
		cancel()
		_ = srv.Close()
		<-served
	})
	return srv.Addr(), key
}

// mintFor mints a lightyear-0.17 token for client id at addr with key.
func playMint(t *testing.T, key netcode.Key, clientID uint64, timeoutSeconds int32, addr netip.AddrPort) string {
	t.Helper()
	tok, err := (&netcode.Minter{Key: key}).Mint(netcode.TokenParams{
		ProtocolID: 1982, ClientID: clientID, TimeoutSeconds: timeoutSeconds, ServerAddrs: []netip.AddrPort{addr},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok.Base64()
}

func TestPlayGameServer(t *testing.T) {
	t.Parallel()
	echoAddr, echoKey := playGameServerUDP(t, true)
	silentAddr, silentKey := playGameServerUDP(t, false)
	// A UDP port with nothing behind it: bind one, then close it.
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	pc.Close()

	frames := func(b64 string, addr netip.AddrPort) []string {
		return []string{`"Acknowledged"`, `{"SessionRequestAccepted":"sess-9"}`, playReadyFrame(b64, addr)}
	}
	tests := []struct {
		name         string
		frames       []string
		packets      string
		wantCode     int
		wantReceived int
		wantKind     string
	}{
		{"echo", frames(playMint(t, echoKey, 42, 0, echoAddr), echoAddr), "3", 0, 3, ""},
		{"no echo: packets lost, still connected", frames(playMint(t, silentKey, 42, 0, silentAddr), silentAddr), "1", 0, 0, ""},
		{"denied", frames(playMint(t, echoKey, 13, 0, echoAddr), echoAddr), "3", 3, 0, "game_server"},
		{"wrong key: never answered", frames(playMint(t, silentKey, 42, 1, echoAddr), echoAddr), "3", 3, 0, "game_server"},
		{"nothing listening", frames(playMint(t, echoKey, 42, 1, deadAddr), deadAddr), "3", 3, 0, "game_server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fd := playFrontDoor(t, tt.frames, false)
			code, stdout, stderr := runPlayCLI(t, "--url", fd.URL, "--packets", tt.packets, "--json", "--timeout", "20s")
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.wantCode, stdout, stderr)
			}
			res := decodePlayResult(t, stdout)
			if res.Session == nil || res.Session.SessionID != "sess-9" {
				t.Errorf("session = %+v", res.Session)
			}
			gs := res.GameServer
			if gs == nil {
				t.Fatal("no game_server in the result")
			}
			if tt.wantCode != 0 {
				if gs.Connected || res.Error == nil || res.Error.Stage != "game_server" || res.Error.Kind != tt.wantKind {
					t.Errorf("game_server = %+v, error = %+v", gs, res.Error)
				}
				if !strings.Contains(stderr, "Error: game server ") {
					t.Errorf("stderr: %s", stderr)
				}
				return
			}
			n, _ := strconv.Atoi(tt.packets)
			if !gs.Connected || gs.PacketsSent != n || gs.PacketsReceived != tt.wantReceived || len(gs.RTTMS) != tt.wantReceived {
				t.Errorf("game_server = %+v", gs)
			}
			if tt.wantReceived > 0 && (gs.MinMS <= 0 || gs.MinMS > gs.AvgMS || gs.AvgMS > gs.MaxMS) {
				t.Errorf("rtt summary min/avg/max = %v/%v/%v", gs.MinMS, gs.AvgMS, gs.MaxMS)
			}
		})
	}

	t.Run("text", func(t *testing.T) {
		t.Parallel()
		fd := playFrontDoor(t, frames(playMint(t, echoKey, 42, 0, echoAddr), echoAddr), false)
		code, stdout, stderr := runPlayCLI(t, "--url", fd.URL, "--packets", "2")
		if code != 0 {
			t.Fatalf("exit %d\nstderr: %s", code, stderr)
		}
		for _, want := range []string{
			"Connecting to " + echoAddr.String() + " over netcode UDP ...\n",
			"Connected to " + echoAddr.String() + " from 127.0.0.1:",
			"(client id 42)\n",
			"reply 1/2 from " + echoAddr.String() + ": 18 bytes, rtt ",
			"reply 2/2 from ",
			"2 packets sent, 2 received, 0% loss; rtt min/avg/max = ",
			"Disconnected.\n",
		} {
			if !strings.Contains(stdout, want) {
				t.Errorf("stdout lacks %q:\n%s", want, stdout)
			}
		}
	})

	t.Run("text, server that does not echo", func(t *testing.T) {
		t.Parallel()
		fd := playFrontDoor(t, frames(playMint(t, silentKey, 42, 0, silentAddr), silentAddr), false)
		code, stdout, stderr := runPlayCLI(t, "--url", fd.URL, "--packets", "1")
		if code != 0 {
			t.Fatalf("exit %d\nstderr: %s", code, stderr)
		}
		want := "1 packets sent; connected; the server sent no replies (it does not echo, so no round-trip times)\nDisconnected.\n"
		if !strings.Contains(stdout, want) || strings.Contains(stdout, "loss") {
			t.Errorf("stdout lacks %q (or shows a loss figure):\n%s", want, stdout)
		}
	})
}

func TestPlaySummary(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		res    playGameResult
		others int
		want   string
	}{
		{"all echoed", playGameResult{PacketsSent: 2, PacketsReceived: 2, MinMS: 0.1, AvgMS: 0.2, MaxMS: 0.3}, 0,
			"2 packets sent, 2 received, 0% loss; rtt min/avg/max = 0.100/0.200/0.300 ms"},
		{"some lost", playGameResult{PacketsSent: 4, PacketsReceived: 3, MinMS: 1, AvgMS: 1, MaxMS: 1}, 7,
			"4 packets sent, 3 received, 25% loss; rtt min/avg/max = 1.000/1.000/1.000 ms"},
		{"silent server", playGameResult{PacketsSent: 5}, 0,
			"5 packets sent; connected; the server sent no replies (it does not echo, so no round-trip times)"},
		{"game traffic, no echo", playGameResult{PacketsSent: 5}, 12,
			"5 packets sent; connected; the server sent 12 packets, none an echo of ours within 1s (so no round-trip times)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := playSummary(&tt.res, tt.others); got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// flagDefaults runs "bevygap <name> -h" and returns the quoted defaults of its string flags.
func flagDefaults(t *testing.T, name string) map[string]string {
	t.Helper()
	var out, errb bytes.Buffer
	env := &Env{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &errb, Getenv: func(string) string { return "" }}
	if code := run(context.Background(), []string{name, "-h"}, env); code != 0 {
		t.Fatalf("bevygap %s -h: exit %d\n%s", name, code, errb.String())
	}
	defaults := map[string]string{}
	var flagName string
	for _, line := range strings.Split(errb.String(), "\n") {
		if f, ok := strings.CutPrefix(line, "  -"); ok {
			flagName, _, _ = strings.Cut(f, " ")
			continue
		}
		if _, val, ok := strings.Cut(line, `(default "`); ok && flagName != "" {
			defaults[flagName], _, _ = strings.Cut(val, `")`)
		}
	}
	return defaults
}

// TestPlayDefaultsMatchDev: a bare "bevygap play" must request what a bare "bevygap dev" serves,
// at the address it serves it on.
func TestPlayDefaultsMatchDev(t *testing.T) {
	t.Parallel()
	dev, play := flagDefaults(t, "dev"), flagDefaults(t, "play")
	if dev["app"] == "" || dev["version"] == "" || dev["http-addr"] == "" {
		t.Fatalf("could not read the defaults of bevygap dev: %v", dev)
	}
	want := map[string]string{
		"game":    dev["app"],
		"version": dev["version"],
		"url":     "ws://" + dev["http-addr"] + "/matchmaker/ws",
	}
	for flagName, w := range want {
		if got := play[flagName]; got != w {
			t.Errorf("play --%s defaults to %q, dev serves %q", flagName, got, w)
		}
	}
	if play["game"] != "dotroom" || play["version"] != "1" {
		t.Errorf("play defaults: game %q version %q, want dotroom 1", play["game"], play["version"])
	}
	// The help names the Rust client plugin's different defaults.
	_, _, stderr := runPlayCLI(t, "-h")
	if !strings.Contains(stderr, "--game bevygap-spaceships --version 1") {
		t.Errorf("play -h does not mention the Rust plugin's defaults:\n%s", stderr)
	}
}

// TestPlayDefaultsRequestDotroom checks the game and version a bare play puts on the wire.
func TestPlayDefaultsRequestDotroom(t *testing.T) {
	t.Parallel()
	got := make(chan string, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /matchmaker/request/{game}/{version}", func(w http.ResponseWriter, r *http.Request) {
		got <- r.PathValue("game") + "/" + r.PathValue("version")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"Error":[404,"no such game"]}` + "\n"))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	code, _, stderr := runPlayCLI(t, "--url", srv.URL, "--transport", "http", "--packets", "0", "--timeout", "10s")
	if code != 1 {
		t.Fatalf("exit %d, want 1 (the fake front door refuses)\n%s", code, stderr)
	}
	select {
	case g := <-got:
		if g != "dotroom/1" {
			t.Errorf("requested %q, want dotroom/1", g)
		}
	default:
		t.Fatalf("the front door got no request\n%s", stderr)
	}
}
