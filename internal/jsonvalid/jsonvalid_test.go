package jsonvalid

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/bevygap-go/bevygap/protocol"
)

// jsonValidCases are the table of TestValidJSON and the seeds of FuzzValidJSON.
var jsonValidCases = []string{
	``, ` `, `{}`, ` {} `, `[]`, `[1,2]`, `[1,]`, `[,1]`, `{"a":1}`, `{"a":1,}`, `{"a"}`, `{"a":}`, `{a:1}`,
	`{"a":1 "b":2}`, `{"a":[{"b":null}]}`, `"x"`, `"x`, `"\u00e9"`, `"\u00g9"`, `"\u12"`, `"\x"`, `"\""`,
	`"a\\"`, "\"\x01\"", "\"\xff\xfe\"", "\"\t\"", `"é"`, `0`, `-0`, `01`, `-`, `1.`, `1.5`, `.5`, `1e5`,
	`1E+5`, `1e-5`, `1e`, `1e+`, `-1.5e10`, `true`, `tru`, `false`, `null`, `nul`, `truex`, `[true false]`,
	"{\n\t\"SessionReady\" : {\"token\":\"x\"}}", `{"SessionReady":{`, `}`, `]`, `[`, `{"a":1}}`, `[[]]]`,
	`"\/\b\f\n\r\t"`, `1 2`, "\x00", `{"":""}`,
}

// TestValidJSON: Valid agrees with encoding/json.Valid, on the feedback messages the
// front door relays, on hand-picked edge cases, and at the nesting limit.
func TestValidJSON(t *testing.T) {
	t.Parallel()
	cases := append([]string(nil), jsonValidCases...)
	for _, f := range []protocol.Feedback{protocol.Acknowledged(), protocol.Accepted("sid"), protocol.Progress("Queued: position 3"),
		protocol.Ready(protocol.SessionReady{Token: strings.Repeat("A", 2732), IP: "1.2.3.4", Port: 6420, CertDigest: "ab"}),
		protocol.Error(504, "timed out")} {
		b, err := protocol.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, string(b))
	}
	for _, depth := range []int{maxJSONDepth, maxJSONDepth + 1} {
		cases = append(cases, strings.Repeat("[", depth)+strings.Repeat("]", depth),
			strings.Repeat(`{"a":`, depth)+"1"+strings.Repeat("}", depth))
	}
	for _, s := range cases {
		if got, want := Valid([]byte(s)), json.Valid([]byte(s)); got != want {
			t.Errorf("Valid(%.40q…) = %v, encoding/json.Valid says %v", s, got, want)
		}
	}
}

// FuzzValidJSON: Valid and encoding/json.Valid agree on any input.
func FuzzValidJSON(f *testing.F) {
	for _, s := range jsonValidCases {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if got, want := Valid(b), json.Valid(b); got != want {
			t.Errorf("Valid(%q) = %v, encoding/json.Valid says %v", b, got, want)
		}
	})
}

func BenchmarkValidJSON(b *testing.B) {
	msg, err := protocol.Marshal(protocol.Ready(protocol.SessionReady{Token: strings.Repeat("A", 2732), IP: "1.2.3.4", Port: 6420}))
	if err != nil {
		b.Fatal(err)
	}
	for _, v := range []struct {
		name  string
		valid func([]byte) bool
	}{{"encoding/json", json.Valid}, {"Valid", Valid}} {
		b.Run(v.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(msg)))
			for b.Loop() {
				if !v.valid(msg) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
