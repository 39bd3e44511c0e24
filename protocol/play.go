package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"

	"github.com/bevygap-go/bevygap/internal/names"
)

// Playing together (parties and match queues) is bevygap-go's own extension of the wire; the
// Rust project has none of it. A plain request — {"game","version","client_ip"} with none of
// the fields below — keeps meaning exactly what it means in the reference: one seat for one
// player, wherever Edgegap puts it. The extension only adds optional fields, omitted when empty,
// so a plain request encodes to the reference's bytes.
//
// A request to play in a queue, alone or as a party ([RequestSession], the WebSocket message;
// props are encoded with sorted keys):
//
//	{"game":"mygame","version":"1","client_ip":null,"queue":"duo"}
//	{"game":"mygame","version":"1","client_ip":null,"queue":"ranked","props":{"mode":"ctf","skill":1200}}
//	{"game":"mygame","version":"1","client_ip":null,"party":{"code":"K7QF2M","token":"…"}}
//	{"game":"mygame","version":"1","client_ip":null,"queue":"duo","party":{"code":"K7QF2M","token":"…"}}
//
// The chunked HTTP route takes the same three fields as its optional JSON body
// ({"queue":"duo"}), and the front door passes them on to the matchmaker after the reference's
// fields ([MatchmakerRequest]):
//
//	{"client_ip":"81.2.69.160","game":"mygame","version":"1","queue":"duo"}
//
// Parties are managed over the front door's party routes, which become [PartyRequest]s on
// matchmaker.party.<game>.<version>. Feedback is the reference's SessionRequestFeedback,
// unchanged: waiting in a queue or for a party is reported with ProgressReport texts
// ("Waiting in queue duo: 1 of 2 players"); every player of a match gets its own SessionReady
// (its own connect token) for the same game server; a refusal is an Error feedback
// ({"Error":[404,"no queue named \"x\""]}). See docs/play-together.md.
const (
	// SubjectMatchmakerPartyPrefix prefixes the party management subject
	// matchmaker.party.<game>.<version> (request/reply, body [PartyRequest], reply [PartyReply]).
	SubjectMatchmakerPartyPrefix = "matchmaker.party"
	// SubjectMatchmakerCancelPrefix prefixes matchmaker.cancel.<game>.<version>: the front door
	// publishes there, with the request's reply subject as the body, when a player goes away
	// before the final feedback of a streaming request. Every matchmaker instance listens (no
	// queue group); the one running the request (or holding its ticket) drops it.
	SubjectMatchmakerCancelPrefix = "matchmaker.cancel"

	// MaxProps is the most properties one request may carry.
	MaxProps = 16
	// MaxPropStringLen is the longest string property value, in bytes.
	MaxPropStringLen = 64
	// MaxQueueNameLen is the longest queue name.
	MaxQueueNameLen = 30
	// PartyCodeLen is the length of a party code: letters and digits without look-alikes.
	PartyCodeLen = 6
	// PartyCodeAlphabet are the characters of a party code (no 0/O, 1/I/L).
	PartyCodeAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
)

// Party operations ([PartyRequest.Op]).
const (
	PartyOpCreate = "create" // start a party; the caller becomes its leader
	PartyOpJoin   = "join"   // join with a code
	PartyOpLeave  = "leave"  // leave (a leaving leader hands the lead to the oldest member)
	PartyOpKick   = "kick"   // the leader removes Member
	PartyOpGet    = "get"    // show the party to a member
)

// MatchmakerCancelSubject returns matchmaker.cancel.<game>.<version>.
func MatchmakerCancelSubject(game, version string) (string, error) {
	if err := ValidateGameVersion(game, version); err != nil {
		return "", err
	}
	return SubjectMatchmakerCancelPrefix + "." + game + "." + version, nil
}

// MatchmakerPartySubject returns matchmaker.party.<game>.<version>.
func MatchmakerPartySubject(game, version string) (string, error) {
	if err := ValidateGameVersion(game, version); err != nil {
		return "", err
	}
	return SubjectMatchmakerPartyPrefix + "." + game + "." + version, nil
}

// PartyRef names a party in a session request: its code and the member's party token (proof of
// membership, returned when the member created or joined the party).
type PartyRef struct {
	Code  string `json:"code"`
	Token string `json:"token"`
}

