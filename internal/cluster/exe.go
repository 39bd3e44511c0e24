package cluster

import "runtime"

// exeName adds ".exe" on Windows.
func exeName(name string) string {
	if runtime.GOOS == "windows" {
		return name + ".exe"
	}
	return name
}
