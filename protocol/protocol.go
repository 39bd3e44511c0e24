// Package protocol holds the wire types and names that bevygap's services, SDKs and the Rust
// bevygap plugins agree on: NATS subjects, KV bucket names, the JSON of session requests and
// replies, and the streaming feedback messages.
//
// Everything here is a contract with the Rust project bevygap (crate bevygap_shared): JSON field
// names, the externally tagged encoding of [Feedback] (serde's default for enums) and the subject
// names must not change. Contract tests pin the exact bytes.
//
// The two ways to ask for a game session:
//
//	session.gensession                    NATS service request/reply (one shot)
//	  request  {"client_ip":"1.2.3.4"}
//	  reply    {"connect_token":"…","gameserver_ip":"…","gameserver_port":N,"link":"ip:port","cert_digest":"…"}
//	  errors   service error headers Nats-Service-Error / Nats-Service-Error-Code
//
//	matchmaker.request.<game>.<version>   streaming request
//	  request  {"client_ip":"…","game":"…","version":"…"}
//	  replies  "Acknowledged", {"SessionRequestAccepted":"id"}, {"ProgressReport":"…"}…,
//	           then {"SessionReady":{…}} or {"Error":[code,"msg"]}, then an EMPTY message (end).
package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/bevygap-go/bevygap/internal/names"
)

// NATS subjects and JetStream names used by bevygap. These are the reference's names; a bucket
// prefix (several games on one NATS) is applied by the bus package, never here.
const (
	// SubjectGenSession is the NATS service endpoint for one-shot session requests.
	SubjectGenSession = "session.gensession"
	// GenSessionServiceName, GenSessionGroup, GenSessionEndpoint and GenSessionQueue describe the
	// NATS micro service that answers SubjectGenSession (group "session" + endpoint "gensession").
	GenSessionServiceName = "gensession"
	GenSessionGroup       = "session"
	GenSessionEndpoint    = "gensession"
	GenSessionQueue       = "session_queue"

	// SubjectMatchmakerRequestPrefix prefixes the streaming request subject; see [MatchmakerRequestSubject].
	SubjectMatchmakerRequestPrefix = "matchmaker.request"
	// SubjectGameserverContexts is where a game server publishes its Edgegap context JSON at boot.
	SubjectGameserverContexts = "gameserver.contexts"
	// SubjectWebhookPrefix prefixes the subject the webhook sink publishes each body on: webhook.<name>.
	SubjectWebhookPrefix = "webhook"

	// BucketSessionsLy2Eg maps a Lightyear client id (decimal u64) to an Edgegap session id. TTL 30 s.
	BucketSessionsLy2Eg = "sessions_ly2eg"
	// BucketSessionsEg2Ly maps an Edgegap session id to a Lightyear client id (decimal u64). TTL 30 s.
	BucketSessionsEg2Ly = "sessions_eg2ly"
	// BucketActiveConnections maps a session id to the connected client id (written by game servers).
	BucketActiveConnections = "active_connections"
	// BucketUnclaimedSessions holds every session id the matchmaker created and nobody claimed yet.
	BucketUnclaimedSessions = "unclaimed_sessions"
	// BucketCertDigests maps a game server's public IP to its WebTransport certificate digest. TTL 14 days.
	BucketCertDigests = "cert_digests"

	// DeleteSessionStream is the JetStream work-queue stream of pending Edgegap session deletions.
	DeleteSessionStream = "DELETE_SESSION_STREAM"
	// DeleteSessionSubjectPrefix prefixes the delete queue subjects: edgegap_delete_session_q.<session id>.
	DeleteSessionSubjectPrefix = "edgegap_delete_session_q"
	// DeleteSessionConsumer is the durable pull consumer that performs deletions.
	DeleteSessionConsumer = "api-deleter-1"

	// MaxNameLen is the longest game or version name accepted.
	MaxNameLen = 30
)

// MatchmakerRequestSubject returns "matchmaker.request.<game>.<version>" after validating both
// names with [ValidateGameVersion].
func MatchmakerRequestSubject(game, version string) (string, error) {
	if err := ValidateGameVersion(game, version); err != nil {
		return "", err
	}
	return SubjectMatchmakerRequestPrefix + "." + game + "." + version, nil
}

// WebhookSubject returns the subject the webhook sink publishes a body received at /hook/<name> on.
func WebhookSubject(name string) string { return SubjectWebhookPrefix + "." + name }

// ErrInvalidName is returned (wrapped) for a game or version name that is empty, too long or has a
// character other than ASCII letters, digits, '_' and '-'.
var ErrInvalidName = errors.New("invalid name")

