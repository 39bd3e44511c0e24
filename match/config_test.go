package match_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/match"
	"github.com/bevygap-go/bevygap/protocol"
)

func TestLoadConfig(t *testing.T) {
	t.Parallel()
	c, err := match.LoadConfig("testdata/queues.json")
	if err != nil {
		t.Fatal(err)
	}
	ranked, err := c.Queue("ranked")
	if err != nil {
		t.Fatal(err)
	}
	want := match.Queue{Name: "ranked", Min: 4, Max: 8, Multiple: 2, Kind: match.KindMatch,
		Window:     &match.Window{Prop: "skill", Initial: 100, WidenPerSec: 20, Max: 800, Lo: 0, Hi: 5000},
		Equal:      []string{"mode", "map"},
		RelaxAfter: time.Minute, RelaxedMin: 2, WaitLimit: 3 * time.Minute, Backfill: true}
	if !reflect.DeepEqual(ranked, want) {
		t.Errorf("ranked = %+v\nwant     %+v", ranked, want)
	}
	room, _ := c.Queue("room")
	if room.Multiple != 1 || room.Kind != match.KindSeat || room.RelaxAfter != 10*time.Second {
		t.Errorf("room = %+v", room)
	}
	if _, err := c.Queue("nope"); !errors.Is(err, match.ErrUnknownQueue) {
		t.Errorf("unknown queue: %v", err)
	}
	if _, err := match.LoadConfig(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Error("missing file: no error")
	}
}

