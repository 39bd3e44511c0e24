package main

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/bevygap-go/bevygap/netcode"
)

const testKeyDecimal = "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31,32"

// cliVector is the part of a known-answer vector the CLI tests use.
type cliVector struct {
	Name        string   `json:"name"`
	PrivateKey  string   `json:"private_key"`
	ProtocolID  uint64   `json:"protocol_id"`
	ClientID    uint64   `json:"client_id"`
	Addresses   []string `json:"addresses"`
	Internal    []string `json:"internal_addresses"`
	Format      string   `json:"format"`
	TokenBase64 string   `json:"token_base64"`
}

func loadCLIVectors(t *testing.T) []cliVector {
	t.Helper()
	raw, err := os.ReadFile("../../netcode/testdata/netcode-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []cliVector
	if err := json.Unmarshal(raw, &vs); err != nil {
		t.Fatal(err)
	}
	return vs
}

func TestTokenMint(t *testing.T) {
	t.Parallel()
	key, err := netcode.ParseKey(testKeyDecimal)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		env    map[string]string
		args   []string
		format netcode.Format
		addrs  []string // private addresses
	}{
		{"flags", nil, []string{"--key", testKeyDecimal, "--client-id", "42", "--server", "127.0.0.1:5000"}, netcode.FormatLightyear017, []string{"127.0.0.1:5000"}},
		{"env key", map[string]string{tokenKeyEnv: testKeyDecimal}, []string{"--client-id", "42", "--server", "[::1]:5000"}, netcode.FormatLightyear017, []string{"[::1]:5000"}},
		{"big-endian", nil, []string{"--key", testKeyDecimal, "--format", "lightyear-0.20", "--client-id", "42", "--server", "127.0.0.1:5000"}, netcode.FormatLightyear020, []string{"127.0.0.1:5000"}},
		{"internal", nil, []string{"--key", testKeyDecimal, "--client-id", "42", "--server", "127.0.0.1:5000", "--server", "127.0.0.2:5000", "--internal", "10.0.0.1:7000"}, netcode.FormatLightyear017, []string{"10.0.0.1:7000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out, errOut := runCLI(t, "", tt.env, append([]string{"token", "mint", "--user-data-hex", "00ff"}, tt.args...)...)
			if code != 0 || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			if len(out) != 2733 || !strings.HasSuffix(out, "\n") {
				t.Fatalf("want 2732 base64 characters and a newline, got %d bytes", len(out))
			}
			tok, err := netcode.DecodeConnectTokenBase64(out, tt.format)
			if err != nil {
				t.Fatal(err)
			}
			if tok.ProtocolID != 1982 || tok.TimeoutSeconds != 15 || tok.ExpireTimestamp != tok.CreateTimestamp+30 {
				t.Fatalf("defaults not applied: %+v", tok)
			}
			p, err := tok.Open(key)
			if err != nil {
				t.Fatal(err)
			}
			if p.ClientID != 42 || p.UserData[1] != 0xff || addrStrings(p.ServerAddrs)[0] != tt.addrs[0] || len(p.ServerAddrs) != len(tt.addrs) {
				t.Fatalf("private part %+v", p)
			}
		})
	}
}

func TestTokenMintJSON(t *testing.T) {
	t.Parallel()
	code, out, errOut := runCLI(t, "", nil, "token", "mint", "--json", "--key", testKeyDecimal, "--client-id", "18446744073709551615",
		"--protocol-id", "7", "--expire", "-1", "--timeout", "-1", "--server", "203.0.113.7:31500")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var d tokenDescription
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	if d.Format != "lightyear-0.17" || d.ProtocolID != 7 || d.Expires != "never" || d.Expired || d.TimeoutSeconds != -1 ||
		d.Private == nil || d.Private.ClientID != 18446744073709551615 || len(d.Nonce) != 48 ||
		d.Private.ClientToServerKey != d.ClientToServerKey || len(d.TokenBase64) != 2732 {
		t.Fatalf("unexpected JSON: %s", out)
	}
	// The same token through inspect gives the same description.
	code, out2, errOut := runCLI(t, "", nil, "token", "inspect", "--json", "--key", testKeyDecimal, d.TokenBase64)
	if code != 0 {
		t.Fatalf("inspect exit %d: %s", code, errOut)
	}
	if out2 != out {
		t.Fatalf("inspect differs from mint --json:\n%s\n%s", out, out2)
	}
}

