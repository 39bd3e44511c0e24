package netcode

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"math"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// firstVector returns a minted-and-encoded copy of the first vector and its key.
func firstVector(t *testing.T) ([]byte, decodedVector, tokenVector) {
	t.Helper()
	v := loadVectors(t)[0]
	d := v.decode(t)
	return bytes.Clone(d.token), d, v
}

func TestDecodeErrors(t *testing.T) {
	t.Parallel()
	good, d, _ := firstVector(t)
	mutate := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	tests := []struct {
		name  string
		token []byte
		want  error
	}{
		{"empty", nil, ErrTokenSize},
		{"short", good[:ConnectTokenBytes-1], ErrTokenSize},
		{"long", append(bytes.Clone(good), 0), ErrTokenSize},
		{"bad version", mutate(func(b []byte) []byte { b[11] = '3'; return b }), ErrVersion},
		{"zero addresses", mutate(func(b []byte) []byte { b[offAddrCount] = 0; return b }), ErrAddress},
		{"33 addresses", mutate(func(b []byte) []byte { b[offAddrCount] = 33; return b }), ErrAddress},
		{"huge address count", mutate(func(b []byte) []byte { b[offAddrCount+3] = 0x80; return b }), ErrAddress},
		{"address type 0", mutate(func(b []byte) []byte { b[offAddrCount+4] = 0; return b }), ErrAddress},
		{"address type 3", mutate(func(b []byte) []byte { b[offAddrCount+4] = 3; return b }), ErrAddress},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DecodeConnectToken(tt.token, d.format)
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	if _, err := DecodeConnectToken(good, Format(7)); !errors.Is(err, ErrFormat) {
		t.Fatalf("undefined format: got %v", err)
	}
}

func TestDecodeBase64(t *testing.T) {
	t.Parallel()
	good, d, v := firstVector(t)
	tests := []struct {
		name string
		in   string
		want error // nil: must decode to good
	}{
		{"std padded", v.TokenBase64, nil},
		{"surrounding whitespace", "  " + v.TokenBase64 + "\n", nil},
		{"raw std", base64.RawStdEncoding.EncodeToString(good), nil},
		{"url", base64.URLEncoding.EncodeToString(good), nil},
		{"not base64", "this is not a token!", nil},
		{"short", base64.StdEncoding.EncodeToString(good[:100]), ErrTokenSize},
		{"long", base64.StdEncoding.EncodeToString(append(bytes.Clone(good), good...)), ErrTokenSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := DecodeConnectTokenBase64(tt.in, d.format)
			switch {
			case tt.name == "not base64":
				if err == nil || !strings.Contains(err.Error(), "not base64") {
					t.Fatalf("got %v, want a not-base64 error", err)
				}
			case tt.want != nil:
				if !errors.Is(err, tt.want) {
					t.Fatalf("got %v, want %v", err, tt.want)
				}
			default:
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(tok.Bytes(), good) {
					t.Fatal("decoded token differs")
				}
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	_, d, v := firstVector(t)
	tok, err := DecodeConnectTokenBase64(v.TokenBase64, d.format)
	if err != nil {
		t.Fatal(err)
	}
	wrongKey := d.key
	wrongKey[31] ^= 1
	tests := []struct {
		name   string
		key    Key
		mutate func(tk *ConnectToken)
	}{
		{"wrong key", wrongKey, func(*ConnectToken) {}},
		{"zero key", Key{}, func(*ConnectToken) {}},
		{"tampered ciphertext", d.key, func(tk *ConnectToken) { tk.PrivateData[500] ^= 0x40 }},
		{"tampered tag", d.key, func(tk *ConnectToken) { tk.PrivateData[PrivateTokenBytes-1] ^= 1 }},
		{"tampered nonce", d.key, func(tk *ConnectToken) { tk.Nonce[0] ^= 1 }},
		{"changed protocol id", d.key, func(tk *ConnectToken) { tk.ProtocolID++ }},
		{"extended expiry", d.key, func(tk *ConnectToken) { tk.ExpireTimestamp += 3600 }},
		{"other format", d.key, func(tk *ConnectToken) { tk.Format = FormatLightyear020 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tk := *tok
			tt.mutate(&tk)
			p, err := tk.Open(tt.key)
			if !errors.Is(err, ErrAuth) || p != nil {
				t.Fatalf("got %v, %v; want ErrAuth", p, err)
			}
		})
	}
	if _, err := tok.Open(d.key); err != nil {
		t.Fatalf("the untouched token must still open: %v", err)
	}
}

// TestOpenBadPrivateAddresses seals private parts with bad address lists under a valid key:
// authentication passes, decoding must fail with ErrAddress and not panic.
func TestOpenBadPrivateAddresses(t *testing.T) {
	t.Parallel()
	key := Key{1, 2, 3}
	tests := []struct {
		name  string
		plain func(b []byte)
	}{
		{"zero count", func(b []byte) {}},
		{"33 addresses", func(b []byte) { b[privOffAddrCount] = 33 }},
		{"unknown type", func(b []byte) { b[privOffAddrCount] = 1; b[privOffAddrCount+4] = 9 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plain := make([]byte, privatePlainBytes)
			tt.plain(plain)
			var nonce [NonceBytes]byte
			var ad [associatedDataBytes]byte
			putAssociatedData(&ad, 1, 2, FormatLightyear017)
			m := &Minter{Key: key}
			aead, err := m.cipher()
			if err != nil {
				t.Fatal(err)
			}
			var sealed [PrivateTokenBytes]byte
			aead.aead.Seal(sealed[:0], nonce[:], plain, ad[:])
			if _, err := OpenPrivateToken(&sealed, &nonce, 1, 2, key, FormatLightyear017); !errors.Is(err, ErrAddress) {
				t.Fatalf("got %v, want ErrAddress", err)
			}
		})
	}
}

func TestMintParams(t *testing.T) {
	t.Parallel()
	key := Key{9}
	now := time.Unix(1_700_000_000, 0)
	a4 := netip.MustParseAddrPort("127.0.0.1:5000")
	a6 := netip.MustParseAddrPort("[::1]:5001")
	mapped := netip.MustParseAddrPort("[::ffff:10.1.2.3]:5002")
	many := make([]netip.AddrPort, MaxServersPerConnect)
	for i := range many {
		many[i] = netip.AddrPortFrom(netip.MustParseAddr("2001:db8::1"), uint16(i))
	}
	tests := []struct {
		name        string
		p           TokenParams
		wantErr     error
		wantExpire  uint64
		wantTimeout int32
	}{
		{"defaults", TokenParams{ServerAddrs: []netip.AddrPort{a4}}, nil, 1_700_000_030, 15},
		{"explicit", TokenParams{ServerAddrs: []netip.AddrPort{a4}, ExpireSeconds: 60, TimeoutSeconds: 5}, nil, 1_700_000_060, 5},
		{"never", TokenParams{ServerAddrs: []netip.AddrPort{a6}, ExpireSeconds: -5, TimeoutSeconds: -1}, nil, math.MaxUint64, -1},
		{"huge expiry", TokenParams{ServerAddrs: []netip.AddrPort{a4}, ExpireSeconds: math.MaxInt64}, nil, 1_700_000_000 + math.MaxInt64, 15},
		{"32 IPv6", TokenParams{ServerAddrs: many, InternalAddrs: many}, nil, 1_700_000_030, 15},
		{"mapped", TokenParams{ServerAddrs: []netip.AddrPort{mapped, a4}}, nil, 1_700_000_030, 15},
		{"no address", TokenParams{}, ErrAddress, 0, 0},
		{"33 addresses", TokenParams{ServerAddrs: append(many, a4)}, ErrAddress, 0, 0},
		{"invalid address", TokenParams{ServerAddrs: []netip.AddrPort{{}}}, ErrAddress, 0, 0},
		{"zoned address", TokenParams{ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort("[fe80::1%eth0]:1")}}, ErrAddress, 0, 0},
		{"33 internal", TokenParams{ServerAddrs: []netip.AddrPort{a4}, InternalAddrs: append(many, a4)}, ErrAddress, 0, 0},
	}
	for _, f := range []Format{FormatLightyear017, FormatLightyear020} {
		for _, tt := range tests {
			t.Run(f.String()+"/"+tt.name, func(t *testing.T) {
				m := &Minter{Key: key, Format: f, Now: func() time.Time { return now }}
				tt.p.ClientID = 42
				tt.p.ProtocolID = 7
				tt.p.UserData[255] = 0xee
				tok, err := m.Mint(tt.p)
				if tt.wantErr != nil {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("got %v, want %v", err, tt.wantErr)
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				if tok.ExpireTimestamp != tt.wantExpire || tok.TimeoutSeconds != tt.wantTimeout || tok.CreateTimestamp != 1_700_000_000 {
					t.Fatalf("create %d expire %d timeout %d", tok.CreateTimestamp, tok.ExpireTimestamp, tok.TimeoutSeconds)
				}
				back, err := DecodeConnectToken(tok.Bytes(), f)
				if err != nil {
					t.Fatal(err)
				}
				if !equalAddrs(back.ServerAddrs, tt.p.ServerAddrs) {
					t.Fatalf("addresses %v, want %v", back.ServerAddrs, tt.p.ServerAddrs)
				}
				priv, err := back.Open(key)
				if err != nil {
					t.Fatal(err)
				}
				want := tt.p.ServerAddrs
				if len(tt.p.InternalAddrs) > 0 {
					want = tt.p.InternalAddrs
				}
				if priv.ClientID != 42 || priv.UserData != tt.p.UserData || !equalAddrs(priv.ServerAddrs, want) ||
					priv.ClientToServerKey != tok.ClientToServerKey || priv.ServerToClientKey != tok.ServerToClientKey {
					t.Fatalf("private part %+v", priv)
				}
				if err := back.Check(7, now); err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

func TestMintRandomness(t *testing.T) {
	t.Parallel()
	m := &Minter{Key: Key{1}}
	p := TokenParams{ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}}
	a, err := m.Mint(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Mint(p)
	if err != nil {
		t.Fatal(err)
	}
	if a.Nonce == b.Nonce || a.ClientToServerKey == b.ClientToServerKey || a.ServerToClientKey == b.ServerToClientKey ||
		a.ClientToServerKey == a.ServerToClientKey {
		t.Fatal("nonce and keys must be fresh random values for every token")
	}
	m.Rand = iotest.ErrReader(io.ErrUnexpectedEOF)
	if _, err := m.Mint(p); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("failing random source: got %v", err)
	}
	m.Rand = bytes.NewReader(make([]byte, mintRandomBytes-1))
	if _, err := m.Mint(p); err == nil {
		t.Fatal("short random source must fail")
	}
	m.Rand, m.Format = nil, Format(9)
	if _, err := m.Mint(p); !errors.Is(err, ErrFormat) {
		t.Fatalf("undefined format: got %v", err)
	}
}

// TestMinterKeyChange checks that the cached cipher follows a changed key.
func TestMinterKeyChange(t *testing.T) {
	t.Parallel()
	m := &Minter{Key: Key{1}}
	p := TokenParams{ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}}
	if _, err := m.Mint(p); err != nil {
		t.Fatal(err)
	}
	m.Key = Key{2}
	tok, err := m.Mint(p)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Open(Key{2}); err != nil {
		t.Fatalf("token must be sealed with the new key: %v", err)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	tok := &ConnectToken{ProtocolID: 1982, ExpireTimestamp: 1000}
	tests := []struct {
		name     string
		tok      *ConnectToken
		protocol uint64
		now      int64
		want     error
	}{
		{"valid", tok, 1982, 999, nil},
		{"expires at its timestamp", tok, 1982, 1000, ErrExpired},
		{"expired", tok, 1982, 5000, ErrExpired},
		{"protocol", tok, 1983, 999, ErrProtocolID},
		{"never", &ConnectToken{ProtocolID: 1, ExpireTimestamp: math.MaxUint64}, 1, math.MaxInt64 / 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.tok.Check(tt.protocol, time.Unix(tt.now, 0))
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestBytesOfUnencodableToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		tok  ConnectToken
	}{
		{"no addresses", ConnectToken{}},
		{"zero address", ConnectToken{ServerAddrs: []netip.AddrPort{{}}}},
		{"undefined format", ConnectToken{Format: 3, ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort("1.2.3.4:5")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.tok.MarshalBinary(); err == nil {
				t.Fatal("MarshalBinary must fail")
			}
			if tt.tok.Bytes() != nil || tt.tok.Base64() != "" {
				t.Fatal("Bytes must be nil and Base64 empty")
			}
		})
	}
}

// TestMintConcurrent mints from one Minter on several goroutines (run with -race): the cached
// cipher and the random pool are shared, every token must open and be unique.
func TestMintConcurrent(t *testing.T) {
	t.Parallel()
	m := &Minter{Key: Key{7}}
	p := TokenParams{ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}}
	const workers, each = 4, 50 // 200 tokens: several refills of the random pool
	results := make(chan *ConnectToken, workers*each)
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for range each {
				tok, err := m.Mint(p)
				if err != nil {
					errs <- err
					return
				}
				results <- tok
			}
			errs <- nil
		}()
	}
	for range workers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(results)
	seen := map[[NonceBytes]byte]bool{}
	for tok := range results {
		if seen[tok.Nonce] {
			t.Fatal("nonce reused")
		}
		seen[tok.Nonce] = true
		if _, err := tok.Open(m.Key); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d tokens", len(seen))
	}
}
