package match

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/protocol"
)

// Ticket is one entry of a queue: a player, a party (one ticket for all its players), or a
// game server's backfill request.
type Ticket struct {
	// ID identifies the ticket; it must be unique among the tickets given to [Form].
	ID string
	// Players is the number of players: 1 for a player alone, the party's size for a party.
	// A backfill ticket has none (ignored).
	Players int
	// Props are the ticket's properties (see [Queue.Check]).
	Props protocol.Props
	// Created is when the ticket entered the queue; its wait is Form's now minus Created.
	Created time.Time
	// Backfill, if above 0, makes this a backfill ticket: a game server asking for up to this
	// many players for its deployment.
	Backfill int
}

// Match is a group of tickets [Form] put together.
type Match struct {
	// Tickets are the player tickets of the match, oldest first.
	Tickets []Ticket
	// Players is the number of players of the match (the sum of the tickets' Players).
	Players int
	// Backfill, if not nil, is the backfill ticket these players fill: they go to its
	// deployment rather than to a new game server.
	Backfill *Ticket
}

// Invalid is a ticket [Form] cannot place, with the reason.
type Invalid struct {
	Ticket Ticket
	Err    error
}

// Result is the outcome of one [Form] call.
type Result struct {
	// Matches formed: backfill matches first (their backfill tickets oldest first), then the
	// others in the order of their oldest ticket.
	Matches []Match
	// Expired are the tickets (player and backfill) left without a match that have waited at
	// least the queue's WaitLimit, oldest first; end them with [Queue.ExpiredError].
	Expired []Ticket
	// Invalid are the tickets that do not fit the queue (e.g. after a config change) and
	// second and later tickets of a duplicated ID, oldest first; end them with their error.
	Invalid []Invalid
}

// entry is Form's working record of a valid ticket.
type entry struct {
	t       *Ticket
	age     time.Duration
	val     float64 // window property value, if hasVal
	hasVal  bool
	players int
	taken   bool
	bucket  int32 // player tickets: bucket index; backfill: -1
	pos     int32 // position in the bucket's byAge
}

// bucket holds the player tickets that agree on every Equal property.
type bucket struct {
	byAge []int32 // entry indices, oldest first
	byVal []int32 // the same, by window value (then age); nil without a window
	next  []int32 // skip pointers over byAge: next[p] is p if byAge[p] is free, else a later position
}

// free returns the first position ≥ p whose entry is not taken (len(byAge) if none).
func (b *bucket) free(p int32) int32 {
	root := p
	for int(root) < len(b.byAge) && b.next[root] != root {
		root = b.next[root]
	}
	for p != root {
		n := b.next[p]
		b.next[p] = root
		p = n
	}
	return root
}

// former is the state of one Form call.
type former struct {
	q       Queue
	entries []entry
	buckets []bucket
	players []int32 // player entries, oldest first
	// knapsack over match totals: via[t] is the candidate (index in cands) that reached total t,
	// viaStart for the starting total, viaNone if t is not reachable.
	via   []int32
	cands []int32
	hi    int
	tmp   []int32
	// picked is take's result buffer (valid until the next take)
	picked []int32
	out    []Ticket // backing array of the matches' Tickets
	// offer's state for the current anchor
	stall, limit, target, base int
}

// offer offers candidate ci to the current anchor's knapsack; false means stop looking.
func (f *former) offer(ci int32) bool {
	if f.add(ci, f.base) {
		f.stall = 0
		return f.via[f.target] == viaNone
	}
	f.stall++
	return f.stall <= f.limit
}

const (
	viaNone  = -1
	viaStart = -2
)

// stallLimit bounds how many fitting-but-useless candidates an anchor looks at before it
// settles with what it has (keeps Form near-linear when party sizes do not add up).
func stallLimit(capacity int) int { return 64 + 4*capacity }