func TestTokenInspectVectors(t *testing.T) {
	t.Parallel()
	for _, v := range loadCLIVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			t.Parallel()
			args := []string{"token", "inspect", "--json", "--key", v.PrivateKey}
			if v.Format != "" {
				args = append(args, "--format", v.Format)
			}
			code, out, errOut := runCLI(t, v.TokenBase64+"\n", nil, append(args, "-")...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, errOut)
			}
			var d tokenDescription
			if err := json.Unmarshal([]byte(out), &d); err != nil {
				t.Fatal(err)
			}
			want := v.Addresses
			if len(v.Internal) > 0 {
				want = v.Internal
			}
			if d.ProtocolID != v.ProtocolID || d.Private == nil || d.Private.ClientID != v.ClientID ||
				strings.Join(d.ServerAddrs, ",") != strings.Join(v.Addresses, ",") ||
				strings.Join(d.Private.ServerAddrs, ",") != strings.Join(want, ",") || d.TokenBase64 != v.TokenBase64 {
				t.Fatalf("unexpected description: %s", out)
			}

			// Text form, public part only: flags may follow the token.
			args = []string{"token", "inspect", v.TokenBase64}
			if v.Format != "" {
				args = append(args, "--format", v.Format)
			}
			code, out, _ = runCLI(t, "", nil, args...)
			if code != 0 || !strings.Contains(out, "protocol id:") || !strings.Contains(out, "give --key") {
				t.Fatalf("text inspect: exit %d\n%s", code, out)
			}
		})
	}
}

