package netcode

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
)

// secretKey is a key whose every printed form is easy to spot.
var secretKey = Key{0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xba, 0xbe, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,
	0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09}

// leaks reports whether s shows secretKey in any common textual form.
func leaks(s string) bool {
	forms := []string{
		hex.EncodeToString(secretKey[:]), strings.ToUpper(hex.EncodeToString(secretKey[:])),
		base64.StdEncoding.EncodeToString(secretKey[:]), base64.RawURLEncoding.EncodeToString(secretKey[:]),
		"222, 173, 190", "222 173 190", "222,173,190", "0xde", "deadbeef",
	}
	for _, f := range forms {
		if strings.Contains(strings.ToLower(s), strings.ToLower(f)) {
			return true
		}
	}
	return false
}

func TestParseKey(t *testing.T) {
	t.Parallel()
	seq := Key{}
	for i := range seq {
		seq[i] = byte(i + 1)
	}
	decimal := "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32"
	tests := []struct {
		name string
		in   string
		want Key
		err  bool
	}{
		{"bevygap decimal", decimal, seq, false},
		{"decimal with spaces and brackets", "[" + strings.ReplaceAll(decimal, ",", ", ") + "]", seq, false},
		{"decimal zero", strings.TrimSuffix(strings.Repeat("0,", 32), ","), Key{}, false},
		{"hex lower", hex.EncodeToString(seq[:]), seq, false},
		{"hex upper", strings.ToUpper(hex.EncodeToString(seq[:])), seq, false},
		{"base64 std", base64.StdEncoding.EncodeToString(seq[:]), seq, false},
		{"base64 raw", base64.RawStdEncoding.EncodeToString(seq[:]), seq, false},
		{"base64 url", base64.URLEncoding.EncodeToString(secretKey[:]), secretKey, false},
		{"base64 raw url", base64.RawURLEncoding.EncodeToString(secretKey[:]), secretKey, false},
		{"surrounding space", " " + hex.EncodeToString(seq[:]) + "\n", seq, false},
		{"empty", "", Key{}, true},
		{"31 decimal", strings.TrimSuffix(decimal, ",32"), Key{}, true},
		{"33 decimal", decimal + ",33", Key{}, true},
		{"decimal 256", strings.Replace(decimal, "32", "256", 1), Key{}, true},
		{"decimal negative", strings.Replace(decimal, "32", "-1", 1), Key{}, true},
		{"decimal empty element", strings.Replace(decimal, ",32", ",", 1), Key{}, true},
		{"decimal hex digit", strings.Replace(decimal, "32", "0x20", 1), Key{}, true},
		{"hex 62", hex.EncodeToString(seq[:31]) + "0", Key{}, true},
		{"hex bad digit", "zz" + hex.EncodeToString(seq[:31]), Key{}, true},
		{"base64 of 31 bytes", base64.StdEncoding.EncodeToString(seq[:31]), Key{}, true},
		{"base64 of 33 bytes", base64.StdEncoding.EncodeToString(append(seq[:], 1)), Key{}, true},
		{"a word", "secret", Key{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKey(tt.in)
			if tt.err {
				if !errors.Is(err, ErrKey) {
					t.Fatalf("got %v, want ErrKey", err)
				}
				if tt.in != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.in)) {
					t.Fatalf("error %q repeats the input", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseKey = %x, %v", got[:], err)
			}
		})
	}
}

// TestParseKeyErrorsNeverShowTheKey feeds near-miss forms of a real key: the error must say
// what is wrong without repeating any of it.
func TestParseKeyErrorsNeverShowTheKey(t *testing.T) {
	t.Parallel()
	h := hex.EncodeToString(secretKey[:])
	var dec []string
	for _, b := range secretKey {
		dec = append(dec, fmt.Sprint(b))
	}
	for _, in := range []string{
		h[:63], h + "0", strings.Join(dec[:31], ","), strings.Join(dec, ",") + ",1",
		strings.Join(dec, ",") + "x", base64.StdEncoding.EncodeToString(secretKey[:30]),
	} {
		_, err := ParseKey(in)
		if err == nil {
			t.Fatalf("ParseKey accepted a malformed key")
		}
		if leaks(err.Error()) {
			t.Fatalf("error shows the key: %v", err)
		}
	}
}

