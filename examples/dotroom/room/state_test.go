package room

import (
	"slices"
	"testing"
)

func TestStateMove(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		start    Dot // the id places the dot: x = id % 64, y = id / 64 % 32
		dx, dy   int
		wantX    int16
		wantY    int16
		inRoomOK bool
	}{
		{"right", Dot{ID: 0}, 1, 0, 1, 0, true},
		{"down_left_clamped_at_wall", Dot{ID: 0}, -1, 1, 0, 1, true},
		{"big_step_clamped", Dot{ID: 10}, 100, -100, 10 + MaxStep, 0, true},
		{"right_wall", Dot{ID: 63}, 3, 0, 63, 0, true},
		{"bottom_wall", Dot{ID: 31 * 64}, 0, 2, 0, 31, true},
		{"huge_values_do_not_overflow", Dot{ID: 5}, 1 << 40, -(1 << 40), 5 + MaxStep, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := NewState(64, 32)
			s.Join(tt.start.ID)
			d, ok := s.Move(tt.start.ID, tt.dx, tt.dy)
			if ok != tt.inRoomOK || d.X != tt.wantX || d.Y != tt.wantY {
				t.Fatalf("Move = %+v, %v; want (%d,%d), %v", d, ok, tt.wantX, tt.wantY, tt.inRoomOK)
			}
		})
	}
	if _, ok := NewState(0, 0).Move(1, 1, 1); ok {
		t.Fatal("moved a player who is not in the room")
	}
}

func TestStateJoinLeaveTick(t *testing.T) {
	t.Parallel()
	s := NewState(0, 0)
	if w, h := s.Size(); w != DefaultWidth || h != DefaultHeight {
		t.Fatalf("Size = %d×%d, want defaults", w, h)
	}
	for _, id := range []uint64{30, 10, 20} {
		s.Join(id)
	}
	s.Move(10, 1, 0)
	if d := s.Join(10); d.X != 11 {
		t.Fatalf("joining twice reset the dot to %+v", d)
	}
	s.Leave(20)
	s.Leave(20)
	r := s.Tick()
	ids := []uint64{}
	for _, d := range r.Dots {
		ids = append(ids, d.ID)
	}
	if r.Tick != 1 || !slices.Equal(ids, []uint64{10, 30}) {
		t.Fatalf("Tick = %d %v, want 1 [10 30] (sorted by id)", r.Tick, ids)
	}
	if r2 := s.Tick(); r2.Tick != 2 || s.Len() != 2 {
		t.Fatalf("second Tick = %d, Len = %d", r2.Tick, s.Len())
	}
}
