package edgegapsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/logkey"
)

// LaunchSpec describes the game server of one deployment.
type LaunchSpec struct {
	RequestID string
	App       string
	Version   string
	// Env is the deployment's environment: the ARBITRIUM_* variables (request id, public IP,
	// ports mapping, context URL + token, delete URL + token, location, per-port variables)
	// plus the app version's envs.
	Env map[string]string
	// Ports are the allocated ports by name; internal and external are the same loopback port.
	Ports map[string]edgegap.EnvPort
}

// Launcher starts the game server of a deployment.
type Launcher interface {
	// Launch starts the game server described by spec and returns once it has started (not
	// when it exits). ctx is cancelled when the deployment stops (deleted after its empty
	// time-to-live, self-stopped, crashed or the simulator closing); the game server must then
	// exit. An error marks the deployment Status.ERROR.
	Launch(ctx context.Context, spec LaunchSpec) (Process, error)
}

// Process is a started game server.
type Process interface {
	// Done is closed when the game server has exited.
	Done() <-chan struct{}
	// Err returns, once Done is closed, why it exited: nil for a clean exit. A game server that
	// exits with an error while its deployment runs marks the deployment Status.ERROR.
	Err() error
}

// LauncherFunc adapts a function to the Launcher interface.
type LauncherFunc func(ctx context.Context, spec LaunchSpec) (Process, error)

// Launch calls f.
func (f LauncherFunc) Launch(ctx context.Context, spec LaunchSpec) (Process, error) {
	return f(ctx, spec)
}

// FuncLauncher returns a Launcher that runs run in a goroutine per deployment — an in-process
// Go game server. run gets the deployment's environment (read it with
// edgegap.ArbitriumFromEnv(func(k string) string { return env[k] })) and must return when ctx
// is cancelled. Its return value is the process's exit error; an error returned after ctx was
// cancelled counts as a clean exit.
func FuncLauncher(run func(ctx context.Context, env map[string]string) error) Launcher {
	return LauncherFunc(func(ctx context.Context, spec LaunchSpec) (Process, error) {
		p := &funcProcess{done: make(chan struct{})}
		go func() {
			defer close(p.done)
			err := run(ctx, spec.Env)
			if ctx.Err() != nil {
				err = nil
			}
			p.err = err
		}()
		return p, nil
	})
}

type funcProcess struct {
	done chan struct{}
	err  error
}

func (p *funcProcess) Done() <-chan struct{} { return p.done }
func (p *funcProcess) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// ExecLauncher runs a game server program per deployment (`bevygap edgegap-sim --exec`). The
// program inherits the simulator's environment plus the deployment's (LaunchSpec.Env). On
// stop it gets SIGINT (os.Interrupt), then is killed after StopGrace.
type ExecLauncher struct {
	// Path is the program; Args its arguments; Dir its working directory ("" = current).
	Path string
	Args []string
	Dir  string
	// Output receives the program's stdout and stderr, each line prefixed with
	// "[<request id>] ". Nil logs each line through Logger instead.
	Output io.Writer
	// Logger logs starts, exits and (without Output) the program's output lines.
	Logger *slog.Logger
	// StopGrace is how long a stopping program may take before it is killed (default 5 s).
	StopGrace time.Duration
}

// Launch starts the program.
func (l *ExecLauncher) Launch(ctx context.Context, spec LaunchSpec) (Process, error) {
	if l.Path == "" {
		return nil, errors.New("edgegapsim: exec launcher without program path")
	}
	log := l.Logger
	if log == nil {
		log = slog.Default()
	}
	grace := l.StopGrace
	if grace <= 0 {
		grace = 5 * time.Second
	}
	cmd := exec.CommandContext(ctx, l.Path, l.Args...)
	cmd.Dir = l.Dir
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = grace
	env := os.Environ()
	keys := make([]string, 0, len(spec.Env))
	for k := range spec.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+spec.Env[k])
	}
	cmd.Env = env
	prefix := "[" + spec.RequestID + "] "
	var outMu sync.Mutex
	stdout := &lineWriter{mu: &outMu, emit: l.emitter(log, prefix, spec.RequestID, "stdout")}
	stderr := &lineWriter{mu: &outMu, emit: l.emitter(log, prefix, spec.RequestID, "stderr")}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("edgegapsim: start %s: %w", l.Path, err)
	}
	log.Info("game server started", logkey.Deployment, spec.RequestID, "pid", cmd.Process.Pid, "program", l.Path)
	p := &funcProcess{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		err := cmd.Wait()
		stdout.flush()
		stderr.flush()
		if ctx.Err() != nil {
			err = nil // stopped by us
		}
		p.err = err
		log.Info("game server exited", logkey.Deployment, spec.RequestID, "pid", cmd.Process.Pid, logkey.Err, err)
	}()
	return p, nil
}

func (l *ExecLauncher) emitter(log *slog.Logger, prefix, rid, stream string) func([]byte) {
	if l.Output != nil {
		return func(line []byte) {
			_, _ = fmt.Fprintf(l.Output, "%s%s\n", prefix, line)
		}
	}
	return func(line []byte) {
		log.Info("game server output", logkey.Deployment, rid, "stream", stream, "line", string(line))
	}
}

// lineWriter splits written bytes into lines and emits each one.
type lineWriter struct {
	mu   *sync.Mutex
	buf  []byte
	emit func([]byte)
}

// maxLine bounds a buffered partial line.
const maxLine = 64 << 10

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(bytes.TrimRight(w.buf[:i], "\r"))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLine {
		w.emit(w.buf)
		w.buf = nil
	}
	return len(p), nil
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.emit(w.buf)
		w.buf = nil
	}
}

// freePort finds a loopback port that is currently free for protocol (UDP, TCP, or both for
// "TCP/UDP"; HTTP-like protocols are TCP), avoiding the ports in taken.
func freePort(protocol string, taken map[int]bool) (int, error) {
	needUDP := protocol == "UDP" || protocol == "TCP/UDP"
	needTCP := protocol != "UDP"
	for try := 0; try < 50; try++ {
		var port int
		if needUDP {
			pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				return 0, fmt.Errorf("edgegapsim: find free UDP port: %w", err)
			}
			port = pc.LocalAddr().(*net.UDPAddr).Port
			if needTCP {
				ln, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(port))
				if err != nil {
					_ = pc.Close()
					continue
				}
				_ = ln.Close()
			}
			_ = pc.Close()
		} else {
			ln, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				return 0, fmt.Errorf("edgegapsim: find free TCP port: %w", err)
			}
			port = ln.Addr().(*net.TCPAddr).Port
			_ = ln.Close()
		}
		if !taken[port] {
			return port, nil
		}
	}
	return 0, errors.New("edgegapsim: no free port found")
}