// Form finds matches among the waiting tickets of queue q at time now. It is deterministic
// and does not modify tickets.
//
// Backfill tickets go first, oldest first: each takes the oldest compatible player tickets
// that fit its slots (at least one player, as many as fit). Then, oldest first, each player
// ticket not yet taken anchors a match: it takes the oldest compatible younger tickets so that
// the match has as many players as possible up to Max, at least MinAt(anchor's wait), and a
// multiple of Multiple; a party is never split. Compatible means: equal values of every Equal
// property, and a window value within the anchor's value ± the window width of the anchor's
// wait (for a backfill ticket: of the older of the two). An anchor that cannot make a match
// stays waiting. Tickets left over that waited WaitLimit or more are expired.
//
// Tickets that do not fit q are returned as Invalid; so is every ticket if q itself is not
// valid ([Queue.Validate]).
func Form(q Queue, tickets []Ticket, now time.Time) Result {
	var res Result
	if err := q.Validate(); err != nil {
		for _, t := range tickets {
			res.Invalid = append(res.Invalid, Invalid{t, err})
		}
		return res
	}
	q = q.normalized()
	f := &former{q: q}
	type sortKey struct {
		ns int64
		id string
		i  int32
	}
	keys := make([]sortKey, len(tickets))
	sorted := true
	for i := range tickets {
		keys[i] = sortKey{tickets[i].Created.UnixNano(), tickets[i].ID, int32(i)}
		if i > 0 && sorted && (keys[i].ns < keys[i-1].ns || keys[i].ns == keys[i-1].ns && keys[i].id < keys[i-1].id) {
			sorted = false
		}
	}
	if !sorted {
		slices.SortFunc(keys, func(a, b sortKey) int {
			if c := cmp.Compare(a.ns, b.ns); c != 0 {
				return c
			}
			if c := strings.Compare(a.id, b.id); c != 0 {
				return c
			}
			return cmp.Compare(a.i, b.i)
		})
	}

	f.entries = make([]entry, 0, len(tickets))
	seen := make(map[string]struct{}, len(tickets))
	keyIdx := map[string]int32{}
	var backfills []int32
	var key strings.Builder
	for _, k := range keys {
		t := &tickets[k.i]
		if _, dup := seen[t.ID]; dup {
			res.Invalid = append(res.Invalid, Invalid{*t, fmt.Errorf("%w: duplicate ticket id %q", ErrInvalidTicket, t.ID)})
			continue
		}
		seen[t.ID] = struct{}{}
		if err := q.checkTicket(t); err != nil {
			res.Invalid = append(res.Invalid, Invalid{*t, err})
			continue
		}
		e := entry{t: t, age: now.Sub(t.Created), players: t.Players, bucket: -1}
		if q.Window != nil {
			if v, ok := t.Props[q.Window.Prop]; ok {
				e.val, e.hasVal = v.Num, true
			}
		}
		idx := int32(len(f.entries))
		if t.Backfill > 0 {
			e.players = 0
			f.entries = append(f.entries, e)
			backfills = append(backfills, idx)
			continue
		}
		k := ""
		switch len(q.Equal) {
		case 0:
		case 1:
			k = t.Props[q.Equal[0]].Str
		default:
			key.Reset()
			for _, p := range q.Equal {
				key.WriteString(t.Props[p].Str)
				key.WriteByte(0)
			}
			k = key.String()
		}
		bi, ok := keyIdx[k]
		if !ok {
			bi = int32(len(f.buckets))
			keyIdx[k] = bi
			f.buckets = append(f.buckets, bucket{})
		}
		b := &f.buckets[bi]
		e.bucket, e.pos = bi, int32(len(b.byAge))
		b.byAge = append(b.byAge, idx)
		f.entries = append(f.entries, e)
		f.players = append(f.players, idx)
	}
	for bi := range f.buckets {
		b := &f.buckets[bi]
		b.next = make([]int32, len(b.byAge))
		for p := range b.next {
			b.next[p] = int32(p)
		}
		if q.Window != nil {
			b.byVal = slices.Clone(b.byAge)
			slices.SortFunc(b.byVal, func(x, y int32) int {
				if c := cmp.Compare(f.entries[x].val, f.entries[y].val); c != 0 {
					return c
				}
				return cmp.Compare(x, y)
			})
		}
	}
	f.via = make([]int32, q.Max+1)
	f.out = make([]Ticket, 0, len(f.entries))

	var filled []Match
	for _, bi := range backfills {
		if m, ok := f.backfill(bi); ok {
			filled = append(filled, m)
		}
	}
	type anchored struct {
		anchor int32
		m      Match
	}
	regular := make([]anchored, 0, len(f.players)/q.Max+1)
	for bi := range f.buckets {
		b := &f.buckets[bi]
		for p := b.free(0); int(p) < len(b.byAge); p = b.free(p + 1) {
			if m, ok := f.anchor(b, p); ok {
				regular = append(regular, anchored{b.byAge[p], m})
			}
		}
	}
	slices.SortFunc(regular, func(x, y anchored) int { return cmp.Compare(x.anchor, y.anchor) })
	if n := len(filled) + len(regular); n > 0 {
		res.Matches = make([]Match, 0, n)
		res.Matches = append(res.Matches, filled...)
		for _, r := range regular {
			res.Matches = append(res.Matches, r.m)
		}
	}
	if q.WaitLimit > 0 {
		for i := range f.entries {
			if e := &f.entries[i]; !e.taken && e.age >= q.WaitLimit {
				res.Expired = append(res.Expired, *e.t)
			}
		}
	}
	return res
}

