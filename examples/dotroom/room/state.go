package room

import (
	"slices"
	"sync"
)

// Default room size.
const (
	DefaultWidth  = 64
	DefaultHeight = 32
)

// State is the shared room of one game server: one dot per connected player. It knows nothing
// about the network, so it is easy to test and to reuse. It is safe for concurrent use (the
// netcode server reports joins and leaves on its own goroutine, the game loop moves dots).
type State struct {
	mu            sync.Mutex
	width, height int16
	tick          uint32
	dots          map[uint64]Dot
}

// NewState returns an empty room of width × height cells (values < 1 take the defaults).
func NewState(width, height int) *State {
	if width < 1 || width > 1<<15-1 {
		width = DefaultWidth
	}
	if height < 1 || height > 1<<15-1 {
		height = DefaultHeight
	}
	return &State{width: int16(width), height: int16(height), dots: make(map[uint64]Dot)}
}

// Size returns the room's width and height.
func (s *State) Size() (width, height int) { return int(s.width), int(s.height) }

// Join places a new player's dot, at a spot derived from its id, and returns it. Joining twice
// keeps the existing dot.
func (s *State) Join(id uint64) Dot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d, ok := s.dots[id]; ok {
		return d
	}
	d := Dot{ID: id, X: int16(id % uint64(s.width)), Y: int16((id / uint64(s.width)) % uint64(s.height))}
	s.dots[id] = d
	return d
}

// Leave removes a player's dot. Leaving twice is harmless.
func (s *State) Leave(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.dots, id)
}

// Move moves a player's dot by (dx, dy), each clamped to ±MaxStep, keeping it inside the room.
// It reports false for a player that is not in the room.
func (s *State) Move(id uint64, dx, dy int) (Dot, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.dots[id]
	if !ok {
		return Dot{}, false
	}
	d.X = int16(clamp(int(d.X)+clamp(dx, -MaxStep, MaxStep), 0, int(s.width)-1))
	d.Y = int16(clamp(int(d.Y)+clamp(dy, -MaxStep, MaxStep), 0, int(s.height)-1))
	s.dots[id] = d
	return d, true
}

// Len returns the number of players in the room.
func (s *State) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.dots)
}

// Tick advances the room by one tick and returns the snapshot to broadcast: every dot,
// sorted by id.
func (s *State) Tick() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tick++
	r := Snapshot{Tick: s.tick, Dots: make([]Dot, 0, len(s.dots))}
	for _, d := range s.dots {
		r.Dots = append(r.Dots, d)
	}
	slices.SortFunc(r.Dots, func(a, b Dot) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return r
}

func clamp(v, lo, hi int) int { return max(lo, min(v, hi)) }