// ValidateGameVersion checks game and version like the reference (at most 30 characters each,
// the same error messages) with one deliberate difference: the reference's regex
// ^[a-zA-Z0-9\s_-]+$ also accepts white space, but both names become tokens of the NATS subject
// matchmaker.request.<game>.<version>, and NATS refuses to publish on a subject containing white
// space. The reference accepted such a name and then failed to publish (a server error for a
// client mistake); here it is rejected up front, so the only characters allowed are ASCII
// letters, digits, '_' and '-'.
func ValidateGameVersion(game, version string) error {
	if !validName(game) {
		if len(game) > MaxNameLen && validChars(game) {
			return fmt.Errorf("%w: Game name too long (max 30 chars)", ErrInvalidName)
		}
		return fmt.Errorf("%w: Game name invalid", ErrInvalidName)
	}
	if !validName(version) {
		if len(version) > MaxNameLen && validChars(version) {
			return fmt.Errorf("%w: Game version too long (max 30 chars)", ErrInvalidName)
		}
		return fmt.Errorf("%w: Game version invalid", ErrInvalidName)
	}
	return nil
}

// nameExtra are the bytes a game or version name may hold besides ASCII letters and digits. No
// white space, unlike the reference's \s: NATS subjects cannot contain it.
const nameExtra = "_-"

func validName(s string) bool { return names.Valid(s, MaxNameLen, nameExtra) }

// validChars reports whether s is non-empty and made of allowed bytes, whatever its length.
func validChars(s string) bool { return names.Valid(s, 0, nameExtra) }

// RequestSession is the first (and only) message a client sends on the matchmaker WebSocket.
// A nil ClientIP encodes as null: the front door then picks the address itself.
type RequestSession struct {
	Game     string  `json:"game"`
	Version  string  `json:"version"`
	ClientIP *string `json:"client_ip"`
	// Queue, Props and Party are bevygap-go's extension (see play.go): omitted when empty, so a
	// plain request is the reference's bytes.
	Queue string    `json:"queue,omitempty"`
	Props Props     `json:"props,omitempty"`
	Party *PartyRef `json:"party,omitempty"`
}

// MatchmakerRequest is the body of a matchmaker.request.<game>.<version> streaming request.
type MatchmakerRequest struct {
	ClientIP string `json:"client_ip"`
	Game     string `json:"game"`
	Version  string `json:"version"`
	// Queue, Props and Party are passed on from [RequestSession] (see play.go).
	Queue string    `json:"queue,omitempty"`
	Props Props     `json:"props,omitempty"`
	Party *PartyRef `json:"party,omitempty"`
}

// GenSessionRequest is the body of a session.gensession request. Unknown fields are ignored.
type GenSessionRequest struct {
	ClientIP string `json:"client_ip"`
}

// GenSessionReply is the successful answer to session.gensession.
type GenSessionReply struct {
	ConnectToken   string `json:"connect_token"`
	GameserverIP   string `json:"gameserver_ip"`
	GameserverPort uint16 `json:"gameserver_port"`
	Link           string `json:"link"`
	CertDigest     string `json:"cert_digest"`
}

// SessionReady is the payload of the final successful feedback message: the connect token (base64
// of 2048 bytes) and the game server's address.
type SessionReady struct {
	Token      string `json:"token"`
	IP         string `json:"ip"`
	Port       uint16 `json:"port"`
	CertDigest string `json:"cert_digest"`
}

// Addr returns the game server address of r, or an error when IP is not an IP literal.
func (r SessionReady) Addr() (netip.AddrPort, error) {
	ip, err := netip.ParseAddr(r.IP)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("session ready: game server ip: %w", err)
	}
	return netip.AddrPortFrom(ip, r.Port), nil
}

// FeedbackKind says which variant a [Feedback] is.
type FeedbackKind int

// The variants of SessionRequestFeedback, in the reference's order.
const (
	FeedbackAcknowledged FeedbackKind = iota + 1
	FeedbackSessionRequestAccepted
	FeedbackProgressReport
	FeedbackSessionReady
	FeedbackError
)

// Feedback is one SessionRequestFeedback message of the streaming session request. Exactly one
// variant is set, named by Kind. Its JSON is serde's externally tagged enum encoding:
//
//	"Acknowledged"
//	{"SessionRequestAccepted":"<session id>"}
//	{"ProgressReport":"<text>"}
//	{"SessionReady":{"token":"…","ip":"…","port":N,"cert_digest":"…"}}
//	{"Error":[<u16 code>,"<message>"]}
type Feedback struct {
	Kind FeedbackKind
	// Text is the session id (SessionRequestAccepted), the status text (ProgressReport) or the
	// error message (Error).
	Text string
	// Code is the HTTP-like error code of an Error.
	Code uint16
	// Ready is set for SessionReady.
	Ready *SessionReady
}