// checkTicket is Check / CheckBackfill without re-validating the props as Props.
func (q Queue) checkTicket(t *Ticket) error {
	if t.Backfill > 0 {
		if !q.Backfill {
			return fmt.Errorf("%w: queue %s does not take backfill requests", ErrBackfillOff, q.Name)
		}
		if t.Backfill > q.Max {
			return fmt.Errorf("%w: backfill slots must be between 1 and %d (queue %s), not %d", ErrInvalidTicket, q.Max, q.Name, t.Backfill)
		}
		return q.checkProps(t.Props, false)
	}
	if t.Players < 1 {
		return fmt.Errorf("%w: a ticket has at least one player", ErrInvalidTicket)
	}
	if t.Players > q.Max {
		return fmt.Errorf("%w: queue %s takes at most %d players in a match, the party has %d", ErrPartyTooLarge, q.Name, q.Max, t.Players)
	}
	return q.checkProps(t.Props, true)
}

// start begins a knapsack whose totals go up to capacity, starting at total start.
func (f *former) start(capacity, start int) {
	f.via = f.via[:capacity+1]
	for i := range f.via {
		f.via[i] = viaNone
	}
	f.via[start] = viaStart
	f.hi = start
	f.cands = f.cands[:0]
}

// add offers entry e to the knapsack; it reports whether a new total became reachable.
func (f *former) add(e int32, start int) bool {
	p := f.entries[e].players
	top := min(f.hi+p, len(f.via)-1)
	ci := int32(len(f.cands))
	changed := false
	for t := top; t >= start+p; t-- {
		if f.via[t] == viaNone && f.via[t-p] != viaNone {
			f.via[t] = ci
			changed = true
			f.hi = max(f.hi, t)
		}
	}
	if changed {
		f.cands = append(f.cands, e)
	}
	return changed
}

// take marks the tickets that make total t as taken and returns them, oldest first (the
// anchor, if any, is not included).
func (f *former) take(t int) []int32 {
	out := f.picked[:0]
	for f.via[t] != viaStart {
		e := f.cands[f.via[t]]
		out = append(out, e)
		t -= f.entries[e].players
	}
	for _, e := range out {
		f.markTaken(e)
	}
	slices.Sort(out)
	f.picked = out
	return out
}

func (f *former) markTaken(e int32) {
	en := &f.entries[e]
	en.taken = true
	if en.bucket >= 0 {
		f.buckets[en.bucket].next[en.pos] = en.pos + 1
	}
}