func TestTokenErrors(t *testing.T) {
	t.Parallel()
	v := loadCLIVectors(t)[0]
	raw, err := base64.StdEncoding.DecodeString(v.TokenBase64)
	if err != nil {
		t.Fatal(err)
	}
	short := base64.StdEncoding.EncodeToString(raw[:2047])
	big := loadCLIVectors(t)[3].TokenBase64 // lightyear-0.20
	zero := strings.TrimSuffix(strings.Repeat("0,", 32), ",")
	wrongKey := strings.Replace(testKeyDecimal, ",32", ",33", 1)
	mint := []string{"token", "mint", "--client-id", "1", "--server", "127.0.0.1:1"}
	tests := []struct {
		name     string
		args     []string
		stdin    string
		wantCode int
		wantErr  string
	}{
		{"no subcommand", []string{"token"}, "", 2, "needs a subcommand"},
		{"unknown subcommand", []string{"token", "burn"}, "", 2, "unknown token subcommand"},
		{"mint without key", mint, "", 2, "private key is required"},
		{"mint zero key", append(mint, "--key", zero), "", 2, "refused outside dev mode"},
		{"mint malformed key", append(mint, "--key", "1,2,3"), "", 2, "invalid key"},
		{"mint without server", []string{"token", "mint", "--key", testKeyDecimal, "--client-id", "1"}, "", 2, "--server"},
		{"mint bad server", append(mint, "--key", testKeyDecimal, "--server", "example.com:80"), "", 2, "IP:PORT"},
		{"mint without client id", []string{"token", "mint", "--key", testKeyDecimal, "--server", "127.0.0.1:1"}, "", 2, "--client-id"},
		{"mint bad format", append(mint, "--key", testKeyDecimal, "--format", "lightyear-0.99"), "", 2, "unknown token format"},
		{"mint user data too long", append(mint, "--key", testKeyDecimal, "--user-data-hex", strings.Repeat("ab", 257)), "", 2, "at most 256"},
		{"mint user data not hex", append(mint, "--key", testKeyDecimal, "--user-data-hex", "xyz"), "", 2, "not valid hex"},
		{"mint expire 0", append(mint, "--key", testKeyDecimal, "--expire", "0"), "", 2, "already expired"},
		{"mint stray argument", append(mint, "--key", testKeyDecimal, "extra"), "", 2, "unexpected argument"},
		{"inspect no token", []string{"token", "inspect"}, "", 2, "exactly one token"},
		{"inspect two tokens", []string{"token", "inspect", v.TokenBase64, v.TokenBase64}, "", 2, "unexpected argument"},
		{"inspect not base64", []string{"token", "inspect", "not*base64"}, "", 1, "not base64"},
		{"inspect short", []string{"token", "inspect", short}, "", 1, "2048 bytes"},
		{"inspect empty stdin", []string{"token", "inspect", "-"}, "", 1, "2048 bytes"},
		{"inspect wrong key", []string{"token", "inspect", "--key", wrongKey, v.TokenBase64}, "", 1, "wrong key or tampered"},
		{"inspect wrong format", []string{"token", "inspect", big}, "", 1, "try --format lightyear-0.20"},
		{"inspect bad env key", []string{"token", "inspect", v.TokenBase64}, "", 2, tokenKeyEnv},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			if tt.name == "inspect bad env key" {
				env[tokenKeyEnv] = "nope"
			}
			code, out, errOut := runCLI(t, tt.stdin, env, tt.args...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d; stderr %q", code, tt.wantCode, errOut)
			}
			if out != "" {
				t.Fatalf("stdout must be empty on error, got %q", out)
			}
			// Exactly one "Error:" line says what is wrong. (A bad flag value also makes the
			// flag package print the usage first, as for every subcommand.)
			var errLines []string
			for _, l := range strings.Split(errOut, "\n") {
				if strings.HasPrefix(l, "Error: ") {
					errLines = append(errLines, l)
				}
			}
			if len(errLines) != 1 || !strings.Contains(errLines[0], tt.wantErr) {
				t.Fatalf("stderr %q, want one Error: line with %q", errOut, tt.wantErr)
			}
			if tt.wantCode == 1 && errOut != errLines[0]+"\nSee: "+troubleshootingURL+" (what the message means and the fix)\n" {
				t.Fatalf("want only the Error: line and the troubleshooting pointer, got %q", errOut)
			}
			if strings.Contains(errOut, "goroutine") || strings.Contains(errOut, "panic") {
				t.Fatalf("stack trace on stderr: %q", errOut)
			}
		})
	}
}

// TestTokenNeverPrintsKey runs every path that takes a key and checks no output shows it.
func TestTokenNeverPrintsKey(t *testing.T) {
	t.Parallel()
	const keyHex = "deadbeefcafebabe00112233445566778899aabbccddeeff0102030405060708"
	v := loadCLIVectors(t)[0]
	runs := [][]string{
		{"token", "mint", "--json", "--key", keyHex, "--client-id", "1", "--server", "127.0.0.1:1"},
		{"token", "mint", "--key", keyHex, "--client-id", "1"},
		{"token", "mint", "--key", keyHex[:62], "--client-id", "1", "--server", "127.0.0.1:1"},
		{"token", "inspect", "--json", "--key", keyHex, v.TokenBase64},
		{"token", "inspect", "--key", keyHex + "00", v.TokenBase64},
	}
	for _, args := range runs {
		_, out, errOut := runCLI(t, "", nil, args...)
		for _, s := range []string{keyHex[:16], keyHex[16:32], keyHex[32:48], keyHex[48:]} {
			if strings.Contains(out+errOut, s) {
				t.Fatalf("%v printed the key:\n%s%s", args, out, errOut)
			}
		}
	}
}

func TestTokenHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"token", "-h"}, {"token", "mint", "-h"}, {"token", "inspect", "--help"}} {
		code, _, errOut := runCLI(t, "", nil, args...)
		if code != 0 || !strings.Contains(errOut, "Usage: bevygap token") {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errOut)
		}
	}
	_, out, _ := runCLI(t, "", nil, "help")
	if !strings.Contains(out, "token") {
		t.Fatalf("help does not list token: %s", out)
	}
}
