package cluster

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// ProcessSpec describes a program to run as its own process (in its own process group, so that
// stopping it also stops what it started, e.g. the simulator's game servers).
type ProcessSpec struct {
	// Name names the process in errors and log prefixes.
	Name string
	// Path is the program; Args its arguments (without the program name).
	Path string
	Args []string
	// Env is the whole environment of the process ("KEY=value"); nothing is inherited.
	Env []string
	// Dir is the working directory ("" = the current one).
	Dir string
	// Output receives the process's stdout and stderr (nil discards them).
	Output io.Writer
}

// Process is a started program.
type Process struct {
	spec ProcessSpec
	cmd  *exec.Cmd
	done chan struct{}

	mu  sync.Mutex
	err error // why it exited, once done is closed
}

// StartProcess starts spec's program. It returns once the program has started.
func StartProcess(spec ProcessSpec) (*Process, error) {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = spec.Env
	if cmd.Env == nil {
		cmd.Env = []string{}
	}
	cmd.Dir = spec.Dir
	cmd.Stdout, cmd.Stderr = spec.Output, spec.Output
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Process{spec: spec, cmd: cmd, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Name returns the process's name.
func (p *Process) Name() string { return p.spec.Name }

// PID returns the process id (also its process group id on Unix).
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Spec returns what the process was started with.
func (p *Process) Spec() ProcessSpec { return p.spec }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err returns why the process exited (nil for exit status 0), or nil while it runs.
func (p *Process) Err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// errNotStopped is returned when a process survives SIGKILL for the whole wait.
var errNotStopped = errors.New("process did not exit after SIGKILL")

// Stop asks the process to stop (SIGINT, as Ctrl-C), waits up to grace, then kills its whole
// process group (SIGKILL) and waits up to killWait more. Whatever the process started in its
// group is killed too, also after a clean exit. It returns the process's exit error for a
// clean stop (nil for status 0), or an error saying it had to be killed.
func (p *Process) Stop(grace time.Duration) error {
	select {
	case <-p.done:
		killGroup(p.cmd) // leftovers of an exited leader
		return p.Err()
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.done:
		killGroup(p.cmd)
		return p.Err()
	case <-t.C:
	}
	if err := p.Kill(); err != nil {
		return err
	}
	return fmt.Errorf("%s (pid %d) did not stop within %v after SIGINT: killed", p.spec.Name, p.PID(), grace)
}

// killWait bounds the wait for a killed process.
const killWait = 5 * time.Second

// Kill kills the process and its process group with SIGKILL (kill -9, for chaos tests) and
// waits up to a few seconds for it to exit.
func (p *Process) Kill() error {
	killGroup(p.cmd)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("%s (pid %d): %w", p.spec.Name, p.PID(), errNotStopped)
	}
}

// Lingering reports whether the process, or anything in its process group (e.g. a game server
// it started), still exists. After Stop or Kill it must be false: tests check it so that none
// leaves a process behind.
func (p *Process) Lingering() bool {
	select {
	case <-p.done:
		return groupAlive(p.cmd)
	default:
		return true
	}
}
