package edgegapsim_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/internal/syncbuf"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/internal/eventually"
)

// gameServerEnv switches the test binary into a tiny game server (see TestMain).
const gameServerEnv = "EDGEGAPSIM_TEST_GAMESERVER"

func TestMain(m *testing.M) {
	if os.Getenv(gameServerEnv) == "1" {
		os.Exit(testGameServer())
	}
	os.Exit(m.Run())
}

// testGameServer is the process the exec launcher test starts: it reads the ARBITRIUM_*
// environment, fetches its context, answers UDP datagrams on its external port with
// "<request id> <payload>", exits 3 on "crash" and exits 0 on SIGINT.
func testGameServer() int {
	arb, err := edgegap.ArbitriumFromEnv(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ports := arb.Ports
	if os.Getenv(edgegap.PortEnvName("server", "EXTERNAL")) != strconv.Itoa(int(ports["server"].External)) {
		fmt.Fprintln(os.Stderr, "bad ports", ports)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if os.Getenv("EDGEGAPSIM_TEST_IGNORE_SIGINT") == "1" {
		stop() // keep ignoring SIGINT below: only the kill after StopGrace ends this process
		signal.Ignore(os.Interrupt)
		ctx = context.Background()
	}
	dc, err := edgegap.NewClient("", "").GetContext(ctx, arb.ContextURL, arb.ContextToken)
	if err != nil || dc.Deployment.RequestID != arb.RequestID {
		fmt.Fprintln(os.Stderr, "context:", err)
		return 2
	}
	pc, err := net.ListenPacket("udp4", net.JoinHostPort(arb.PublicIP.String(), strconv.Itoa(int(ports["server"].Internal))))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer pc.Close()
	fmt.Println("pid", os.Getpid())
	fmt.Println("listening on", pc.LocalAddr())
	go func() {
		<-ctx.Done()
		pc.Close()
	}()
	buf := make([]byte, 1500)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			fmt.Println("bye")
			return 0
		}
		if string(buf[:n]) == "crash" {
			fmt.Fprintln(os.Stderr, "crashing")
			return 3
		}
		_, _ = pc.WriteTo([]byte(arb.RequestID+" "+string(buf[:n])), addr)
	}
}

// newExecFixture is a simulator whose deployments are real processes (the test binary in game
// server mode) on free loopback ports, one socket each; out collects their output.
func newExecFixture(t *testing.T) (*fixture, *syncbuf.Buffer) {
	t.Helper()
	out := &syncbuf.Buffer{}
	f := newFixture(t, func(c *edgegapsim.Config) {
		c.AllocatePort = nil // real free ports
		c.Apps[0].Versions[0].Sockets = 1
		c.Apps[0].Versions[0].Envs = map[string]string{gameServerEnv: "1"}
		c.Launcher = &edgegapsim.ExecLauncher{Path: os.Args[0], Args: []string{"-test.run=^$"},
			Output: out, Logger: discard(), StopGrace: 5 * time.Second}
	})
	return f, out
}

// TestExecLauncher starts a real process per deployment (the test binary in game server
// mode) on a free loopback UDP port, talks to it, stops it via the empty TTL, and sees a
// crash turn the deployment to error.
func TestExecLauncher(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts processes")
	}
	f, out := newExecFixture(t)
	id1 := f.create(t, edgegap.SessionCreateRequest{})
	id2 := f.create(t, edgegap.SessionCreateRequest{})
	f.clock.Advance(3 * time.Second)
	var deps []string
	for _, id := range []string{id1, id2} {
		g := f.get(t, id)
		if !g.Ready {
			t.Fatalf("session %s not ready: %+v", id, g)
		}
		addr, err := g.Endpoint("")
		if err != nil {
			t.Fatal(err)
		}
		if !addr.Addr().IsLoopback() {
			t.Fatalf("game server address %v is not loopback", addr)
		}
		eventually.True(t, 10*time.Second, func() bool {
			return bytes.Contains([]byte(out.String()), []byte("["+g.Deployment.RequestID+"] listening on"))
		}, "game server listening")
		reply := udpRoundTrip(t, addr.String(), "hello")
		if reply != g.Deployment.RequestID+" hello" {
			t.Errorf("reply %q from %v", reply, addr)
		}
		deps = append(deps, g.Deployment.RequestID)
	}
	// Stop: delete the session, let the empty TTL pass; the process gets SIGINT and says bye.
	if _, err := f.client.DeleteSession(context.Background(), id1); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(10 * time.Minute)
	eventually.True(t, 10*time.Second, func() bool {
		return bytes.Contains([]byte(out.String()), []byte("["+deps[0]+"] bye"))
	}, "clean exit")
	// Crash: the second game server exits with status 3.
	g2 := f.get(t, id2)
	addr, _ := g2.Endpoint("")
	conn, err := net.Dial("udp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = conn.Write([]byte("crash"))
	conn.Close()
	eventually.True(t, 10*time.Second, func() bool {
		st := f.sim.State()
		return len(st.Deployments) == 1 && st.Deployments[0].Status == edgegap.DeploymentStatusError
	}, "deployment error")
	if g := f.get(t, id2); g.Error == nil || !edgegap.StatusIs(g.Status, "error") {
		t.Errorf("session after crash: %+v", g)
	}
	if !bytes.Contains([]byte(out.String()), []byte("["+deps[1]+"] crashing")) {
		t.Errorf("stderr of the game server not prefixed/logged:\n%s", out.String())
	}
}

func udpRoundTrip(t *testing.T, addr, msg string) string {
	t.Helper()
	conn, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	buf := make([]byte, 1500)
	for try := 0; try < 20; try++ {
		_, _ = conn.Write([]byte(msg))
		_ = conn.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		n, err := conn.Read(buf)
		if err == nil {
			return string(buf[:n])
		}
	}
	t.Fatalf("no UDP reply from %s", addr)
	return ""
}

// TestExecLauncherKillsStubbornProcess: a game server that ignores SIGINT is killed after
// StopGrace, so Close does not hang.
func TestExecLauncherKillsStubbornProcess(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts processes")
	}
	out := &syncbuf.Buffer{}
	f := newFixture(t, func(c *edgegapsim.Config) {
		c.AllocatePort = nil
		c.Apps[0].Versions[0].Envs = map[string]string{gameServerEnv: "1", "EDGEGAPSIM_TEST_IGNORE_SIGINT": "1"}
		c.Launcher = &edgegapsim.ExecLauncher{Path: os.Args[0], Args: []string{"-test.run=^$"},
			Output: out, Logger: discard(), StopGrace: 200 * time.Millisecond}
	})
	id := f.create(t, edgegap.SessionCreateRequest{})
	f.clock.Advance(3 * time.Second)
	g := f.get(t, id)
	eventually.True(t, 10*time.Second, func() bool {
		return bytes.Contains([]byte(out.String()), []byte("["+g.Deployment.RequestID+"] listening on"))
	}, "game server listening")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := f.sim.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("stubborn process gone after %v, before StopGrace", d)
	}
	if bytes.Contains([]byte(out.String()), []byte("bye")) {
		t.Error("process exited cleanly although it ignores SIGINT")
	}
}
