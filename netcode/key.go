package netcode

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
)

// redacted is what every printed form of a Key shows instead of its bytes.
const redacted = "[REDACTED]"

// Key is a 32-byte symmetric key: the private key shared by the matchmaker and the game
// servers, or a per-connection client-to-server / server-to-client key.
//
// A Key never prints its bytes: String, GoString, Format (every fmt verb), LogValue (log/slog)
// and MarshalText (JSON, slog's JSONHandler) all produce "[REDACTED]", so a config struct
// holding a Key in an exported field can be logged with %v or %+v safely. (fmt cannot call
// methods on unexported fields: keep keys in exported fields, or give the struct its own
// String method.) Use Bytes-level access (k[:]) or AppendHex when a key must be written out
// on purpose.
type Key [KeyBytes]byte

// ParseKey parses a key in one of the forms an operator types:
//
//   - bevygap's form: 32 comma-separated decimal bytes, "1,2,3,...,32" (spaces and surrounding
//     brackets allowed, as in "[1, 2, ..., 32]");
//   - 64 hexadecimal characters (either case);
//   - base64 of 32 bytes, standard or URL alphabet, padded or not.
//
// Errors wrap ErrKey and never contain the input or any part of it.
func ParseKey(s string) (Key, error) {
	var k Key
	s = strings.TrimSpace(s)
	if s == "" {
		return k, fmt.Errorf("%w: empty", ErrKey)
	}
	if strings.Contains(s, ",") {
		return parseDecimalKey(s)
	}
	if len(s) == 2*KeyBytes {
		if _, err := hex.Decode(k[:], []byte(s)); err == nil {
			return k, nil
		}
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if enc.DecodedLen(len(s)) < KeyBytes || enc.DecodedLen(len(s)) > KeyBytes+2 {
			continue
		}
		b, err := enc.DecodeString(s)
		if err == nil && len(b) == KeyBytes {
			copy(k[:], b)
			clear(b)
			return k, nil
		}
		clear(b)
	}
	return Key{}, fmt.Errorf("%w: want 32 comma-separated decimal bytes, 64 hex characters, or base64 of 32 bytes (got %d characters)", ErrKey, len(s))
}

// parseDecimalKey parses "1,2,...,32", optionally inside [ ] and with spaces.
func parseDecimalKey(s string) (Key, error) {
	var k Key
	s = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	n := 0
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if n >= KeyBytes {
			return Key{}, fmt.Errorf("%w: more than %d comma-separated bytes", ErrKey, KeyBytes)
		}
		if part == "" || len(part) > 3 {
			return Key{}, fmt.Errorf("%w: element %d is not a byte (0-255)", ErrKey, n+1)
		}
		v := 0
		for i := 0; i < len(part); i++ {
			c := part[i]
			if c < '0' || c > '9' {
				return Key{}, fmt.Errorf("%w: element %d is not a byte (0-255)", ErrKey, n+1)
			}
			v = v*10 + int(c-'0')
		}
		if v > 255 {
			return Key{}, fmt.Errorf("%w: element %d is not a byte (0-255)", ErrKey, n+1)
		}
		k[n] = byte(v)
		n++
	}
	if n != KeyBytes {
		return Key{}, fmt.Errorf("%w: %d comma-separated bytes, want %d", ErrKey, n, KeyBytes)
	}
	return k, nil
}

// GenerateKey returns a new random key from crypto/rand.
func GenerateKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("netcode: generate key: %w", err)
	}
	return k, nil
}

// IsZero reports whether every byte of k is zero (bevygap's default key when none is given).
func (k Key) IsZero() bool {
	var zero Key
	return subtle.ConstantTimeCompare(k[:], zero[:]) == 1
}

// Equal reports whether k and o are the same key, in constant time.
func (k Key) Equal(o Key) bool { return subtle.ConstantTimeCompare(k[:], o[:]) == 1 }

// ValidateKey is the key policy every caller that takes a private key from an operator
// applies: an all-zero key (what bevygap silently uses when no key is configured, so anyone
// can mint tokens for your servers) is refused with ErrZeroKey unless allowZero is set, which
// only dev mode should do.
func ValidateKey(k Key, allowZero bool) error {
	if !allowZero && k.IsZero() {
		return fmt.Errorf("%w is refused outside dev mode (it is bevygap's default when no key is set, so anyone could mint tokens for it)", ErrZeroKey)
	}
	return nil
}

// String returns "[REDACTED]".
func (k Key) String() string { return redacted }

// GoString returns "[REDACTED]", so %#v does not print the bytes either.
func (k Key) GoString() string { return redacted }

// Format implements fmt.Formatter: every verb (%v, %x, %d, %s, …) prints "[REDACTED]".
func (k Key) Format(s fmt.State, verb rune) { _, _ = s.Write([]byte(redacted)) }

// LogValue implements slog.LogValuer: a Key logs as "[REDACTED]".
func (k Key) LogValue() slog.Value { return slog.StringValue(redacted) }

// MarshalText returns "[REDACTED]", so JSON and text encoders never write the bytes. It does
// not round-trip: UnmarshalText of "[REDACTED]" fails with ErrKey rather than yield a key.
func (k Key) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// UnmarshalText parses a key with ParseKey, so config files and env decoders accept every
// form ParseKey does.
func (k *Key) UnmarshalText(b []byte) error {
	v, err := ParseKey(string(b))
	if err != nil {
		return err
	}
	*k = v
	return nil
}

// AppendHex appends the 64 lowercase hex characters of k to b. It exists for the rare place
// that must write a key out on purpose (e.g. generating a config); never log its result.
func (k Key) AppendHex(b []byte) []byte { return hex.AppendEncode(b, k[:]) }
