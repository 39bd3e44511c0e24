//go:build !unix

package cluster

import "os/exec"

// setProcessGroup does nothing here: without process groups only the process itself is
// stopped.
func setProcessGroup(*exec.Cmd) {}

// killGroup kills the process itself.
func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}

// groupAlive reports whether the process itself still runs (no process groups here).
func groupAlive(cmd *exec.Cmd) bool {
	return cmd.ProcessState == nil
}