// TestConfigRoundTrip: a config encodes to the file form and decodes to the same queues.
func TestConfigRoundTrip(t *testing.T) {
	t.Parallel()
	c, err := match.LoadConfig("testdata/queues.json")
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"relax_after":"1m0s"`) {
		t.Errorf("durations not strings: %s", data)
	}
	back, err := match.ParseConfig(data)
	if err != nil || !reflect.DeepEqual(back, c) {
		t.Errorf("round trip: %v\n%+v\n%+v", err, back, c)
	}
}

func TestDefault(t *testing.T) {
	t.Parallel()
	c := match.Default()
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	duo, _ := c.Queue("duo")
	room, _ := c.Queue("room")
	if duo.Min != 2 || duo.Max != 2 || duo.Kind != match.KindMatch {
		t.Errorf("duo = %+v", duo)
	}
	if room.Min != 2 || room.Max != 4 || room.MinAt(10*time.Second) != 1 || room.MinAt(9*time.Second) != 2 || room.Kind != match.KindSeat {
		t.Errorf("room = %+v", room)
	}
}

func TestParseConfigErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, json string
		want       string // substring of the error
	}{
		{"not json", `{`, "invalid queue config"},
		{"no queues", `{}`, `no "queues"`},
		{"unknown top field", `{"queues":[],"x":1}`, `unknown field "x"`},
		{"unknown queue field", `{"queues":[{"name":"a","min":1,"max":2,"mn":1}]}`, `queues[0] ("a"): json: unknown field "mn"`},
		{"unknown window field", `{"queues":[{"name":"a","min":1,"max":2,"window":{"prop":"s","lo":0,"hi":1,"width":3}}]}`, `unknown field "width"`},
		{"duration as number", `{"queues":[{"name":"a","min":1,"max":2,"wait_limit":10}]}`, `a duration is a string such as "10s"`},
		{"bad duration", `{"queues":[{"name":"a","min":1,"max":2,"wait_limit":"soon"}]}`, `queues[0] ("a")`},
		{"bad name", `{"queues":[{"name":"a b","min":1,"max":2}]}`, `queue "a b": name:`},
		{"min 0", `{"queues":[{"name":"a","min":0,"max":2}]}`, `queue "a": min: must be at least 1`},
		{"max below min", `{"queues":[{"name":"a","min":3,"max":2}]}`, `queue "a": max:`},
		{"max too large", `{"queues":[{"name":"a","min":3,"max":1001}]}`, `queue "a": max:`},
		{"multiple impossible", `{"queues":[{"name":"a","min":3,"max":3,"multiple":2}]}`, `queue "a": multiple: no multiple of 2`},
		{"negative multiple", `{"queues":[{"name":"a","min":1,"max":3,"multiple":-1}]}`, `queue "a": multiple:`},
		{"kind", `{"queues":[{"name":"a","min":1,"max":3,"kind":"Match"}]}`, `queue "a": kind: must be "seat" or "match"`},
		{"window prop", `{"queues":[{"name":"a","min":1,"max":3,"window":{"prop":"","lo":0,"hi":1}}]}`, `queue "a": window.prop`},
		{"window initial", `{"queues":[{"name":"a","min":1,"max":3,"window":{"prop":"s","initial":-1,"lo":0,"hi":1}}]}`, `window.initial`},
		{"window widen", `{"queues":[{"name":"a","min":1,"max":3,"window":{"prop":"s","widen_per_sec":-1,"lo":0,"hi":1}}]}`, `window.widen_per_sec`},
		{"window max", `{"queues":[{"name":"a","min":1,"max":3,"window":{"prop":"s","initial":5,"max":4,"lo":0,"hi":1}}]}`, `window.max`},
		{"window range", `{"queues":[{"name":"a","min":1,"max":3,"window":{"prop":"s","lo":1,"hi":1}}]}`, `window.lo: the allowed range`},
		{"equal bad name", `{"queues":[{"name":"a","min":1,"max":3,"equal":["a.b"]}]}`, `queue "a": equal: property name "a.b"`},
		{"equal twice", `{"queues":[{"name":"a","min":1,"max":3,"equal":["m","m"]}]}`, `queue "a": equal: property "m" is listed twice`},
		{"equal is the window", `{"queues":[{"name":"a","min":1,"max":3,"equal":["s"],"window":{"prop":"s","lo":0,"hi":1}}]}`, `queue "a": equal:`},
		{"relaxed without relax", `{"queues":[{"name":"a","min":2,"max":3,"relaxed_min":1}]}`, `queue "a": relaxed_min: needs relax_after`},
		{"relaxed not below min", `{"queues":[{"name":"a","min":2,"max":3,"relax_after":"5s","relaxed_min":2}]}`, `queue "a": relaxed_min: must be between 1 and min-1`},
		{"relax negative", `{"queues":[{"name":"a","min":2,"max":3,"relax_after":"-5s","relaxed_min":1}]}`, `queue "a": relax_after`},
		{"wait before relax", `{"queues":[{"name":"a","min":2,"max":3,"relax_after":"5s","relaxed_min":1,"wait_limit":"5s"}]}`, `queue "a": wait_limit: must be longer than relax_after`},
		{"wait negative", `{"queues":[{"name":"a","min":2,"max":3,"wait_limit":"-1s"}]}`, `queue "a": wait_limit`},
		{"duplicate", `{"queues":[{"name":"a","min":1,"max":3},{"name":"a","min":1,"max":2}]}`, `queue "a": name: defined twice`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, err := match.ParseConfig([]byte(c.json))
			if !errors.Is(err, match.ErrInvalidConfig) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %v, want ErrInvalidConfig containing %q", err, c.want)
			}
		})
	}
}

func TestLoadConfigNamesFile(t *testing.T) {
	t.Parallel()
	p := filepath.Join(t.TempDir(), "q.json")
	if err := os.WriteFile(p, []byte(`{"queues":[{"name":"a","min":0,"max":1}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := match.LoadConfig(p)
	if !errors.Is(err, match.ErrInvalidConfig) || !strings.HasPrefix(err.Error(), p+": ") {
		t.Errorf("err = %v", err)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	q := match.Queue{Name: "ranked", Min: 2, Max: 4, Equal: []string{"mode"},
		Window: &match.Window{Prop: "skill", Initial: 10, Lo: 0, Hi: 5000}}
	ok := protocol.Props{"skill": protocol.Num(1200), "mode": protocol.Str("ctf")}
	with := func(k string, v protocol.PropValue) protocol.Props {
		p := protocol.Props{"skill": ok["skill"], "mode": ok["mode"]}
		p[k] = v
		return p
	}
	cases := []struct {
		name    string
		props   protocol.Props
		players int
		want    error
		msg     string
	}{
		{"ok", ok, 1, nil, ""},
		{"party of max", ok, 4, nil, ""},
		{"party too large", ok, 5, match.ErrPartyTooLarge, "queue ranked takes at most 4 players in a match, the party has 5"},
		{"no players", ok, 0, match.ErrInvalidTicket, "at least one player"},
		{"missing skill", protocol.Props{"mode": protocol.Str("ctf")}, 1, match.ErrMissingProp, "queue ranked needs property skill (a number from 0 to 5000)"},
		{"missing mode", protocol.Props{"skill": protocol.Num(1)}, 1, match.ErrMissingProp, "needs property mode (a string)"},
		{"skill above", with("skill", protocol.Num(5001)), 1, match.ErrOutOfRange, "property skill=5001 is outside the allowed range 0 to 5000 of queue ranked"},
		{"skill below", with("skill", protocol.Num(-1)), 1, match.ErrOutOfRange, "skill=-1"},
		{"skill string", with("skill", protocol.Str("high")), 1, match.ErrInvalidTicket, "property skill must be a number"},
		{"mode number", with("mode", protocol.Num(3)), 1, match.ErrInvalidTicket, "property mode must be a string"},
		{"unknown", with("zeta", protocol.Num(3)), 1, match.ErrInvalidTicket, "queue ranked has no property zeta"},
		{"invalid props", with("bad name", protocol.Num(3)), 1, protocol.ErrInvalidProps, "property name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			err := q.Check(c.props, c.players)
			if c.want == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				return
			}
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Check = %v, want %v containing %q", err, c.want, c.msg)
			}
		})
	}
}

func TestCheckBackfill(t *testing.T) {
	t.Parallel()
	q := match.Queue{Name: "room", Min: 2, Max: 4, Equal: []string{"mode"}, Backfill: true}
	cases := []struct {
		name  string
		q     match.Queue
		props protocol.Props
		slots int
		want  error
	}{
		{"ok without props", q, nil, 2, nil},
		{"ok with props", q, protocol.Props{"mode": protocol.Str("ctf")}, 4, nil},
		{"zero slots", q, nil, 0, match.ErrInvalidTicket},
		{"too many slots", q, nil, 5, match.ErrInvalidTicket},
		{"wrong type", q, protocol.Props{"mode": protocol.Num(1)}, 1, match.ErrInvalidTicket},
		{"unknown prop", q, protocol.Props{"map": protocol.Str("x")}, 1, match.ErrInvalidTicket},
		{"backfill off", match.Queue{Name: "duo", Min: 2, Max: 2}, nil, 1, match.ErrBackfillOff},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			if err := c.q.CheckBackfill(c.props, c.slots); !errors.Is(err, c.want) && !(c.want == nil && err == nil) {
				t.Errorf("CheckBackfill = %v, want %v", err, c.want)
			}
		})
	}
}

