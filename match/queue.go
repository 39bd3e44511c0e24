package match

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/bevygap-go/bevygap/internal/names"
	"github.com/bevygap-go/bevygap/protocol"
)

// MaxPlayers is the largest match size a queue may have.
const MaxPlayers = 1000

// propNameExtra are the bytes a property name may hold besides ASCII letters and digits (the
// rule of [protocol.Props]).
const propNameExtra = "_-"

// Kind says how the matchmaker puts a match on a game server.
type Kind string

const (
	// KindSeat (the default) works with every game server, the Rust plugin included: one
	// Edgegap session per player on one deployment, so each player's session id stays the key
	// of its own active_connections entry.
	KindSeat Kind = "seat"
	// KindMatch is one Edgegap session carrying every player of the match (a fresh deployment
	// where the app version is of Edgegap's Match kind). The game server must keep the
	// session's active_connections entry until the LAST player of the session leaves, as the Go
	// gameserver SDK does; the Rust plugin deletes it on each disconnect.
	KindMatch Kind = "match"
)

// Window is a numeric property (e.g. "skill") whose accepted spread widens while tickets wait.
// A match's values all lie within the value of its oldest ticket ± [Window.Width] of that
// ticket's wait.
type Window struct {
	// Prop is the property's name; every player ticket of the queue must carry it as a number.
	Prop string `json:"prop"`
	// Initial is the half-width of the window at 0 s of waiting.
	Initial float64 `json:"initial"`
	// WidenPerSec is added to the half-width for every second waited.
	WidenPerSec float64 `json:"widen_per_sec,omitempty"`
	// Max caps the half-width (0: Initial, no widening).
	Max float64 `json:"max,omitempty"`
	// Lo and Hi bound the values a ticket may carry (Lo < Hi); a value outside is
	// [ErrOutOfRange].
	Lo float64 `json:"lo"`
	Hi float64 `json:"hi"`
}

// Width returns the half-width of the window after waiting waited.
func (w Window) Width(waited time.Duration) float64 {
	max := w.Max
	if max < w.Initial {
		max = w.Initial
	}
	if waited <= 0 {
		return w.Initial
	}
	return math.Min(w.Initial+w.WidenPerSec*waited.Seconds(), max)
}

// Queue is one match queue. Use it as decoded by [ParseConfig] or after [Queue.Validate].
type Queue struct {
	// Name is the queue's name in requests: 1–30 ASCII letters, digits, '_' or '-'.
	Name string
	// Min and Max bound the number of players in a match (1 ≤ Min ≤ Max ≤ [MaxPlayers]).
	Min, Max int
	// Multiple, if above 1, makes the number of players a multiple of it (e.g. 2 for two
	// teams of equal size). 0 means 1.
	Multiple int
	// Kind is how the match is put on a game server ("" means [KindSeat]).
	Kind Kind
	// Window, if set, is a numeric property that must be close among a match's tickets.
	Window *Window
	// Equal are string properties that must be equal among a match's tickets (e.g. "mode",
	// "map"); every player ticket must carry them.
	Equal []string
	// RelaxAfter, if set, lowers the minimum to RelaxedMin for a match whose oldest ticket has
	// waited at least this long.
	RelaxAfter time.Duration
	// RelaxedMin is the minimum after RelaxAfter (1 ≤ RelaxedMin < Min).
	RelaxedMin int
	// WaitLimit, if set, ends a ticket that found no match within it ([ErrExpired]).
	WaitLimit time.Duration
	// Backfill says whether game servers may ask this queue for players ([Ticket.Backfill]).
	Backfill bool
}

// queueJSON is the file form of a Queue.
type queueJSON struct {
	Name       string   `json:"name"`
	Min        int      `json:"min"`
	Max        int      `json:"max"`
	Multiple   int      `json:"multiple,omitempty"`
	Kind       Kind     `json:"kind,omitempty"`
	Window     *Window  `json:"window,omitempty"`
	Equal      []string `json:"equal,omitempty"`
	RelaxAfter duration `json:"relax_after,omitempty"`
	RelaxedMin int      `json:"relaxed_min,omitempty"`
	WaitLimit  duration `json:"wait_limit,omitempty"`
	Backfill   bool     `json:"backfill,omitempty"`
}

// MarshalJSON encodes q in the file form (durations as strings such as "10s").
func (q Queue) MarshalJSON() ([]byte, error) {
	return json.Marshal(queueJSON{Name: q.Name, Min: q.Min, Max: q.Max, Multiple: q.Multiple, Kind: q.Kind,
		Window: q.Window, Equal: q.Equal, RelaxAfter: duration(q.RelaxAfter), RelaxedMin: q.RelaxedMin,
		WaitLimit: duration(q.WaitLimit), Backfill: q.Backfill})
}