// PartyRequest is the body of a matchmaker.party.<game>.<version> request. The front door
// builds it from its party routes (docs/play-together.md); examples:
//
//	{"op":"create","client_ip":"203.0.113.5"}
//	{"op":"join","code":"K7QF2M","client_ip":"203.0.113.6"}
//	{"op":"leave","code":"K7QF2M","token":"…"}
//	{"op":"kick","code":"K7QF2M","token":"…","member":"m2x9"}
//	{"op":"get","code":"K7QF2M","token":"…"}
type PartyRequest struct {
	// Op is one of the PartyOp* constants.
	Op string `json:"op"`
	// Code is the party's code (every op but create).
	Code string `json:"code,omitempty"`
	// Token is the caller's party token (leave, kick, get).
	Token string `json:"token,omitempty"`
	// Member is the member id a kick removes.
	Member string `json:"member,omitempty"`
	// ClientIP is the caller's address as the front door saw it (for logs and placement).
	ClientIP string `json:"client_ip,omitempty"`
}

// PartyMember is one member of a [Party] as members see it (never a token).
type PartyMember struct {
	ID     string `json:"id"`
	Leader bool   `json:"leader"`
	// Waiting is true while the member has an open session request for the party.
	Waiting bool `json:"waiting"`
}

// Party is a party as its members see it.
type Party struct {
	Code    string        `json:"code"`
	Members []PartyMember `json:"members"`
	// Max is the most members the party may have.
	Max int `json:"max"`
}

// PartyReply is the answer to a [PartyRequest]: the party (after the operation) and the
// caller's own member id and, on create and join only, the caller's party token. A failed
// operation sets Error instead. Examples:
//
//	{"party":{"code":"K7QF2M","members":[{"id":"m1a2","leader":true,"waiting":false}],"max":4},"member":"m1a2","token":"…"}
//	{"party":{"code":"K7QF2M","members":[{"id":"m1a2","leader":true,"waiting":false},{"id":"m2x9","leader":false,"waiting":true}],"max":4},"member":"m1a2"}
//	{"error":{"code":404,"message":"unknown party code"}}
type PartyReply struct {
	Party  *Party     `json:"party,omitempty"`
	Member string     `json:"member,omitempty"`
	Token  string     `json:"token,omitempty"`
	Error  *PlayError `json:"error,omitempty"`
}

// PlayError is a failed party or backfill operation: an HTTP-like code (404 unknown code, 409 full party
// or already in a party, 403 not the leader or bad token, 400 bad request) and a message.
type PlayError struct {
	Code    uint16 `json:"code"`
	Message string `json:"message"`
}

func (e *PlayError) Error() string { return fmt.Sprintf("play error %d: %s", e.Code, e.Message) }

// ValidQueueName reports whether q is a usable queue name: 1 to 30 ASCII letters, digits, '_'
// or '-'.
func ValidQueueName(q string) bool { return names.Valid(q, MaxQueueNameLen, nameExtra) }

// ValidPartyCode reports whether c is a well-formed party code (it may still be unknown).
func ValidPartyCode(c string) bool {
	if len(c) != PartyCodeLen {
		return false
	}
	for i := 0; i < len(c); i++ {
		if !bytes.ContainsRune([]byte(PartyCodeAlphabet), rune(c[i])) {
			return false
		}
	}
	return true
}

// ErrInvalidProps is returned (wrapped) for properties that break the rules of [Props].
var ErrInvalidProps = errors.New("invalid props")

// ErrInvalidPlay is returned (wrapped) by [ValidatePlay] for a malformed play-together request.
var ErrInvalidPlay = errors.New("invalid play request")

// MaxPartyTokenLen is the longest party token accepted (the matchmaker's are 43 bytes).
const MaxPartyTokenLen = 128

// ValidPartyToken reports whether t looks like a party token: 1 to [MaxPartyTokenLen] bytes of
// base64url (letters, digits, '-', '_', and '=' padding). It may still be wrong.
func ValidPartyToken(t string) bool { return names.Valid(t, MaxPartyTokenLen, "-_=") }

// Validate checks the form of a party reference: a well-formed code and token.
func (p PartyRef) Validate() error {
	if !ValidPartyCode(p.Code) {
		return fmt.Errorf("%w: party code %q: want %d characters of %s", ErrInvalidPlay, p.Code, PartyCodeLen, PartyCodeAlphabet)
	}
	if !ValidPartyToken(p.Token) {
		return fmt.Errorf("%w: party token missing or malformed", ErrInvalidPlay)
	}
	return nil
}

// ValidatePlay checks the play-together fields of a session request (all may be empty: a
// plain request is valid): a queue name per [ValidQueueName], props per [Props.Validate] and a
// party reference per [PartyRef.Validate]. The front door refuses a request that fails it; that
// the queue exists and the props fit it only the matchmaker can tell. Errors wrap
// [ErrInvalidPlay] (and [ErrInvalidProps] for props).
func ValidatePlay(queue string, props Props, party *PartyRef) error {
	if queue != "" && !ValidQueueName(queue) {
		return fmt.Errorf("%w: queue name %q: use 1-%d letters, digits, '_' or '-'", ErrInvalidPlay, queue, MaxQueueNameLen)
	}
	if err := props.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidPlay, err)
	}
	if party != nil {
		if err := party.Validate(); err != nil {
			return err
		}
	}
	return nil
}

