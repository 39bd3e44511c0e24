package netcode

// replayWindow is how many recent sequence numbers replay protection remembers (the size the
// standard suggests, and Lightyear's).
const replayWindow = 256

// replayProtection rejects packets whose sequence number was already received, or is older
// than the window (netcode.io 1.02, "Replay Protection"). The zero value is not ready: use
// reset. Not safe for concurrent use.
type replayProtection struct {
	mostRecent uint64
	received   [replayWindow]uint64 // sequence stored at seq % replayWindow; emptySlot when none
}

// emptySlot marks a window entry that holds no sequence. math.MaxUint64 is never accepted as
// a sequence (see alreadyReceived), so it cannot collide.
const emptySlot = ^uint64(0)

// reset forgets every received sequence.
func (r *replayProtection) reset() {
	r.mostRecent = 0
	for i := range r.received {
		r.received[i] = emptySlot
	}
}

// alreadyReceived reports whether a packet with sequence seq must be dropped: it is older
// than the window, or it was received before. Call it before decrypting.
func (r *replayProtection) alreadyReceived(seq uint64) bool {
	if seq == emptySlot {
		return true
	}
	if r.mostRecent >= replayWindow && seq <= r.mostRecent-replayWindow {
		return true
	}
	v := r.received[seq%replayWindow]
	return v != emptySlot && v >= seq
}

// advance records seq as received. Call it after the packet authenticated.
func (r *replayProtection) advance(seq uint64) {
	if seq > r.mostRecent {
		r.mostRecent = seq
	}
	r.received[seq%replayWindow] = seq
}
