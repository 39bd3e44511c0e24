package room

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/bevygap-go/bevygap/netcode"
)

// TestEncodingBytes pins the wire bytes of every message kind.
func TestEncodingBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		msg  Message
		hex  string
	}{
		{"move", Move{DX: 1, DY: -1}, "0101ff"},
		{"say", Say{Text: "hi"}, "026869"},
		{"welcome", Welcome{You: 0x0102030405060708, Width: 64, Height: 32}, "81" + "0807060504030201" + "4000" + "2000"},
		{"snapshot_empty", Snapshot{Tick: 7}, "82" + "07000000" + "0000"},
		{"snapshot", Snapshot{Tick: 1, Dots: []Dot{{ID: 2, X: 3, Y: -1}}}, "82" + "01000000" + "0100" + "0200000000000000" + "0300" + "ffff"},
		{"chat", Chat{From: 9, Text: "yo"}, "83" + "0900000000000000" + "796f"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := Encode(tt.msg)
			if hex.EncodeToString(got) != tt.hex {
				t.Fatalf("Encode = %x, want %s", got, tt.hex)
			}
			back, err := Decode(got)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			want := tt.msg
			if r, ok := want.(Snapshot); ok && r.Dots == nil {
				r.Dots = []Dot{}
				want = r
			}
			if !reflect.DeepEqual(back, want) {
				t.Fatalf("Decode = %#v, want %#v", back, want)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, ErrNotGame},
		{"unknown_kind", []byte("bevygap-play seq=1"), ErrNotGame},
		{"move_short", []byte{KindMove, 1}, ErrMalformed},
		{"move_long", []byte{KindMove, 1, 2, 3}, ErrMalformed},
		{"say_empty", []byte{KindSay}, ErrMalformed},
		{"say_not_utf8", []byte{KindSay, 0xff, 0xfe}, ErrMalformed},
		{"say_too_long", append([]byte{KindSay}, bytes.Repeat([]byte("a"), MaxTextBytes+1)...), ErrMalformed},
		{"welcome_short", []byte{KindWelcome, 1, 2}, ErrMalformed},
		{"snapshot_short", []byte{KindSnapshot, 1, 0, 0}, ErrMalformed},
		{"snapshot_count_mismatch", []byte{KindSnapshot, 1, 0, 0, 0, 2, 0, 1, 2, 3}, ErrMalformed},
		{"snapshot_too_many", append([]byte{KindSnapshot, 0, 0, 0, 0, 0xff, 0xff}, make([]byte, 12*0xffff)...), ErrMalformed},
		{"chat_short", []byte{KindChat, 1, 2, 3}, ErrMalformed},
		{"chat_no_text", []byte{KindChat, 1, 0, 0, 0, 0, 0, 0, 0}, ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := Decode(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Decode = %#v, %v; want %v", m, err, tt.want)
			}
		})
	}
}

func TestEncodingLimits(t *testing.T) {
	t.Parallel()
	// A full room fits one netcode payload over either transport; more dots are left out.
	dots := make([]Dot, MaxDots+5)
	for i := range dots {
		dots[i] = Dot{ID: uint64(i)}
	}
	b := Encode(Snapshot{Tick: 1, Dots: dots})
	if limit := min(netcode.MaxPayloadBytes, netcode.MaxWebTransportPayloadBytes); len(b) > limit {
		t.Fatalf("a full room is %d bytes, more than a payload (%d)", len(b), limit)
	}
	m, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.(Snapshot).Dots); n != MaxDots {
		t.Fatalf("decoded %d dots, want %d", n, MaxDots)
	}
	// Long chat lines are cut at a rune boundary and still decode.
	long := strings.Repeat("é", MaxTextBytes) // 2 bytes each
	for _, msg := range []Message{Say{Text: long}, Chat{From: 1, Text: long}} {
		m, err := Decode(Encode(msg))
		if err != nil {
			t.Fatalf("%T with a long text: %v", msg, err)
		}
		var text string
		switch v := m.(type) {
		case Say:
			text = v.Text
		case Chat:
			text = v.Text
		}
		if len(text) != MaxTextBytes || !strings.HasPrefix(long, text) {
			t.Fatalf("%T text cut to %d bytes, want %d at a rune boundary", msg, len(text), MaxTextBytes)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, m := range []Message{Move{1, 2}, Say{"x"}, Welcome{1, 2, 3}, Snapshot{1, []Dot{{1, 2, 3}}}, Chat{1, "y"}} {
		f.Add(Encode(m))
	}
	f.Add([]byte("bevygap-play seq=1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		// What decodes re-encodes to the same bytes.
		if got := Encode(m); !bytes.Equal(got, b) {
			t.Fatalf("Decode(%x) = %#v re-encodes to %x", b, m, got)
		}
	})
}

func BenchmarkSnapshotEncodeDecode(b *testing.B) {
	dots := make([]Dot, 64) // the dotroom server's default player slots
	for i := range dots {
		dots[i] = Dot{ID: uint64(i) * 7919, X: int16(i), Y: int16(i / 2)}
	}
	msg := Snapshot{Tick: 42, Dots: dots}
	buf := make([]byte, 0, netcode.MaxPayloadBytes)
	b.ReportAllocs()
	for b.Loop() {
		buf = msg.AppendTo(buf[:0])
		if _, err := Decode(buf); err != nil {
			b.Fatal(err)
		}
	}
}