// PropValue is one property of a ticket: a number (IsNum) or a string.
type PropValue struct {
	Num   float64
	Str   string
	IsNum bool
}

// Num returns a numeric property value.
func Num(v float64) PropValue { return PropValue{Num: v, IsNum: true} }

// Str returns a string property value.
func Str(v string) PropValue { return PropValue{Str: v} }

// String renders v as it appears on a command line (skill=1200, mode=ctf).
func (v PropValue) String() string {
	if v.IsNum {
		b, _ := json.Marshal(v.Num)
		return string(b)
	}
	return v.Str
}

// MarshalJSON encodes v as a JSON number or string.
func (v PropValue) MarshalJSON() ([]byte, error) {
	if v.IsNum {
		if math.IsNaN(v.Num) || math.IsInf(v.Num, 0) {
			return nil, fmt.Errorf("%w: a number must be finite", ErrInvalidProps)
		}
		return json.Marshal(v.Num)
	}
	return Marshal(v.Str)
}

// UnmarshalJSON decodes a JSON number or string; anything else is an error.
func (v *PropValue) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidProps, err)
		}
		*v = Str(s)
		return nil
	}
	var f float64
	if bytes.Equal(b, []byte("null")) { // json.Unmarshal would leave f at 0 without an error
		return fmt.Errorf("%w: a property is a number or a string, not null", ErrInvalidProps)
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("%w: a property is a number or a string", ErrInvalidProps)
	}
	*v = Num(f)
	return nil
}

// Props are a request's properties for a match queue: numbers (e.g. "skill") that must fall in
// a window the queue widens over time, and strings (e.g. "mode", "map") that must be equal
// among the players of a match. Keys: 1–30 ASCII letters, digits, '_' or '-'; at most
// [MaxProps]; strings at most [MaxPropStringLen] bytes; numbers finite.
type Props map[string]PropValue

// Validate checks p against the rules of [Props].
func (p Props) Validate() error {
	if len(p) > MaxProps {
		return fmt.Errorf("%w: at most %d properties", ErrInvalidProps, MaxProps)
	}
	keys := make([]string, 0, len(p))
	for k := range p {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := p[k]
		if !names.Valid(k, MaxNameLen, nameExtra) {
			return fmt.Errorf("%w: property name %q: use 1-30 letters, digits, '_' or '-'", ErrInvalidProps, k)
		}
		if v.IsNum && (math.IsNaN(v.Num) || math.IsInf(v.Num, 0)) {
			return fmt.Errorf("%w: property %q must be a finite number", ErrInvalidProps, k)
		}
		if !v.IsNum && len(v.Str) > MaxPropStringLen {
			return fmt.Errorf("%w: property %q is longer than %d bytes", ErrInvalidProps, k, MaxPropStringLen)
		}
	}
	return nil
}

// Play returns whether a request asks to play together (a queue or a party) rather than for a
// plain seat.
func (r MatchmakerRequest) Play() bool { return r.Queue != "" || r.Party != nil || len(r.Props) > 0 }

// SubjectMatchmakerBackfillPrefix prefixes matchmaker.backfill.<game>.<version>: a game server
// asks for players to fill seats that players left (request/reply, body [BackfillRequest]; the
// reply is a [BackfillReply]).
const SubjectMatchmakerBackfillPrefix = "matchmaker.backfill"

// BackfillRequest is a game server's request for more players from a match queue: Slots
// players are wanted on the deployment RequestID (ARBITRIUM_REQUEST_ID) at PublicIP:
//
//	{"queue":"room","request_id":"9f511e17a4b5","public_ip":"172.104.100.7","slots":2}
//	{"queue":"ranked","request_id":"9f511e17a4b5","public_ip":"172.104.100.7","slots":1,"props":{"mode":"ctf","skill":1200}}
type BackfillRequest struct {
	Queue     string `json:"queue"`
	RequestID string `json:"request_id"`
	PublicIP  string `json:"public_ip"`
	Slots     int    `json:"slots"`
	// Props, when set, are matched like a ticket's (e.g. the match's mode and skill).
	Props Props `json:"props,omitempty"`
}

// BackfillReply answers a [BackfillRequest]: the backfill ticket's id, or an error:
//
//	{"ticket":"bf-3kq9x2"}
//	{"error":{"code":400,"message":"backfill not enabled: queue duo does not take backfill requests"}}
type BackfillReply struct {
	Ticket string     `json:"ticket,omitempty"`
	Error  *PlayError `json:"error,omitempty"`
}