// UnmarshalJSON decodes the file form; unknown fields are an error. It does not validate.
func (q *Queue) UnmarshalJSON(b []byte) error {
	var j queueJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	*q = Queue{Name: j.Name, Min: j.Min, Max: j.Max, Multiple: j.Multiple, Kind: j.Kind, Window: j.Window,
		Equal: j.Equal, RelaxAfter: time.Duration(j.RelaxAfter), RelaxedMin: j.RelaxedMin,
		WaitLimit: time.Duration(j.WaitLimit), Backfill: j.Backfill}
	return nil
}

// duration is a time.Duration written as a Go duration string ("10s", "2m").
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string such as \"10s\" or \"2m\", not %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = duration(v)
	return nil
}

// configErr is an ErrInvalidConfig naming the queue and the field (as in the file).
func (q Queue) configErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: queue %q: %s: %s", ErrInvalidConfig, q.Name, field, fmt.Sprintf(format, args...))
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// Validate checks q; the error wraps [ErrInvalidConfig] and names the queue and the field.
func (q Queue) Validate() error {
	if !protocol.ValidQueueName(q.Name) {
		return q.configErr("name", "use 1-%d ASCII letters, digits, '_' or '-'", protocol.MaxQueueNameLen)
	}
	if q.Min < 1 {
		return q.configErr("min", "must be at least 1, not %d", q.Min)
	}
	if q.Max < q.Min || q.Max > MaxPlayers {
		return q.configErr("max", "must be between min (%d) and %d, not %d", q.Min, MaxPlayers, q.Max)
	}
	if q.Multiple < 0 || q.Multiple > q.Max {
		return q.configErr("multiple", "must be between 0 and max (%d), not %d", q.Max, q.Multiple)
	}
	mult := max(q.Multiple, 1)
	if (q.Max/mult)*mult < q.Min {
		return q.configErr("multiple", "no multiple of %d lies between min %d and max %d", mult, q.Min, q.Max)
	}
	switch q.Kind {
	case "", KindSeat, KindMatch:
	default:
		return q.configErr("kind", "must be %q or %q, not %q", KindSeat, KindMatch, q.Kind)
	}
	seen := map[string]bool{}
	if w := q.Window; w != nil {
		switch {
		case !names.Valid(w.Prop, protocol.MaxNameLen, propNameExtra):
			return q.configErr("window.prop", "use 1-%d ASCII letters, digits, '_' or '-'", protocol.MaxNameLen)
		case !finite(w.Initial) || w.Initial < 0:
			return q.configErr("window.initial", "must be a number ≥ 0")
		case !finite(w.WidenPerSec) || w.WidenPerSec < 0:
			return q.configErr("window.widen_per_sec", "must be a number ≥ 0")
		case !finite(w.Max) || (w.Max != 0 && w.Max < w.Initial):
			return q.configErr("window.max", "must be 0 (no widening) or at least initial (%g)", w.Initial)
		case !finite(w.Lo) || !finite(w.Hi) || w.Lo >= w.Hi:
			return q.configErr("window.lo", "the allowed range lo..hi must have lo < hi (%g..%g)", w.Lo, w.Hi)
		}
		seen[w.Prop] = true
	}
	if len(q.Equal)+len(seen) > protocol.MaxProps {
		return q.configErr("equal", "at most %d properties in all", protocol.MaxProps)
	}
	for _, p := range q.Equal {
		if !names.Valid(p, protocol.MaxNameLen, propNameExtra) {
			return q.configErr("equal", "property name %q: use 1-%d ASCII letters, digits, '_' or '-'", p, protocol.MaxNameLen)
		}
		if seen[p] {
			return q.configErr("equal", "property %q is listed twice (or is the window's)", p)
		}
		seen[p] = true
	}
	switch {
	case q.RelaxAfter < 0:
		return q.configErr("relax_after", "must not be negative")
	case q.RelaxAfter == 0 && q.RelaxedMin != 0:
		return q.configErr("relaxed_min", "needs relax_after")
	case q.RelaxAfter > 0 && (q.RelaxedMin < 1 || q.RelaxedMin >= q.Min):
		return q.configErr("relaxed_min", "must be between 1 and min-1 (%d), not %d", q.Min-1, q.RelaxedMin)
	case q.WaitLimit < 0:
		return q.configErr("wait_limit", "must not be negative")
	case q.WaitLimit > 0 && q.RelaxAfter > 0 && q.WaitLimit <= q.RelaxAfter:
		return q.configErr("wait_limit", "must be longer than relax_after (%s), or the minimum never relaxes", q.RelaxAfter)
	}
	return nil
}

