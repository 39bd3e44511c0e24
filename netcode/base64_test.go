package netcode

import (
	"encoding/base64"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestBase64OneAllocation pins Base64 to the standard encoding of Bytes, made with one
// allocation (the text and the scratch space of the binary token behind it), for both formats
// and address lists of 1 and 32 entries.
func TestBase64OneAllocation(t *testing.T) {
	addrs := make([]netip.AddrPort, 32)
	for i := range addrs {
		addrs[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), uint16(5000+i))
	}
	addrs[7] = netip.MustParseAddrPort("[2001:db8::7]:7777")
	for _, f := range []Format{FormatLightyear017, FormatLightyear020} {
		for _, n := range []int{1, 32} {
			m := &Minter{Key: Key{9, 8, 7}, Format: f}
			tok, err := m.Mint(TokenParams{ProtocolID: 42, ClientID: 7, ServerAddrs: addrs[:n], ExpireSeconds: 30})
			if err != nil {
				t.Fatal(err)
			}
			want := base64.StdEncoding.EncodeToString(tok.Bytes())
			if got := tok.Base64(); got != want {
				t.Fatalf("format %v, %d addresses: Base64 differs from the encoding of Bytes", f, n)
			}
			if a := testing.AllocsPerRun(20, func() { _ = tok.Base64() }); a != 1 {
				t.Errorf("format %v, %d addresses: Base64 made %v allocations, want 1", f, n, a)
			}
		}
	}
}

// TestEncodeInPlace: the in-place encoder gives base64.StdEncoding's text for any bytes.
func TestEncodeInPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		raw := make([]byte, ConnectTokenBytes)
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		if i == 0 {
			clear(raw)
		}
		text := make([]byte, base64.StdEncoding.EncodedLen(ConnectTokenBytes))
		copy(text[len(text)-ConnectTokenBytes:], raw)
		encodeInPlace(text)
		if want := base64.StdEncoding.EncodeToString(raw); string(text) != want {
			t.Fatalf("case %d: encodeInPlace differs from base64.StdEncoding", i)
		}
	}
}
