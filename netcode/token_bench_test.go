package netcode

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// The benchmarks below are meant to run together (go test -bench 'Mint|Seal' -benchmem):
// minting a token must cost at most 1.5x a bare XChaCha20-Poly1305 seal of the 1008-byte private
// part, with no allocation beyond the output. MintInto (the output is the caller's token) is the
// path held to that; Mint adds the allocation of the token itself and its garbage collection.

// BenchmarkSealBare is the floor: one seal of 1008 bytes with a prepared cipher and buffer.
func BenchmarkSealBare(b *testing.B) {
	key := Key{1, 2, 3}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		b.Fatal(err)
	}
	nonce := make([]byte, NonceBytes)
	ad := make([]byte, associatedDataBytes)
	buf := make([]byte, PrivateTokenBytes)
	b.SetBytes(privatePlainBytes)
	b.ReportAllocs()
	for b.Loop() {
		aead.Seal(buf[:0], nonce, buf[:privatePlainBytes], ad)
	}
}

// BenchmarkSealBareNewX is the same seal with the cipher built each time, as a naive minter does.
func BenchmarkSealBareNewX(b *testing.B) {
	key := Key{1, 2, 3}
	nonce := make([]byte, NonceBytes)
	ad := make([]byte, associatedDataBytes)
	buf := make([]byte, PrivateTokenBytes)
	b.SetBytes(privatePlainBytes)
	b.ReportAllocs()
	for b.Loop() {
		aead, err := chacha20poly1305.NewX(key[:])
		if err != nil {
			b.Fatal(err)
		}
		aead.Seal(buf[:0], nonce, buf[:privatePlainBytes], ad)
	}
}

func benchParams() TokenParams {
	return TokenParams{
		ProtocolID:  1982,
		ClientID:    0x0123456789abcdef,
		ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.7:31500")},
	}
}

// BenchmarkMint mints a token (the output: one allocation) with crypto/rand and the real clock.
func BenchmarkMint(b *testing.B) {
	m := &Minter{Key: Key{1, 2, 3}}
	p := benchParams()
	b.SetBytes(privatePlainBytes)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Mint(p); err != nil {
			b.Fatal(err)
		}
	}
}

// zeroReader is a free random source, to show what Mint costs apart from crypto/rand.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// BenchmarkMintInto mints into a reused token, as a service minting from a pool does: no
// allocation at all, crypto/rand and the real clock.
func BenchmarkMintInto(b *testing.B) {
	m := &Minter{Key: Key{1, 2, 3}}
	p := benchParams()
	var tok ConnectToken
	b.SetBytes(privatePlainBytes)
	b.ReportAllocs()
	for b.Loop() {
		if err := m.MintInto(&tok, p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMintNoRand mints with a free random source and a fixed clock.
func BenchmarkMintNoRand(b *testing.B) {
	now := time.Unix(1764147600, 0)
	m := &Minter{Key: Key{1, 2, 3}, Rand: zeroReader{}, Now: func() time.Time { return now }}
	p := benchParams()
	b.SetBytes(privatePlainBytes)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Mint(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMintBase64 is the matchmaker's whole path: mint, encode, base64.
func BenchmarkMintBase64(b *testing.B) {
	m := &Minter{Key: Key{1, 2, 3}}
	p := benchParams()
	b.ReportAllocs()
	for b.Loop() {
		t, err := m.Mint(p)
		if err != nil {
			b.Fatal(err)
		}
		_ = t.Base64()
	}
}

// BenchmarkOpen opens a token's private part, as a server does for each connection request.
func BenchmarkOpen(b *testing.B) {
	m := &Minter{Key: Key{1, 2, 3}}
	t, err := m.Mint(benchParams())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := t.Open(m.Key); err != nil {
			b.Fatal(err)
		}
	}
}
