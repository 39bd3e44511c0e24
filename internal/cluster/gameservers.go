package cluster

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// GameServer is a game server process the simulator runs for a deployment (--exec).
type GameServer struct {
	// PID is the game server's process id.
	PID int
	// Deployment is its deployment's request id (its ARBITRIUM_REQUEST_ID).
	Deployment string
}

// ErrNoProc is returned by GameServers where there is no /proc file system to find the
// simulator's child processes in (everywhere but Linux).
var ErrNoProc = errors.New("cluster: listing game servers needs /proc (Linux)")

// GameServers lists the game server processes the simulator runs now: its child processes,
// each with the deployment it serves.
func (c *Cluster) GameServers() ([]GameServer, error) {
	sim := c.Process("edgegap-sim")
	if sim == nil {
		return nil, errors.New("cluster: no simulator")
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNoProc, err)
	}
	var out []GameServer
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue // exited meanwhile
		}
		if ppid, ok := parentPID(string(stat)); !ok || ppid != sim.PID() {
			continue
		}
		environ, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err != nil {
			continue
		}
		out = append(out, GameServer{PID: pid, Deployment: envValue(string(environ), "ARBITRIUM_REQUEST_ID")})
	}
	return out, nil
}

// KillGameServer kills the game server of deployment with SIGKILL (kill -9: a crash, nothing
// cleaned up), without waiting for it to exit.
func (c *Cluster) KillGameServer(deployment string) error {
	gs, err := c.GameServers()
	if err != nil {
		return err
	}
	for _, g := range gs {
		if g.Deployment == deployment {
			p, err := os.FindProcess(g.PID)
			if err != nil {
				return err
			}
			return p.Kill()
		}
	}
	return fmt.Errorf("cluster: no game server process for deployment %q", deployment)
}

// parentPID reads the parent process id from a /proc/<pid>/stat line: "pid (comm) state ppid
// ...", where comm may hold spaces and parentheses, so the fields are counted after the last ')'.
func parentPID(stat string) (int, bool) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	return ppid, err == nil
}

// envValue returns key's value in a NUL-separated environment block ("" if unset).
func envValue(environ, key string) string {
	for kv := range strings.SplitSeq(environ, "\x00") {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}
