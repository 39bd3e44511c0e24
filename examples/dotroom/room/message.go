package room

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/bevygap-go/bevygap/netcode"
)

// Message kinds: the first byte of every payload. Client-to-server kinds are below 0x80,
// server-to-client kinds from 0x80 up. A payload from a client whose first byte is none of the
// client kinds is not a game message: the server echoes it back unchanged, which is how
// `bevygap play` and latency probes measure round trips.
const (
	KindMove     byte = 0x01 // client → server: move my dot
	KindSay      byte = 0x02 // client → server: chat line
	KindWelcome  byte = 0x81 // server → client: you joined; your id and the room size
	KindSnapshot byte = 0x82 // server → client: the room at one tick (every dot)
	KindChat     byte = 0x83 // server → client: a chat line from a player
)

// Limits of the encoding.
const (
	// MaxStep is the largest distance a dot moves per Move on each axis; larger steps are
	// clamped by the room.
	MaxStep = 4
	// MaxTextBytes is the longest chat line (UTF-8 bytes).
	MaxTextBytes = 200
	// dotBytes is one dot in a Snapshot message: id u64, x i16, y i16.
	dotBytes = 12
	// snapshotHeaderBytes is kind + tick u32 + count u16.
	snapshotHeaderBytes = 7
	// MaxDots is how many dots fit in one Snapshot message: one netcode payload over either
	// transport (WebTransport's is the smaller, netcode.MaxWebTransportPayloadBytes).
	MaxDots = (netcode.MaxWebTransportPayloadBytes - snapshotHeaderBytes) / dotBytes
)

// Errors of Decode. Test them with errors.Is.
var (
	// ErrNotGame means the payload is not a dotroom message (empty, or an unknown first byte).
	// The server echoes such payloads.
	ErrNotGame = errors.New("dotroom: not a game message")
	// ErrMalformed means the payload starts with a known kind but its body is invalid.
	ErrMalformed = errors.New("dotroom: malformed message")
)

// Message is one dotroom message: Move, Say, Welcome, Snapshot or Chat. AppendTo appends its
// encoding (kind byte first) to b.
type Message interface {
	AppendTo(b []byte) []byte
}

// Move asks the server to move the sender's dot by (DX, DY); each is clamped to ±MaxStep.
// Encoding: 0x01 ‖ dx i8 ‖ dy i8.
type Move struct{ DX, DY int8 }

// Say is a chat line from a client, relayed to everyone in the room (the sender included).
// Encoding: 0x02 ‖ UTF-8 text (1..MaxTextBytes bytes).
type Say struct{ Text string }

// Welcome tells a client it has joined. Encoding: 0x81 ‖ you u64 ‖ width u16 ‖ height u16
// (integers little-endian, like everything in netcode).
type Welcome struct {
	You           uint64
	Width, Height uint16
}

// Snapshot is the whole room at one tick. Encoding: 0x82 ‖ tick u32 ‖ n u16 ‖ n × (id u64 ‖
// x i16 ‖ y i16), at most MaxDots dots, sorted by id.
type Snapshot struct {
	Tick uint32
	Dots []Dot
}

// Chat is a chat line relayed by the server. Encoding: 0x83 ‖ from u64 ‖ UTF-8 text.
type Chat struct {
	From uint64
	Text string
}

// Dot is one player's position. X grows to the right, Y downwards, both from 0.
type Dot struct {
	ID   uint64
	X, Y int16
}

// AppendTo implements Message.
func (m Move) AppendTo(b []byte) []byte { return append(b, KindMove, byte(m.DX), byte(m.DY)) }

// AppendTo implements Message. Text longer than MaxTextBytes is cut at a rune boundary.
func (m Say) AppendTo(b []byte) []byte {
	return append(append(b, KindSay), truncateText(m.Text)...)
}

// AppendTo implements Message.
func (m Welcome) AppendTo(b []byte) []byte {
	b = append(b, KindWelcome)
	b = binary.LittleEndian.AppendUint64(b, m.You)
	b = binary.LittleEndian.AppendUint16(b, m.Width)
	return binary.LittleEndian.AppendUint16(b, m.Height)
}

