package protocol

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// genSessionReplyCases are replies whose strings need every kind of escaping Marshal does (or
// none), next to a real-size one.
var genSessionReplyCases = []GenSessionReply{
	{},
	{ConnectToken: strings.Repeat("AbC+/=", 455) + "xy", GameserverIP: "203.0.113.7", GameserverPort: 65535,
		Link: "203.0.113.7:65535", CertDigest: "ab:cd:ef"},
	{ConnectToken: "a\"b\\c", GameserverIP: "<&>", GameserverPort: 1, Link: "\n\r\t\x00\x1f", CertDigest: "é\u2028\u2029"},
	{ConnectToken: "\xff\xfe invalid UTF-8", GameserverIP: "::1", Link: "[::1]:0", CertDigest: "\x7f"},
}

func TestGenSessionReplyAppendJSON(t *testing.T) {
	for i, r := range genSessionReplyCases {
		want, err := Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Errorf("case %d: AppendJSON\n got %q\nwant %q", i, got, want)
		}
		prefix := []byte("prefix")
		if got := r.AppendJSON(prefix); !bytes.Equal(got, append([]byte("prefix"), want...)) {
			t.Errorf("case %d: AppendJSON after a prefix: %q", i, got)
		}
	}
	// A real reply is written with one allocation of the right size.
	r := genSessionReplyCases[1]
	if a := testing.AllocsPerRun(20, func() { _ = r.AppendJSON(nil) }); a != 1 && !raceEnabled {
		t.Errorf("AppendJSON made %v allocations, want 1", a)
	}
}

func FuzzGenSessionReplyAppendJSON(f *testing.F) {
	for _, r := range genSessionReplyCases {
		f.Add(r.ConnectToken, r.GameserverIP, r.GameserverPort, r.Link, r.CertDigest)
	}
	f.Fuzz(func(t *testing.T, token, ip string, port uint16, link, digest string) {
		r := GenSessionReply{ConnectToken: token, GameserverIP: ip, GameserverPort: port, Link: link, CertDigest: digest}
		want, err := Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.AppendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON\n got %q\nwant %q", got, want)
		}
	})
}

// TestGenSessionReplyAppendJSONToken: the reply with its token appended by a function is the
// reply with the same token as a string; a failing token leaves the buffer as it was.
func TestGenSessionReplyAppendJSONToken(t *testing.T) {
	r := genSessionReplyCases[1]
	token := r.ConnectToken
	want := r.AppendJSON([]byte("x"))
	r.ConnectToken = "ignored"
	got, err := r.AppendJSONToken([]byte("x"), len(token), func(b []byte) ([]byte, error) { return append(b, token...), nil })
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("AppendJSONToken = %q, %v; want %q", got, err, want)
	}
	if a := testing.AllocsPerRun(20, func() {
		_, _ = r.AppendJSONToken(nil, len(token), func(b []byte) ([]byte, error) { return append(b, token...), nil })
	}); a != 1 && !raceEnabled {
		t.Errorf("AppendJSONToken made %v allocations, want 1", a)
	}
	boom := errors.New("boom")
	got, err = r.AppendJSONToken([]byte("x"), 10, func(b []byte) ([]byte, error) { return append(b, "partial"...), boom })
	if !errors.Is(err, boom) || string(got) != "x" {
		t.Fatalf("failing token: %q, %v", got, err)
	}
}
