//go:build !race

package protocol

// raceEnabled: the race detector changes allocation counts.
const raceEnabled = false
