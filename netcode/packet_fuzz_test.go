package netcode

import (
	"bytes"
	"testing"
)

// FuzzPacketReaders runs every packet decoder on arbitrary bytes, in both formats: none may
// panic, and whatever decodes must be consistent with the input.
func FuzzPacketReaders(f *testing.F) {
	c, _ := newPacketCipher(Key{1}, FormatLightyear017, testProtocolID)
	f.Add(c.appendPacket(nil, packetPayload, 1000, []byte("payload")))
	f.Add(c.appendPacket(nil, packetDenied, 1<<63, []byte{6, 2, 'h', 'i'}))
	f.Add(appendRequestPacket(nil, &ConnectToken{ProtocolID: testProtocolID}))
	f.Add([]byte{0x25, 0xe8, 0x03})
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, format := range []Format{FormatLightyear017, FormatLightyear020} {
			if p, err := readRequestPacket(b, format); err == nil {
				if len(b) != requestPacketBytes || !bytes.Equal(p.sealed[:], b[requestPacketBytes-PrivateTokenBytes:]) {
					t.Fatal("request packet decoded from the wrong bytes")
				}
			}
		}
		if h, err := readPacketHeader(b); err == nil {
			if h.size < 2 || h.size > 9 || len(b) < h.size+macBytes || h.typ == packetRequest || h.typ >= numPacketTypes {
				t.Fatalf("accepted header %+v for %d bytes", h, len(b))
			}
			if body, err := c.open(bytes.Clone(b), h); err == nil {
				_ = checkBodySize(h.typ, body)
			}
		}
		if r, text, err := readDeniedBody(b); err == nil && len(text) > 255 {
			t.Fatalf("denied %v with %d bytes of text", r, len(text))
		}
	})
}
