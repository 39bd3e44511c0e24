package protocol

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

const testPartyToken = "dG9rZW4tb2YtdGhlLWxlYWRlci0zMi1ieXRlcy1sb25nISE"

// The play-together extension adds optional fields only: a plain request must encode to the
// reference's bytes (no new keys, even with empty non-nil props), and the extension's
// requests to the documented JSON (play.go's doc comment, docs/play-together.md).
func TestPlayRequestJSONContract(t *testing.T) {
	t.Parallel()
	ip := "1.2.3.4"
	party := &PartyRef{Code: "K7QF2M", Token: testPartyToken}
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"plain ws request", RequestSession{Game: "mygame", Version: "1"}, `{"game":"mygame","version":"1","client_ip":null}`},
		{"plain ws request, empty props", RequestSession{Game: "mygame", Version: "1", Props: Props{}}, `{"game":"mygame","version":"1","client_ip":null}`},
		{"plain matchmaker request", MatchmakerRequest{ClientIP: ip, Game: "mygame", Version: "1", Props: Props{}},
			`{"client_ip":"1.2.3.4","game":"mygame","version":"1"}`},
		{"queue request", RequestSession{Game: "mygame", Version: "1", Queue: "duo", Props: Props{"skill": Num(1200), "mode": Str("ctf")}},
			`{"game":"mygame","version":"1","client_ip":null,"queue":"duo","props":{"mode":"ctf","skill":1200}}`},
		{"party request", RequestSession{Game: "mygame", Version: "1", Party: party},
			`{"game":"mygame","version":"1","client_ip":null,"party":{"code":"K7QF2M","token":"` + testPartyToken + `"}}`},
		{"party in a queue", RequestSession{Game: "mygame", Version: "1", Queue: "duo", Party: party},
			`{"game":"mygame","version":"1","client_ip":null,"queue":"duo","party":{"code":"K7QF2M","token":"` + testPartyToken + `"}}`},
		{"matchmaker queue request", MatchmakerRequest{ClientIP: ip, Game: "mygame", Version: "1", Queue: "room", Props: Props{"skill": Num(1200.5)}},
			`{"client_ip":"1.2.3.4","game":"mygame","version":"1","queue":"room","props":{"skill":1200.5}}`},
		{"matchmaker party request", MatchmakerRequest{ClientIP: ip, Game: "mygame", Version: "1", Party: party},
			`{"client_ip":"1.2.3.4","game":"mygame","version":"1","party":{"code":"K7QF2M","token":"` + testPartyToken + `"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("marshal\n got %s\nwant %s", got, tt.want)
			}
			back := reflect.New(reflect.TypeOf(tt.v))
			if err := json.Unmarshal(got, back.Interface()); err != nil {
				t.Fatal(err)
			}
			again, err := Marshal(back.Elem().Interface())
			if err != nil || string(again) != tt.want {
				t.Fatalf("round trip: %s %v", again, err)
			}
		})
	}
}

func TestPlayOnlyForPlayRequests(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		r    MatchmakerRequest
		want bool
	}{
		{MatchmakerRequest{Game: "g", Version: "1"}, false},
		{MatchmakerRequest{Game: "g", Version: "1", Props: Props{}}, false},
		{MatchmakerRequest{Game: "g", Version: "1", Queue: "duo"}, true},
		{MatchmakerRequest{Game: "g", Version: "1", Party: &PartyRef{Code: "K7QF2M"}}, true},
		{MatchmakerRequest{Game: "g", Version: "1", Props: Props{"skill": Num(1)}}, true},
	} {
		if got := tt.r.Play(); got != tt.want {
			t.Errorf("%+v.Play() = %v, want %v", tt.r, got, tt.want)
		}
	}
}

// The party and backfill subjects' messages, as documented on PartyRequest, PartyReply,
// BackfillRequest and BackfillReply.
func TestPartyJSONContract(t *testing.T) {
	t.Parallel()
	leader := PartyMember{ID: "m1a2", Leader: true}
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"create", PartyRequest{Op: PartyOpCreate, ClientIP: "203.0.113.5"}, `{"op":"create","client_ip":"203.0.113.5"}`},
		{"join", PartyRequest{Op: PartyOpJoin, Code: "K7QF2M", ClientIP: "203.0.113.6"}, `{"op":"join","code":"K7QF2M","client_ip":"203.0.113.6"}`},
		{"leave", PartyRequest{Op: PartyOpLeave, Code: "K7QF2M", Token: "T"}, `{"op":"leave","code":"K7QF2M","token":"T"}`},
		{"kick", PartyRequest{Op: PartyOpKick, Code: "K7QF2M", Token: "T", Member: "m2x9"}, `{"op":"kick","code":"K7QF2M","token":"T","member":"m2x9"}`},
		{"get", PartyRequest{Op: PartyOpGet, Code: "K7QF2M", Token: "T"}, `{"op":"get","code":"K7QF2M","token":"T"}`},
		{"created", PartyReply{Party: &Party{Code: "K7QF2M", Members: []PartyMember{leader}, Max: 4}, Member: "m1a2", Token: "T"},
			`{"party":{"code":"K7QF2M","members":[{"id":"m1a2","leader":true,"waiting":false}],"max":4},"member":"m1a2","token":"T"}`},
		{"shown", PartyReply{Party: &Party{Code: "K7QF2M", Members: []PartyMember{leader, {ID: "m2x9", Waiting: true}}, Max: 4}, Member: "m1a2"},
			`{"party":{"code":"K7QF2M","members":[{"id":"m1a2","leader":true,"waiting":false},{"id":"m2x9","leader":false,"waiting":true}],"max":4},"member":"m1a2"}`},
		{"error", PartyReply{Error: &PlayError{Code: 404, Message: "unknown party code"}}, `{"error":{"code":404,"message":"unknown party code"}}`},
		{"backfill", BackfillRequest{Queue: "room", RequestID: "9f511e17a4b5", PublicIP: "172.104.100.7", Slots: 2},
			`{"queue":"room","request_id":"9f511e17a4b5","public_ip":"172.104.100.7","slots":2}`},
		{"backfill with props", BackfillRequest{Queue: "ranked", RequestID: "9f511e17a4b5", PublicIP: "172.104.100.7", Slots: 1,
			Props: Props{"skill": Num(1200), "mode": Str("ctf")}},
			`{"queue":"ranked","request_id":"9f511e17a4b5","public_ip":"172.104.100.7","slots":1,"props":{"mode":"ctf","skill":1200}}`},
		{"backfill ticket", BackfillReply{Ticket: "bf-3kq9x2"}, `{"ticket":"bf-3kq9x2"}`},
		{"backfill refused", BackfillReply{Error: &PlayError{Code: 400, Message: "backfill not enabled: queue duo does not take backfill requests"}},
			`{"error":{"code":400,"message":"backfill not enabled: queue duo does not take backfill requests"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("marshal\n got %s\nwant %s", got, tt.want)
			}
			back := reflect.New(reflect.TypeOf(tt.v))
			if err := json.Unmarshal(got, back.Interface()); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(back.Elem().Interface(), tt.v) {
				t.Fatalf("round trip: %+v, want %+v", back.Elem().Interface(), tt.v)
			}
		})
	}
}