// AppendTo implements Message. Dots beyond MaxDots are left out.
func (m Snapshot) AppendTo(b []byte) []byte {
	dots := m.Dots
	if len(dots) > MaxDots {
		dots = dots[:MaxDots]
	}
	b = append(b, KindSnapshot)
	b = binary.LittleEndian.AppendUint32(b, m.Tick)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(dots)))
	for _, d := range dots {
		b = binary.LittleEndian.AppendUint64(b, d.ID)
		b = binary.LittleEndian.AppendUint16(b, uint16(d.X))
		b = binary.LittleEndian.AppendUint16(b, uint16(d.Y))
	}
	return b
}

// AppendTo implements Message. Text longer than MaxTextBytes is cut at a rune boundary.
func (m Chat) AppendTo(b []byte) []byte {
	b = append(b, KindChat)
	b = binary.LittleEndian.AppendUint64(b, m.From)
	return append(b, truncateText(m.Text)...)
}

// Find returns the dot with the given id.
func (m Snapshot) Find(id uint64) (Dot, bool) {
	for _, d := range m.Dots {
		if d.ID == id {
			return d, true
		}
	}
	return Dot{}, false
}

// Encode returns the encoding of m.
func Encode(m Message) []byte { return m.AppendTo(nil) }

// Decode parses one payload. It returns an error matching ErrNotGame for a payload that is not
// a dotroom message (the server echoes those) and ErrMalformed for a broken one. It never
// panics and never keeps a reference to b.
func Decode(b []byte) (Message, error) {
	if len(b) == 0 {
		return nil, ErrNotGame
	}
	body := b[1:]
	switch b[0] {
	case KindMove:
		if len(body) != 2 {
			return nil, fmt.Errorf("%w: move of %d bytes", ErrMalformed, len(b))
		}
		return Move{DX: int8(body[0]), DY: int8(body[1])}, nil
	case KindSay:
		text, err := decodeText(body)
		if err != nil {
			return nil, err
		}
		return Say{Text: text}, nil
	case KindWelcome:
		if len(body) != 12 {
			return nil, fmt.Errorf("%w: welcome of %d bytes", ErrMalformed, len(b))
		}
		return Welcome{
			You:    binary.LittleEndian.Uint64(body),
			Width:  binary.LittleEndian.Uint16(body[8:]),
			Height: binary.LittleEndian.Uint16(body[10:]),
		}, nil
	case KindSnapshot:
		if len(body) < snapshotHeaderBytes-1 {
			return nil, fmt.Errorf("%w: snapshot of %d bytes", ErrMalformed, len(b))
		}
		m := Snapshot{Tick: binary.LittleEndian.Uint32(body)}
		n := int(binary.LittleEndian.Uint16(body[4:]))
		rest := body[6:]
		if n > MaxDots || len(rest) != n*dotBytes {
			return nil, fmt.Errorf("%w: snapshot with %d dots in %d bytes", ErrMalformed, n, len(rest))
		}
		m.Dots = make([]Dot, n)
		for i := range m.Dots {
			d := rest[i*dotBytes:]
			m.Dots[i] = Dot{
				ID: binary.LittleEndian.Uint64(d),
				X:  int16(binary.LittleEndian.Uint16(d[8:])),
				Y:  int16(binary.LittleEndian.Uint16(d[10:])),
			}
		}
		return m, nil
	case KindChat:
		if len(body) < 8 {
			return nil, fmt.Errorf("%w: chat of %d bytes", ErrMalformed, len(b))
		}
		text, err := decodeText(body[8:])
		if err != nil {
			return nil, err
		}
		return Chat{From: binary.LittleEndian.Uint64(body), Text: text}, nil
	default:
		return nil, ErrNotGame
	}
}

func decodeText(b []byte) (string, error) {
	switch {
	case len(b) == 0 || len(b) > MaxTextBytes:
		return "", fmt.Errorf("%w: text of %d bytes (1..%d)", ErrMalformed, len(b), MaxTextBytes)
	case !utf8.Valid(b):
		return "", fmt.Errorf("%w: text is not UTF-8", ErrMalformed)
	}
	return string(b), nil
}

// truncateText cuts s to at most MaxTextBytes bytes without splitting a rune.
func truncateText(s string) string {
	if len(s) <= MaxTextBytes {
		return s
	}
	cut := MaxTextBytes
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