func (f *former) match(anchor int32, picked []int32, backfill *Ticket) Match {
	m := Match{Backfill: backfill}
	from := len(f.out)
	if anchor >= 0 {
		f.out = append(f.out, *f.entries[anchor].t)
		m.Players += f.entries[anchor].players
	}
	for _, e := range picked {
		f.out = append(f.out, *f.entries[e].t)
		m.Players += f.entries[e].players
	}
	m.Tickets = f.out[from:len(f.out):len(f.out)]
	return m
}

// backfill fills backfill entry bi with the oldest compatible player tickets.
func (f *former) backfill(bi int32) (Match, bool) {
	b := &f.entries[bi]
	slots := min(b.t.Backfill, f.q.Max)
	f.start(slots, 0)
	stall, limit := 0, stallLimit(slots)
	for _, ci := range f.players {
		c := &f.entries[ci]
		if c.taken || !f.backfillFits(b, c) {
			continue
		}
		if f.add(ci, 0) {
			stall = 0
			if f.via[slots] != viaNone {
				break
			}
		} else if stall++; stall > limit {
			break
		}
	}
	if f.hi == 0 {
		return Match{}, false
	}
	b.taken = true
	return f.match(-1, f.take(f.hi), b.t), true
}

// backfillFits says whether player entry c may fill backfill entry b: equal values of the
// Equal properties b carries, window value within b's ± the width of the older one's wait.
func (f *former) backfillFits(b, c *entry) bool {
	for _, p := range f.q.Equal {
		if v, ok := b.t.Props[p]; ok && c.t.Props[p].Str != v.Str {
			return false
		}
	}
	if b.hasVal && c.hasVal {
		return math.Abs(c.val-b.val) <= f.q.Window.Width(max(b.age, c.age))
	}
	return true
}

// anchor tries to build a match around the free ticket at position p of bucket b.
func (f *former) anchor(b *bucket, p int32) (Match, bool) {
	q := f.q
	ai := b.byAge[p]
	a := &f.entries[ai]
	minPlayers := q.MinAt(a.age)
	target := (q.Max / q.Multiple) * q.Multiple
	f.start(q.Max, a.players)
	if a.players < target {
		f.stall, f.limit, f.target, f.base = 0, stallLimit(q.Max), target, a.players
		offer := f.offer
		if q.Window == nil {
			for c := b.free(p + 1); int(c) < len(b.byAge); c = b.free(c + 1) {
				if !offer(b.byAge[c]) {
					break
				}
			}
		} else {
			w := q.Window.Width(a.age)
			lo := sort.Search(len(b.byVal), func(i int) bool { return f.entries[b.byVal[i]].val >= a.val-w })
			hi := sort.Search(len(b.byVal), func(i int) bool { return f.entries[b.byVal[i]].val > a.val+w })
			if n := hi - lo; n <= 16 || n*n*8 < q.Max*len(b.byAge) {
				// Few tickets in the window: collect them and go through them oldest first.
				f.tmp = f.tmp[:0]
				for _, ci := range b.byVal[lo:hi] {
					if ci > ai && !f.entries[ci].taken {
						f.tmp = append(f.tmp, ci)
					}
				}
				slices.Sort(f.tmp)
				for _, ci := range f.tmp {
					if !offer(ci) {
						break
					}
				}
			} else {
				// Many: walk the bucket oldest first, skipping values outside the window.
				for c := b.free(p + 1); int(c) < len(b.byAge); c = b.free(c + 1) {
					ci := b.byAge[c]
					if math.Abs(f.entries[ci].val-a.val) > w {
						continue
					}
					if !offer(ci) {
						break
					}
				}
			}
		}
	}
	best := -1
	for t := f.hi; t >= minPlayers; t-- {
		if f.via[t] != viaNone && t%q.Multiple == 0 {
			best = t
			break
		}
	}
	if best < 0 {
		return Match{}, false
	}
	picked := f.take(best)
	f.markTaken(ai)
	return f.match(ai, picked, nil), true
}