func TestValidatePlay(t *testing.T) {
	t.Parallel()
	party := &PartyRef{Code: "K7QF2M", Token: testPartyToken}
	tests := []struct {
		name   string
		queue  string
		props  Props
		party  *PartyRef
		errSub string // "" = valid
		props2 bool   // the error must also match ErrInvalidProps
	}{
		{"plain", "", nil, nil, "", false},
		{"queue with props and party", "duo", Props{"skill": Num(1200), "mode": Str("ctf")}, party, "", false},
		{"queue name with dash and underscore", "ranked_2v2-eu", nil, nil, "", false},
		{"queue with a dot", "a.b", nil, nil, `queue name "a.b"`, false},
		{"queue too long", strings.Repeat("q", MaxQueueNameLen+1), nil, nil, "queue name", false},
		{"prop name with space", "", Props{"a b": Num(1)}, nil, `property name "a b"`, true},
		{"prop string too long", "", Props{"map": Str(strings.Repeat("m", MaxPropStringLen+1))}, nil, `property "map" is longer`, true},
		{"party code lower case", "", nil, &PartyRef{Code: "k7qf2m", Token: "t"}, `party code "k7qf2m"`, false},
		{"party code with O", "", nil, &PartyRef{Code: "K7QF2O", Token: "t"}, `party code "K7QF2O"`, false},
		{"party without token", "", nil, &PartyRef{Code: "K7QF2M"}, "party token missing or malformed", false},
		{"party token with space", "", nil, &PartyRef{Code: "K7QF2M", Token: "a b"}, "party token missing or malformed", false},
		{"party token too long", "", nil, &PartyRef{Code: "K7QF2M", Token: strings.Repeat("t", MaxPartyTokenLen+1)}, "party token missing or malformed", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidatePlay(tt.queue, tt.props, tt.party)
			if tt.errSub == "" {
				if err != nil {
					t.Fatalf("ValidatePlay: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidPlay) || !strings.Contains(err.Error(), tt.errSub) {
				t.Fatalf("ValidatePlay = %v, want an ErrInvalidPlay containing %q", err, tt.errSub)
			}
			if tt.props2 && !errors.Is(err, ErrInvalidProps) {
				t.Fatalf("%v does not match ErrInvalidProps", err)
			}
		})
	}
}

func TestPropValueJSON(t *testing.T) {
	t.Parallel()
	var p Props
	if err := json.Unmarshal([]byte(`{"skill":1200,"ratio":0.5,"mode":"ctf","neg":-3e2}`), &p); err != nil {
		t.Fatal(err)
	}
	want := Props{"skill": Num(1200), "ratio": Num(0.5), "mode": Str("ctf"), "neg": Num(-300)}
	if !reflect.DeepEqual(p, want) {
		t.Fatalf("props = %+v, want %+v", p, want)
	}
	for _, bad := range []string{`{"a":true}`, `{"a":null}`, `{"a":[1]}`, `{"a":{"b":1}}`} {
		var p Props
		if err := json.Unmarshal([]byte(bad), &p); !errors.Is(err, ErrInvalidProps) {
			t.Errorf("unmarshal %s: %v, want ErrInvalidProps", bad, err)
		}
	}
}
