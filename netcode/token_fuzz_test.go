package netcode

import (
	"bytes"
	"encoding/base64"
	"errors"
	"testing"
)

// Run a fuzzer with, e.g.:
//
//	go test -run '^$' -fuzz '^FuzzDecodeConnectToken$' -fuzztime 60s -fuzzminimizetime 3s ./netcode/
//
// (-fuzzminimizetime keeps the minimizer from spending a minute on each new 2048-byte input.)
// The seeds, which include every known-answer vector, run in every plain "go test".

// addVectorSeeds seeds f with every known-answer vector and a few mutations of it.
func addVectorSeeds(f *testing.F, add func(tok []byte, d decodedVector)) {
	for _, v := range loadVectors(f) {
		d := v.decode(f)
		add(d.token, d)
	}
}

// FuzzDecodeConnectToken: decoding never panics; whatever decodes re-encodes to a token that
// decodes to the same fields.
func FuzzDecodeConnectToken(f *testing.F) {
	addVectorSeeds(f, func(tok []byte, d decodedVector) {
		f.Add(tok, uint8(d.format))
		f.Add(tok[:100], uint8(d.format))
	})
	f.Fuzz(func(t *testing.T, b []byte, format uint8) {
		fm := Format(format % 3) // includes one undefined value
		tok, err := DecodeConnectToken(b, fm)
		if _, err64 := DecodeConnectTokenBase64(base64.StdEncoding.EncodeToString(b), fm); (err == nil) != (err64 == nil) {
			t.Fatalf("binary and base64 decoding disagree: %v vs %v", err, err64)
		}
		if err != nil {
			if !errors.Is(err, ErrTokenSize) && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrAddress) && !errors.Is(err, ErrFormat) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		out := tok.Bytes()
		if len(out) != ConnectTokenBytes {
			t.Fatalf("re-encoded %d bytes", len(out))
		}
		back, err := DecodeConnectToken(out, fm)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(back.Bytes(), out) {
			t.Fatal("decode/encode is not stable")
		}
		// Opening with any key must not panic either.
		if _, err := tok.Open(Key{1}); err != nil && !errors.Is(err, ErrAuth) && !errors.Is(err, ErrAddress) {
			t.Fatalf("unexpected open error: %v", err)
		}
	})
}

// FuzzOpenPrivateToken: opening arbitrary sealed bytes, nonces and associated data never
// panics and only ever succeeds for the untouched vector.
func FuzzOpenPrivateToken(f *testing.F) {
	addVectorSeeds(f, func(tok []byte, d decodedVector) {
		t, err := DecodeConnectToken(tok, d.format)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(t.PrivateData[:], t.Nonce[:], t.ProtocolID, t.ExpireTimestamp, d.key[:], uint8(d.format))
	})
	f.Fuzz(func(t *testing.T, sealed, nonce []byte, protocolID, expire uint64, key []byte, format uint8) {
		var s [PrivateTokenBytes]byte
		var n [NonceBytes]byte
		var k Key
		copy(s[:], sealed)
		copy(n[:], nonce)
		copy(k[:], key)
		p, err := OpenPrivateToken(&s, &n, protocolID, expire, k, Format(format%3))
		if err != nil {
			if !errors.Is(err, ErrAuth) && !errors.Is(err, ErrAddress) && !errors.Is(err, ErrFormat) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if len(p.ServerAddrs) == 0 || len(p.ServerAddrs) > MaxServersPerConnect {
			t.Fatalf("opened with %d addresses", len(p.ServerAddrs))
		}
	})
}

// FuzzParseKey: parsing never panics and errors never repeat the input.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{"1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32",
		"0000000000000000000000000000000000000000000000000000000000000000", "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, err := ParseKey(s)
		if err != nil && len(s) >= 8 && bytes.Contains([]byte(err.Error()), []byte(s)) {
			t.Fatalf("error repeats the input: %v", err)
		}
	})
}