func TestWindowWidth(t *testing.T) {
	t.Parallel()
	w := match.Window{Prop: "skill", Initial: 100, WidenPerSec: 20, Max: 300, Lo: 0, Hi: 1}
	for _, c := range []struct {
		waited time.Duration
		want   float64
	}{{0, 100}, {-time.Second, 100}, {5 * time.Second, 200}, {10 * time.Second, 300}, {time.Hour, 300}} {
		if got := w.Width(c.waited); got != c.want {
			t.Errorf("Width(%s) = %g, want %g", c.waited, got, c.want)
		}
	}
	if got := (match.Window{Initial: 50, WidenPerSec: 10}).Width(time.Hour); got != 50 {
		t.Errorf("max 0 means no widening: %g", got)
	}
}

func TestPlayError(t *testing.T) {
	t.Parallel()
	q := match.Default().Queues[0]
	_, unknown := match.Default().Queue("solo")
	cases := []struct {
		err  error
		code uint16
	}{
		{unknown, 404},
		{q.ExpiredError(), 408},
		{q.Check(nil, 3), 400},
		{q.CheckBackfill(nil, 1), 400},
		{protocol.Props{"a b": protocol.Num(1)}.Validate(), 400},
		{errors.New("nats: timeout"), 500},
	}
	for _, c := range cases {
		pe := match.PlayError(c.err)
		if pe == nil || pe.Code != c.code {
			t.Errorf("PlayError(%v) = %+v, want code %d", c.err, pe, c.code)
		}
	}
	if pe := match.PlayError(errors.New("secret detail")); strings.Contains(pe.Message, "secret") {
		t.Errorf("internal error leaks: %q", pe.Message)
	}
	if match.PlayError(nil) != nil {
		t.Error("PlayError(nil) != nil")
	}
	if got := q.ExpiredError().Error(); got != "no match found: queue duo found no match within 2m0s" {
		t.Errorf("ExpiredError = %q", got)
	}
}