func TestKeyNeverPrinted(t *testing.T) {
	t.Parallel()
	type config struct {
		Name       string
		PrivateKey Key
		Keys       []Key
		Ptr        *Key
	}
	k := secretKey
	cfg := config{Name: "matchmaker", PrivateKey: secretKey, Keys: []Key{secretKey}, Ptr: &k}
	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%x", "%X", "%d", "%q"} {
		outputs = append(outputs, fmt.Sprintf(verb, cfg), fmt.Sprintf(verb, secretKey), fmt.Sprintf(verb, &k))
	}
	outputs = append(outputs, fmt.Sprint(secretKey), secretKey.String(), secretKey.GoString(),
		fmt.Errorf("wrapped: %v", cfg).Error())
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(js))
	var logs bytes.Buffer
	text := slog.New(slog.NewTextHandler(&logs, nil))
	text.Info("start", "key", secretKey, "cfg", cfg)
	jlog := slog.New(slog.NewJSONHandler(&logs, nil))
	jlog.Info("start", "key", secretKey, "cfg", cfg, slog.Any("ptr", &k))
	outputs = append(outputs, logs.String())
	for _, s := range outputs {
		if leaks(s) {
			t.Fatalf("key bytes printed: %s", s)
		}
		if !strings.Contains(s, redacted) {
			t.Fatalf("output without %s: %s", redacted, s)
		}
	}
	var back Key
	if err := back.UnmarshalText([]byte(redacted)); !errors.Is(err, ErrKey) {
		t.Fatalf("UnmarshalText of the redacted form: %v", err)
	}
	if err := back.UnmarshalText([]byte(hex.EncodeToString(secretKey[:]))); err != nil || back != secretKey {
		t.Fatalf("UnmarshalText of hex: %v", err)
	}
	if got := string(secretKey.AppendHex(nil)); got != hex.EncodeToString(secretKey[:]) {
		t.Fatalf("AppendHex = %s", got)
	}
}

func TestValidateKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		key       Key
		allowZero bool
		want      error
	}{
		{"zero refused", Key{}, false, ErrZeroKey},
		{"zero in dev", Key{}, true, nil},
		{"one bit set", Key{31: 1}, false, nil},
		{"real key", secretKey, false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateKey(tt.key, tt.allowZero)
			if !errors.Is(err, tt.want) || (tt.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestGenerateKey(t *testing.T) {
	t.Parallel()
	a, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if a.IsZero() || a.Equal(b) || !a.Equal(a) {
		t.Fatal("GenerateKey must return distinct non-zero keys")
	}
}

// TestMinterNeverPrinted: printing a Minter shows neither its key nor the pooled random bytes
// that become the nonces and keys of future tokens.
func TestMinterNeverPrinted(t *testing.T) {
	t.Parallel()
	m := &Minter{Key: secretKey}
	if _, err := m.Mint(TokenParams{ServerAddrs: []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:1")}}); err != nil {
		t.Fatal(err)
	}
	pool := m.pool.Load()
	next := pool.buf[len(pool.buf)-pool.left:][:4]
	nextForms := []string{
		fmt.Sprintf("%d %d %d %d", next[0], next[1], next[2], next[3]),
		fmt.Sprintf("%d, %d, %d, %d", next[0], next[1], next[2], next[3]),
		hex.EncodeToString(next),
	}
	for _, verb := range []string{"%v", "%+v", "%#v"} {
		s := fmt.Sprintf(verb, m)
		if leaks(s) {
			t.Fatalf("%s of a Minter shows the key: %s", verb, s)
		}
		for _, f := range nextForms {
			if strings.Contains(s, f) {
				t.Fatalf("%s of a Minter shows pooled random bytes: %s", verb, s)
			}
		}
	}
}
