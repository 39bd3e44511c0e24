package netcode

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"
)

// tokenVector is one known-answer vector of testdata/netcode-vectors.json, a verbatim copy of
// the shared contract file computed by two independent implementations (not by this package).
type tokenVector struct {
	Name              string   `json:"name"`
	PrivateKey        string   `json:"private_key"`
	ProtocolID        uint64   `json:"protocol_id"`
	ClientID          uint64   `json:"client_id"`
	CreateTimestamp   uint64   `json:"create_timestamp"`
	ExpireTimestamp   uint64   `json:"expire_timestamp"`
	TimeoutSeconds    int32    `json:"timeout_seconds"`
	Nonce             string   `json:"nonce"`
	C2SKey            string   `json:"c2s_key"`
	S2CKey            string   `json:"s2c_key"`
	Addresses         []string `json:"addresses"`
	InternalAddresses []string `json:"internal_addresses"`
	UserData          string   `json:"user_data"`
	Format            string   `json:"format"`
	TokenBase64       string   `json:"token_base64"`
}

// decoded holds the typed inputs of a vector.
type decodedVector struct {
	key      Key
	format   Format
	nonce    [NonceBytes]byte
	c2s, s2c Key
	addrs    []netip.AddrPort
	internal []netip.AddrPort
	userData [UserDataBytes]byte
	token    []byte
}

func loadVectors(tb testing.TB) []tokenVector {
	tb.Helper()
	raw, err := os.ReadFile("testdata/netcode-vectors.json")
	if err != nil {
		tb.Fatal(err)
	}
	var vs []tokenVector
	if err := json.Unmarshal(raw, &vs); err != nil {
		tb.Fatal(err)
	}
	if len(vs) == 0 {
		tb.Fatal("no vectors")
	}
	return vs
}

func mustHex(tb testing.TB, s string, n int) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != n {
		tb.Fatalf("bad hex %q (want %d bytes): %v", s, n, err)
	}
	return b
}

func parseAddrs(tb testing.TB, ss []string) []netip.AddrPort {
	tb.Helper()
	var out []netip.AddrPort
	for _, s := range ss {
		a, err := netip.ParseAddrPort(s)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, a)
	}
	return out
}

func (v tokenVector) decode(tb testing.TB) decodedVector {
	tb.Helper()
	var d decodedVector
	var err error
	if d.key, err = ParseKey(v.PrivateKey); err != nil {
		tb.Fatal(err)
	}
	if d.format, err = ParseFormat(v.Format); err != nil {
		tb.Fatal(err)
	}
	copy(d.nonce[:], mustHex(tb, v.Nonce, NonceBytes))
	copy(d.c2s[:], mustHex(tb, v.C2SKey, KeyBytes))
	copy(d.s2c[:], mustHex(tb, v.S2CKey, KeyBytes))
	if v.UserData != "" {
		copy(d.userData[:], mustHex(tb, v.UserData, UserDataBytes))
	}
	d.addrs = parseAddrs(tb, v.Addresses)
	d.internal = parseAddrs(tb, v.InternalAddresses)
	if d.token, err = base64.StdEncoding.DecodeString(v.TokenBase64); err != nil {
		tb.Fatal(err)
	}
	return d
}

// params returns the Minter and TokenParams that must reproduce v.
func (v tokenVector) minter(tb testing.TB) (*Minter, TokenParams, decodedVector) {
	tb.Helper()
	d := v.decode(tb)
	random := append(append(append([]byte(nil), d.nonce[:]...), d.c2s[:]...), d.s2c[:]...)
	m := &Minter{
		Key:    d.key,
		Format: d.format,
		Now:    func() time.Time { return time.Unix(int64(v.CreateTimestamp), 0) },
		Rand:   bytes.NewReader(random),
	}
	p := TokenParams{
		ProtocolID:     v.ProtocolID,
		ClientID:       v.ClientID,
		ServerAddrs:    d.addrs,
		InternalAddrs:  d.internal,
		TimeoutSeconds: v.TimeoutSeconds,
		UserData:       d.userData,
	}
	switch {
	case v.ExpireTimestamp == ^uint64(0):
		p.ExpireSeconds = -1
	default:
		p.ExpireSeconds = int64(v.ExpireTimestamp - v.CreateTimestamp)
	}
	return m, p, d
}

func TestVectorsMint(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			m, p, d := v.minter(t)
			tok, err := m.Mint(p)
			if err != nil {
				t.Fatal(err)
			}
			got := tok.Bytes()
			if !bytes.Equal(got, d.token) {
				for i := range got {
					if got[i] != d.token[i] {
						t.Fatalf("token differs from vector at byte %d: got %02x want %02x", i, got[i], d.token[i])
					}
				}
			}
			if s := tok.Base64(); s != v.TokenBase64 {
				t.Fatalf("Base64 differs from vector")
			}
		})
	}
}

