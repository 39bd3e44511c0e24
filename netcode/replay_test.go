package netcode

import "testing"

func TestReplayProtection(t *testing.T) {
	t.Parallel()
	type step struct {
		seq     uint64
		replay  bool // want alreadyReceived
		receive bool // advance after the check
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"fresh window accepts 0", []step{{0, false, true}, {0, true, false}}},
		{"duplicates rejected", []step{{5, false, true}, {5, true, false}, {6, false, true}, {5, true, false}}},
		{"out of order inside the window", []step{{10, false, true}, {3, false, true}, {3, true, false}, {9, false, true}}},
		{"older than the window", []step{{300, false, true}, {44, true, false}, {45, false, true}, {299, false, true}}},
		{"slot reused by a newer sequence", []step{{1, false, true}, {257, false, true}, {1, true, false}, {513, false, true}, {257, true, false}}},
		{"max uint64 never accepted", []step{{^uint64(0), true, false}}},
		{"checking does not record", []step{{7, false, false}, {7, false, true}, {7, true, false}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var r replayProtection
			r.reset()
			for i, s := range tc.steps {
				if got := r.alreadyReceived(s.seq); got != s.replay {
					t.Fatalf("step %d: alreadyReceived(%d) = %v, want %v", i, s.seq, got, s.replay)
				}
				if s.receive {
					r.advance(s.seq)
				}
			}
		})
	}
}

func TestReplayProtectionLongRun(t *testing.T) {
	t.Parallel()
	var r replayProtection
	r.reset()
	for i := uint64(0); i < 2*replayWindow; i++ {
		if r.alreadyReceived(i) {
			t.Fatalf("fresh sequence %d rejected", i)
		}
		r.advance(i)
	}
	for i := uint64(0); i < 2*replayWindow; i++ {
		if !r.alreadyReceived(i) {
			t.Fatalf("sequence %d accepted twice", i)
		}
	}
	if r.alreadyReceived(2*replayWindow + 1) {
		t.Fatal("future sequence rejected")
	}
}
