package netcode

import (
	"bytes"
	"encoding/hex"
	"errors"
	"testing"

	"golang.org/x/crypto/chacha20poly1305"
)

// The expected bytes in these tests are written out from STANDARD.md and Lightyear's
// packet.rs by hand; only the AEAD primitive itself comes from x/crypto.

func TestSequenceBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		seq  uint64
		want int
	}{
		{0, 1}, {1, 1}, {0xff, 1}, {0x100, 2}, {1000, 2}, {0xffff, 2}, {0x10000, 3},
		{1 << 24, 4}, {1 << 32, 5}, {1 << 40, 6}, {1 << 48, 7}, {1 << 56, 8}, {1 << 63, 8}, {^uint64(0), 8},
	}
	for _, tc := range tests {
		if got := sequenceBytes(tc.seq); got != tc.want {
			t.Errorf("sequenceBytes(%#x) = %d, want %d", tc.seq, got, tc.want)
		}
	}
}

func TestPacketHeaderBytes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		typ  packetType
		seq  uint64
		want []byte
	}{
		// STANDARD.md: "a sequence number of 1000 ... the high 4 bits of the prefix byte are
		// set to 2 and the sequence data written to the packet is: 0xE8,0x03".
		{"standard example", packetPayload, 1000, []byte{0x25, 0xe8, 0x03}},
		{"zero takes one byte", packetKeepAlive, 0, []byte{0x14, 0x00}},
		{"denied", packetDenied, 7, []byte{0x11, 0x07}},
		{"lightyear handshake sequence", packetChallenge, 1 << 63, []byte{0x82, 0, 0, 0, 0, 0, 0, 0, 0x80}},
		{"disconnect 3 bytes", packetDisconnect, 0x030201, []byte{0x36, 0x01, 0x02, 0x03}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := appendPacketHeader(nil, tc.typ, tc.seq)
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("header = % x, want % x", got, tc.want)
			}
		})
	}
}

func TestRequestPacketBytes(t *testing.T) {
	t.Parallel()
	tok := &ConnectToken{ProtocolID: 0x1122334455667788, ExpireTimestamp: 0x0000000069000000}
	for i := range tok.Nonce {
		tok.Nonce[i] = byte(0xa0 + i)
	}
	for i := range tok.PrivateData {
		tok.PrivateData[i] = byte(i * 7)
	}
	version := []byte{'N', 'E', 'T', 'C', 'O', 'D', 'E', ' ', '1', '.', '0', '2', 0}
	tests := []struct {
		format   Format
		protocol []byte
		expire   []byte
	}{
		{FormatLightyear017, []byte{0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11}, []byte{0, 0, 0, 0x69, 0, 0, 0, 0}},
		{FormatLightyear020, []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}, []byte{0, 0, 0, 0, 0x69, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.format.String(), func(t *testing.T) {
			tok.Format = tc.format
			want := []byte{0x00}
			want = append(want, version...)
			want = append(want, tc.protocol...)
			want = append(want, tc.expire...)
			want = append(want, tok.Nonce[:]...)
			want = append(want, tok.PrivateData[:]...)
			if len(want) != 1078 {
				t.Fatalf("hand-built request is %d bytes", len(want))
			}
			got := appendRequestPacket(nil, tok)
			if !bytes.Equal(got, want) {
				t.Fatalf("request packet differs from the standard layout")
			}
			p, err := readRequestPacket(want, tc.format)
			if err != nil {
				t.Fatal(err)
			}
			if p.protocolID != tok.ProtocolID || p.expireTimestamp != tok.ExpireTimestamp || *p.nonce != tok.Nonce || *p.sealed != tok.PrivateData {
				t.Fatalf("readRequestPacket = %+v", p)
			}
			if tag := p.tag(); !bytes.Equal(tag[:], tok.PrivateData[1008:]) {
				t.Fatalf("tag = % x", tag)
			}
		})
	}
}

