package matchmaker

// requestStackPad is the frame growStack takes. A grant's goroutine (an HTTP client call, a
// JetStream publish decoding its acknowledgement with encoding/json) needs more stack than the
// runtime starts a goroutine with, and growing it there, many frames deep, copies and adjusts
// every frame each time the stack doubles (runtime.copystack: 5 % of a grant's CPU in the P1
// profile, docs/bench.md). 8 KiB of frame makes the stack 16 KiB, the largest size the runtime
// still takes from its per-thread cache, and enough for a grant.
const requestStackPad = 8 << 10

// growStack grows the calling goroutine's stack while the goroutine is still shallow, when the
// copy costs a frame or two, so that the calls of a grant run without growing it again. The
// result is meaningless; it only keeps the frame from being optimised away.
//
//go:noinline
func growStack(i int) byte {
	var pad [requestStackPad]byte
	pad[i%len(pad)] = byte(i)
	return pad[(i*7)%len(pad)]
}
