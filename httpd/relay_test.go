package httpd

import (
	"strings"
	"testing"

	"github.com/bevygap-go/bevygap/protocol"
)

// TestFinalOutcome: the variant is read from the message's first key, as a full decode of the
// feedback would classify it, for every feedback the matchmaker sends and for messages that
// are not feedback.
func TestFinalOutcome(t *testing.T) {
	t.Parallel()
	marshal := func(f protocol.Feedback) string {
		b, err := protocol.Marshal(f)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	ready := protocol.SessionReady{Token: strings.Repeat("A", 2732), IP: "1.2.3.4", Port: 6420, CertDigest: "ab"}
	tests := []struct {
		name, msg, want string
	}{
		{"acknowledged", marshal(protocol.Acknowledged()), ""},
		{"accepted", marshal(protocol.Accepted("sid")), ""},
		{"progress", marshal(protocol.Progress("Queued: position 3")), ""},
		{"ready", marshal(protocol.Ready(ready)), outcomeReady},
		{"error", marshal(protocol.Error(504, "session still not ready, timed out.")), outcomeMMError},
		{"ready with white space", " {\n\t\"SessionReady\" : {\"token\":\"x\",\"ip\":\"1.2.3.4\",\"port\":1}} ", outcomeReady},
		{"error with white space", "{ \"Error\":\t[500, \"x\"] }", outcomeMMError},
		{"not JSON", `{"SessionReady":{`, ""},
		{"empty", "", ""},
		{"other object", `{"foo":{"SessionReady":{}}}`, ""},
		{"ready, not an object", `{"SessionReady":"x"}`, ""},
		{"error, not an array", `{"Error":"x"}`, ""},
		{"a string", `"SessionReady"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := finalOutcome([]byte(tt.msg)); got != tt.want {
				t.Errorf("finalOutcome(%.60q) = %q, want %q", tt.msg, got, tt.want)
			}
		})
	}
}

func BenchmarkFinalOutcome(b *testing.B) {
	msg, err := protocol.Marshal(protocol.Ready(protocol.SessionReady{Token: strings.Repeat("A", 2732), IP: "1.2.3.4", Port: 6420}))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if finalOutcome(msg) != outcomeReady {
			b.Fatal("not ready")
		}
	}
}