func TestReadRequestPacketRejects(t *testing.T) {
	t.Parallel()
	good := appendRequestPacket(nil, &ConnectToken{ProtocolID: 1})
	badVersion := bytes.Clone(good)
	badVersion[12] = '3' // "NETCODE 1.03"
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:1077], errPacketSize},
		{"long", append(bytes.Clone(good), 0), errPacketSize},
		{"version", badVersion, ErrVersion},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := readRequestPacket(tc.b, FormatLightyear017); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

// sealByHand builds an encrypted packet from its parts the way STANDARD.md describes it.
func sealByHand(t *testing.T, key Key, prefix byte, seqBytes, nonce, ad, body []byte) []byte {
	t.Helper()
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		t.Fatal(err)
	}
	out := append([]byte{prefix}, seqBytes...)
	return aead.Seal(out, nonce, body, ad)
}

func TestEncryptedPacketBytes(t *testing.T) {
	t.Parallel()
	var key Key
	for i := range key {
		key[i] = byte(i + 1)
	}
	const protocolID = 0x0102030405060708
	version := "NETCODE 1.02\x00"
	tok := make([]byte, 300)
	for i := range tok {
		tok[i] = byte(255 - i)
	}
	payload := []byte("hello, lightyear")

	formats := []struct {
		format   Format
		protocol string // protocol id bytes in the associated data
		u64      func(v uint64) []byte
	}{
		{FormatLightyear017, "\x08\x07\x06\x05\x04\x03\x02\x01", func(v uint64) []byte {
			return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24), byte(v >> 32), byte(v >> 40), byte(v >> 48), byte(v >> 56)}
		}},
		{FormatLightyear020, "\x01\x02\x03\x04\x05\x06\x07\x08", func(v uint64) []byte {
			return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
		}},
	}
	for _, f := range formats {
		types := []struct {
			name     string
			typ      packetType
			seq      uint64
			prefix   byte
			seqBytes []byte
			body     []byte
		}{
			{"denied server full", packetDenied, 0x8000000000000001, 0x81, []byte{1, 0, 0, 0, 0, 0, 0, 0x80}, []byte{0}},
			{"challenge", packetChallenge, 0x8000000000000000, 0x82, []byte{0, 0, 0, 0, 0, 0, 0, 0x80}, append(f.u64(42), tok...)},
			{"response", packetResponse, 3, 0x13, []byte{3}, append(f.u64(42), tok...)},
			{"keep-alive", packetKeepAlive, 0x1234, 0x24, []byte{0x34, 0x12}, f.u64(0x0123456789abcdef)},
			{"payload", packetPayload, 0x123456, 0x35, []byte{0x56, 0x34, 0x12}, payload},
			{"disconnect", packetDisconnect, 9, 0x16, []byte{9}, nil},
		}
		for _, tc := range types {
			t.Run(f.format.String()+"/"+tc.name, func(t *testing.T) {
				nonce := append([]byte{0, 0, 0, 0}, f.u64(tc.seq)...)
				ad := append([]byte(version+f.protocol), tc.prefix)
				want := sealByHand(t, key, tc.prefix, tc.seqBytes, nonce, ad, tc.body)

				c, err := newPacketCipher(key, f.format, protocolID)
				if err != nil {
					t.Fatal(err)
				}
				got := c.appendPacket(nil, tc.typ, tc.seq, tc.body)
				if !bytes.Equal(got, want) {
					t.Fatalf("packet\n got % x\nwant % x", got, want)
				}

				h, err := readPacketHeader(want)
				if err != nil {
					t.Fatal(err)
				}
				if h.typ != tc.typ || h.sequence != tc.seq || h.prefix != tc.prefix || h.size != 1+len(tc.seqBytes) {
					t.Fatalf("header = %+v", h)
				}
				body, err := c.open(bytes.Clone(want), h)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(body, tc.body) {
					t.Fatalf("body = % x, want % x", body, tc.body)
				}
				if err := checkBodySize(h.typ, body); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// TestEncryptedPacketGolden pins one packet completely, so that a change in the AEAD wiring
// (nonce or associated data layout) cannot go unnoticed even if the hand-built helper and the
// encoder were changed together.
func TestEncryptedPacketGolden(t *testing.T) {
	t.Parallel()
	var key Key
	for i := range key {
		key[i] = byte(i + 1)
	}
	c, err := newPacketCipher(key, FormatLightyear017, 0x0102030405060708)
	if err != nil {
		t.Fatal(err)
	}
	got := hex.EncodeToString(c.appendPacket(nil, packetPayload, 1000, []byte("hi")))
	// prefix 0x25, sequence e8 03, 2 bytes of ciphertext, 16 bytes of tag.
	if len(got) != 2*(3+2+16) || got[:6] != "25e803" {
		t.Fatalf("golden packet has the wrong shape: %s", got)
	}
	aead, _ := chacha20poly1305.New(key[:])
	nonce := []byte{0, 0, 0, 0, 0xe8, 0x03, 0, 0, 0, 0, 0, 0}
	ad := []byte("NETCODE 1.02\x00\x08\x07\x06\x05\x04\x03\x02\x01\x25")
	want := hex.EncodeToString(aead.Seal([]byte{0x25, 0xe8, 0x03}, nonce, []byte("hi"), ad))
	if got != want {
		t.Fatalf("golden packet = %s, want %s", got, want)
	}
}

func TestReadPacketHeaderRejects(t *testing.T) {
	t.Parallel()
	valid := make([]byte, 30)
	valid[0] = 0x15
	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"17 bytes", valid[:17], errPacketSize},
		{"1301 bytes", append([]byte{0x15}, make([]byte, 1300)...), errPacketSize},
		{"type 7", append([]byte{0x17}, valid[1:]...), errPacketType},
		{"type 15", append([]byte{0x1f}, valid[1:]...), errPacketType},
		{"request prefix with sequence nibble", append([]byte{0x10}, valid[1:]...), errPacketType},
		{"0 sequence bytes", append([]byte{0x05}, valid[1:]...), errPacketSequence},
		{"9 sequence bytes", append([]byte{0x95}, valid[1:]...), errPacketSequence},
		{"8 sequence bytes but 24 long", append([]byte{0x85}, valid[1:24]...), errPacketSize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := readPacketHeader(tc.b); !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := readPacketHeader(valid[:18]); err != nil {
		t.Fatalf("18-byte packet rejected: %v", err)
	}
}

func TestOpenRejectsTampering(t *testing.T) {
	t.Parallel()
	key, other := Key{1}, Key{2}
	c, _ := newPacketCipher(key, FormatLightyear017, 7)
	pkt := c.appendPacket(nil, packetPayload, 5, []byte("payload"))
	tests := []struct {
		name   string
		cipher func() *packetCipher
		mutate func(b []byte)
	}{
		{"wrong key", func() *packetCipher { x, _ := newPacketCipher(other, FormatLightyear017, 7); return x }, func([]byte) {}},
		{"wrong protocol id", func() *packetCipher { x, _ := newPacketCipher(key, FormatLightyear017, 8); return x }, func([]byte) {}},
		{"wrong format", func() *packetCipher { x, _ := newPacketCipher(key, FormatLightyear020, 7); return x }, func([]byte) {}},
		{"type changed", func() *packetCipher { return c }, func(b []byte) { b[0] = 0x14 }},
		{"sequence changed", func() *packetCipher { return c }, func(b []byte) { b[1] = 6 }},
		{"ciphertext bit", func() *packetCipher { return c }, func(b []byte) { b[3] ^= 1 }},
		{"tag bit", func() *packetCipher { return c }, func(b []byte) { b[len(b)-1] ^= 0x80 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(pkt)
			tc.mutate(b)
			h, err := readPacketHeader(b)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tc.cipher().open(b, h); !errors.Is(err, errPacketAuth) {
				t.Fatalf("err = %v, want authentication failure", err)
			}
		})
	}
}

func TestCheckBodySize(t *testing.T) {
	t.Parallel()
	tests := []struct {
		typ packetType
		n   int
		ok  bool
	}{
		{packetDenied, 0, true}, {packetDenied, 1, true}, {packetDenied, 257, true}, {packetDenied, 258, false},
		{packetChallenge, 308, true}, {packetChallenge, 307, false}, {packetResponse, 308, true}, {packetResponse, 309, false},
		{packetKeepAlive, 8, true}, {packetKeepAlive, 0, false}, {packetKeepAlive, 9, false},
		{packetPayload, 1, true}, {packetPayload, 1200, true}, {packetPayload, 0, false}, {packetPayload, 1201, false},
		{packetDisconnect, 0, true}, {packetDisconnect, 1, false},
	}
	for _, tc := range tests {
		err := checkBodySize(tc.typ, make([]byte, tc.n))
		if (err == nil) != tc.ok {
			t.Errorf("checkBodySize(%s, %d) = %v, want ok=%v", tc.typ, tc.n, err, tc.ok)
		}
	}
}

func TestDeniedBody(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		body   []byte
		reason DeniedReason
		text   string
		err    bool
	}{
		{"standard empty body", nil, DeniedUnspecified, "", false},
		{"server full", []byte{0}, DeniedServerFull, "", false},
		{"banned", []byte{1}, DeniedBanned, "", false},
		{"invalid token", []byte{5}, DeniedInvalidToken, "", false},
		{"custom", []byte{6, 3, 'a', 'b', 'c'}, DeniedCustom, "abc", false},
		{"custom truncated", []byte{6, 5, 'a'}, 0, "", true},
		{"custom without length", []byte{6}, 0, "", true},
		{"custom not utf-8", []byte{6, 1, 0xff}, 0, "", true},
		{"unknown reason", []byte{7}, 0, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, text, err := readDeniedBody(tc.body)
			if (err != nil) != tc.err {
				t.Fatalf("err = %v, want error %v", err, tc.err)
			}
			if err == nil && (r != tc.reason || text != tc.text) {
				t.Fatalf("got %v %q, want %v %q", r, text, tc.reason, tc.text)
			}
		})
	}
	for r := DeniedServerFull; r <= DeniedInvalidToken; r++ {
		if got := appendDeniedBody(nil, r); !bytes.Equal(got, []byte{byte(r)}) {
			t.Errorf("appendDeniedBody(%v) = % x", r, got)
		}
	}
	if err := error(&DeniedError{Reason: DeniedBanned}); !errors.Is(err, ErrConnectionDenied) || err.Error() != "netcode: connection denied: banned" {
		t.Fatalf("DeniedError = %v", err)
	}
}

func TestChallengeToken(t *testing.T) {
	t.Parallel()
	for _, f := range []Format{FormatLightyear017, FormatLightyear020} {
		t.Run(f.String(), func(t *testing.T) {
			s, err := newChallengeSealer(f)
			if err != nil {
				t.Fatal(err)
			}
			var ud [UserDataBytes]byte
			for i := range ud {
				ud[i] = byte(i)
			}
			var tok [challengeTokenBytes]byte
			s.seal(&tok, 77, 0x0102030405060708, &ud)

			// The plaintext layout: client id (u64 in f's order) ‖ user data ‖ zeros to 284.
			nonce := make([]byte, 12)
			f.byteOrder().PutUint64(nonce[4:], 77)
			plain, err := s.aead.Open(nil, nonce, tok[:], nil)
			if err != nil {
				t.Fatal(err)
			}
			want := f.byteOrder().AppendUint64(nil, 0x0102030405060708)
			want = append(want, ud[:]...)
			want = append(want, make([]byte, 284-8-256)...)
			if !bytes.Equal(plain, want) {
				t.Fatalf("challenge plaintext = % x", plain)
			}

			var got [UserDataBytes]byte
			id, err := s.open(&tok, 77, &got)
			if err != nil || id != 0x0102030405060708 || got != ud {
				t.Fatalf("open = %#x, %v", id, err)
			}
			if _, err := s.open(&tok, 78, &got); !errors.Is(err, errPacketAuth) {
				t.Fatalf("wrong sequence: err = %v", err)
			}
			tok[10] ^= 1
			if _, err := s.open(&tok, 77, &got); !errors.Is(err, errPacketAuth) {
				t.Fatalf("tampered: err = %v", err)
			}
		})
	}
}