// TestVectorsMintInto reproduces every vector with MintInto into a token that already holds
// another token (it must be overwritten completely) and encodes it with AppendBase64.
func TestVectorsMintInto(t *testing.T) {
	t.Parallel()
	vs := loadVectors(t)
	for _, v := range vs {
		t.Run(v.Name, func(t *testing.T) {
			// Start from a dirty token: the last vector, minted with its own inputs.
			om, op, _ := vs[len(vs)-1].minter(t)
			var tok ConnectToken
			if err := om.MintInto(&tok, op); err != nil {
				t.Fatal(err)
			}
			m, p, d := v.minter(t)
			if err := m.MintInto(&tok, p); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(tok.Bytes(), d.token) {
				t.Fatal("MintInto differs from vector")
			}
			prefix := []byte("token=")
			got, err := tok.AppendBase64(prefix)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != "token="+v.TokenBase64 {
				t.Fatal("AppendBase64 differs from vector")
			}
		})
	}
}

func TestMintIntoAllocations(t *testing.T) {
	m := &Minter{Key: Key{1, 2, 3}}
	p := TokenParams{ProtocolID: 1982, ClientID: 7, ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort("203.0.113.7:31500")}}
	var tok ConnectToken
	buf := make([]byte, 0, AppendBase64Scratch)
	allocs := testing.AllocsPerRun(100, func() {
		if err := m.MintInto(&tok, p); err != nil {
			t.Fatal(err)
		}
		if _, err := tok.AppendBase64(buf[:0]); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("MintInto + AppendBase64 allocate %.1f times per token, want 0", allocs)
	}
	if allocs := testing.AllocsPerRun(100, func() { _, _ = m.Mint(p) }); allocs != 1 {
		t.Fatalf("Mint allocates %.1f times, want 1 (the token)", allocs)
	}
}

func TestMintIntoErrorsLeaveNoKeys(t *testing.T) {
	t.Parallel()
	m := &Minter{Key: Key{1, 2, 3}, Rand: bytes.NewReader(make([]byte, 30))} // too short: fails in the keys
	var tok ConnectToken
	tok.ClientToServerKey = Key{9}
	err := m.MintInto(&tok, TokenParams{ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort("1.2.3.4:5")}})
	if err == nil {
		t.Fatal("short random source accepted")
	}
	if !tok.ClientToServerKey.IsZero() || !tok.ServerToClientKey.IsZero() || tok.Nonce != [NonceBytes]byte{} {
		t.Fatal("a failed MintInto left key material in the token")
	}
	if _, err := (&ConnectToken{}).AppendBase64(nil); err == nil {
		t.Fatal("AppendBase64 of an empty token succeeded")
	}
}

func TestVectorsDecodeAndOpen(t *testing.T) {
	t.Parallel()
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			d := v.decode(t)
			tok, err := DecodeConnectTokenBase64(v.TokenBase64, d.format)
			if err != nil {
				t.Fatal(err)
			}
			if tok.Format != d.format || tok.ProtocolID != v.ProtocolID ||
				tok.CreateTimestamp != v.CreateTimestamp || tok.ExpireTimestamp != v.ExpireTimestamp ||
				tok.TimeoutSeconds != v.TimeoutSeconds || tok.Nonce != d.nonce ||
				tok.ClientToServerKey != d.c2s || tok.ServerToClientKey != d.s2c {
				t.Fatalf("public fields differ from vector inputs: %+v", tok)
			}
			if !equalAddrs(tok.ServerAddrs, d.addrs) {
				t.Fatalf("public addresses %v, want %v", tok.ServerAddrs, d.addrs)
			}
			if !bytes.Equal(tok.Bytes(), d.token) {
				t.Fatal("re-encoding the decoded token does not give the vector bytes")
			}
			priv, err := tok.Open(d.key)
			if err != nil {
				t.Fatal(err)
			}
			wantPriv := d.addrs
			if len(d.internal) > 0 {
				wantPriv = d.internal
			}
			if priv.ClientID != v.ClientID || priv.TimeoutSeconds != v.TimeoutSeconds ||
				priv.ClientToServerKey != d.c2s || priv.ServerToClientKey != d.s2c ||
				priv.UserData != d.userData || !equalAddrs(priv.ServerAddrs, wantPriv) {
				t.Fatalf("private fields differ from vector inputs: %+v", priv)
			}

			// The other byte order must not open it: the associated data differs.
			other := FormatLightyear020
			if d.format == FormatLightyear020 {
				other = FormatLightyear017
			}
			if _, err := OpenPrivateToken(&tok.PrivateData, &tok.Nonce, tok.ProtocolID, tok.ExpireTimestamp, d.key, other); !errors.Is(err, ErrAuth) {
				t.Fatalf("open in the other format: got %v, want ErrAuth", err)
			}
		})
	}
}

func equalAddrs(a, b []netip.AddrPort) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