// Acknowledged returns the feedback sent as soon as a request is taken.
func Acknowledged() Feedback { return Feedback{Kind: FeedbackAcknowledged} }

// Accepted returns the feedback sent once Edgegap returned a session id.
func Accepted(sessionID string) Feedback {
	return Feedback{Kind: FeedbackSessionRequestAccepted, Text: sessionID}
}

// Progress returns a progress report.
func Progress(text string) Feedback { return Feedback{Kind: FeedbackProgressReport, Text: text} }

// Ready returns the final successful feedback.
func Ready(r SessionReady) Feedback { return Feedback{Kind: FeedbackSessionReady, Ready: &r} }

// Error returns the final error feedback.
func Error(code uint16, message string) Feedback {
	return Feedback{Kind: FeedbackError, Code: code, Text: message}
}

// String renders f like the reference's Display impl, for progress displays.
func (f Feedback) String() string {
	switch f.Kind {
	case FeedbackAcknowledged:
		return "Sending request"
	case FeedbackSessionRequestAccepted:
		return "Request accepted: " + f.Text
	case FeedbackProgressReport:
		return "In-progress: " + f.Text
	case FeedbackSessionReady:
		if f.Ready == nil {
			return "Session Ready!"
		}
		return "Session Ready! " + f.Ready.IP + ":" + strconv.Itoa(int(f.Ready.Port))
	case FeedbackError:
		return "Error " + strconv.Itoa(int(f.Code)) + ": " + f.Text
	default:
		return "invalid feedback"
	}
}

// Marshal encodes v as JSON the way serde_json does: no HTML escaping of <, > and &, no trailing
// newline. Use it (not json.Marshal) for every message that goes on the wire, so that frames are
// byte-identical to the Rust services'.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// MarshalJSON encodes f as serde's externally tagged enum.
func (f Feedback) MarshalJSON() ([]byte, error) {
	switch f.Kind {
	case FeedbackAcknowledged:
		return []byte(`"Acknowledged"`), nil
	case FeedbackSessionRequestAccepted:
		return Marshal(map[string]string{"SessionRequestAccepted": f.Text})
	case FeedbackProgressReport:
		return Marshal(map[string]string{"ProgressReport": f.Text})
	case FeedbackSessionReady:
		if f.Ready == nil {
			return nil, errors.New("protocol: SessionReady feedback without payload")
		}
		return Marshal(struct {
			SessionReady *SessionReady `json:"SessionReady"`
		}{f.Ready})
	case FeedbackError:
		return Marshal(struct {
			Error [2]any `json:"Error"`
		}{[2]any{f.Code, f.Text}})
	default:
		return nil, fmt.Errorf("protocol: feedback of unknown kind %d", f.Kind)
	}
}

// UnmarshalJSON decodes serde's externally tagged encoding of SessionRequestFeedback.
func (f *Feedback) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("protocol: feedback: %w", err)
		}
		if s != "Acknowledged" {
			return fmt.Errorf("protocol: unknown feedback %q", s)
		}
		*f = Acknowledged()
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return fmt.Errorf("protocol: feedback: %w", err)
	}
	if len(m) != 1 {
		return fmt.Errorf("protocol: feedback must have exactly one variant, got %d keys", len(m))
	}
	for k, v := range m {
		switch k {
		case "SessionRequestAccepted", "ProgressReport":
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return fmt.Errorf("protocol: feedback %s: %w", k, err)
			}
			if k == "ProgressReport" {
				*f = Progress(s)
			} else {
				*f = Accepted(s)
			}
		case "SessionReady":
			var r SessionReady
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("protocol: feedback SessionReady: %w", err)
			}
			*f = Ready(r)
		case "Error":
			var pair []json.RawMessage
			if err := json.Unmarshal(v, &pair); err != nil || len(pair) != 2 {
				return fmt.Errorf("protocol: feedback Error must be [code, message]")
			}
			var code uint16
			var msg string
			if err := json.Unmarshal(pair[0], &code); err != nil {
				return fmt.Errorf("protocol: feedback Error code: %w", err)
			}
			if err := json.Unmarshal(pair[1], &msg); err != nil {
				return fmt.Errorf("protocol: feedback Error message: %w", err)
			}
			*f = Error(code, msg)
		default:
			return fmt.Errorf("protocol: unknown feedback variant %q", k)
		}
	}
	return nil
}