// normalized returns q with its defaults spelled out: Multiple ≥ 1, Kind set, Window.Max ≥
// Initial, no empty Equal list.
func (q Queue) normalized() Queue {
	q.Multiple = max(q.Multiple, 1)
	if len(q.Equal) == 0 {
		q.Equal = nil
	}
	if q.Kind == "" {
		q.Kind = KindSeat
	}
	if q.Window != nil && q.Window.Max < q.Window.Initial {
		w := *q.Window
		w.Max = w.Initial
		q.Window = &w
	}
	return q
}

// MinAt returns the minimum number of players of a match whose oldest ticket has waited
// waited: Min, or RelaxedMin from RelaxAfter on.
func (q Queue) MinAt(waited time.Duration) int {
	if q.RelaxAfter > 0 && waited >= q.RelaxAfter {
		return q.RelaxedMin
	}
	return q.Min
}

// ExpiredError is the error of a ticket that waited longer than q.WaitLimit (wraps
// [ErrExpired]).
func (q Queue) ExpiredError() error {
	return fmt.Errorf("%w: queue %s found no match within %s", ErrExpired, q.Name, q.WaitLimit)
}

// Check checks a player ticket (one player, or a party of players) for q: props must be valid
// [protocol.Props], carry the window property (a number within lo..hi) and every Equal
// property (strings), and nothing else; players must be 1..Max.
func (q Queue) Check(props protocol.Props, players int) error {
	if players < 1 {
		return fmt.Errorf("%w: a ticket has at least one player", ErrInvalidTicket)
	}
	if players > q.Max {
		return fmt.Errorf("%w: queue %s takes at most %d players in a match, the party has %d", ErrPartyTooLarge, q.Name, q.Max, players)
	}
	if err := props.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTicket, err)
	}
	return q.checkProps(props, true)
}

// CheckBackfill checks a backfill ticket for q: the queue must take backfill, slots must be
// 1..Max, and the properties it carries (all optional) must fit as in [Queue.Check].
func (q Queue) CheckBackfill(props protocol.Props, slots int) error {
	if !q.Backfill {
		return fmt.Errorf("%w: queue %s does not take backfill requests", ErrBackfillOff, q.Name)
	}
	if slots < 1 || slots > q.Max {
		return fmt.Errorf("%w: backfill slots must be between 1 and %d (queue %s), not %d", ErrInvalidTicket, q.Max, q.Name, slots)
	}
	if err := props.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidTicket, err)
	}
	return q.checkProps(props, false)
}

// checkProps checks props against q's properties without re-validating them as Props (Form's
// fast path). required says whether the window and Equal properties must be present.
func (q Queue) checkProps(props protocol.Props, required bool) error {
	known := 0
	if w := q.Window; w != nil {
		v, ok := props[w.Prop]
		switch {
		case !ok && required:
			return fmt.Errorf("%w: queue %s needs property %s (a number from %g to %g)", ErrMissingProp, q.Name, w.Prop, w.Lo, w.Hi)
		case !ok:
		case !v.IsNum || !finite(v.Num):
			return fmt.Errorf("%w: property %s must be a number (queue %s)", ErrInvalidTicket, w.Prop, q.Name)
		case v.Num < w.Lo || v.Num > w.Hi:
			return fmt.Errorf("%w: property %s=%g is outside the allowed range %g to %g of queue %s", ErrOutOfRange, w.Prop, v.Num, w.Lo, w.Hi, q.Name)
		}
		if ok {
			known++
		}
	}
	for _, p := range q.Equal {
		v, ok := props[p]
		switch {
		case !ok && required:
			return fmt.Errorf("%w: queue %s needs property %s (a string)", ErrMissingProp, q.Name, p)
		case !ok:
			continue
		case v.IsNum:
			return fmt.Errorf("%w: property %s must be a string (queue %s)", ErrInvalidTicket, p, q.Name)
		}
		known++
	}
	if known == len(props) {
		return nil
	}
	var unknown []string
	for k := range props {
		if !q.hasProp(k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	return fmt.Errorf("%w: queue %s has no property %s", ErrInvalidTicket, q.Name, unknown[0])
}

func (q Queue) hasProp(k string) bool {
	if q.Window != nil && q.Window.Prop == k {
		return true
	}
	for _, p := range q.Equal {
		if p == k {
			return true
		}
	}
	return false
}
