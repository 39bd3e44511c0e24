package protocol

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// The expected strings are what serde_json produces for bevygap_shared::protocol types
// (externally tagged enum, struct fields in declaration order).
func TestFeedbackJSONContract(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		f    Feedback
		want string
	}{
		{"ack", Acknowledged(), `"Acknowledged"`},
		{"accepted", Accepted("950dd2eaff09-S"), `{"SessionRequestAccepted":"950dd2eaff09-S"}`},
		{"progress", Progress("Status.DEPLOYING (3)"), `{"ProgressReport":"Status.DEPLOYING (3)"}`},
		{"ready", Ready(SessionReady{Token: "AAAA", IP: "1.2.3.4", Port: 32041, CertDigest: ""}),
			`{"SessionReady":{"token":"AAAA","ip":"1.2.3.4","port":32041,"cert_digest":""}}`},
		{"error", Error(408, "session still not ready, timed out."), `{"Error":[408,"session still not ready, timed out."]}`},
		{"error-quote", Error(500, `bad "x" <y> & z`), `{"Error":[500,"bad \"x\" <y> & z"]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Marshal(tt.f)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Fatalf("marshal = %s, want %s", got, tt.want)
			}
			var back Feedback
			if err := json.Unmarshal([]byte(tt.want), &back); err != nil {
				t.Fatal(err)
			}
			if back.Kind != tt.f.Kind || back.Text != tt.f.Text || back.Code != tt.f.Code {
				t.Fatalf("unmarshal = %+v, want %+v", back, tt.f)
			}
			if (back.Ready == nil) != (tt.f.Ready == nil) || (back.Ready != nil && *back.Ready != *tt.f.Ready) {
				t.Fatalf("ready = %+v, want %+v", back.Ready, tt.f.Ready)
			}
		})
	}
}

func TestFeedbackUnmarshalRejects(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`"Nope"`, `{}`, `{"A":1,"B":2}`, `{"Error":[1]}`, `{"Error":[70000,"x"]}`, `{"Error":["x","y"]}`,
		`{"SessionReady":"x"}`, `{"Unknown":"x"}`, `[1]`, `nul`, ``,
	} {
		var f Feedback
		if err := json.Unmarshal([]byte(in), &f); err == nil {
			t.Errorf("unmarshal %q: want error, got %+v", in, f)
		}
	}
}

func TestRequestJSONContract(t *testing.T) {
	t.Parallel()
	ip := "1.2.3.4"
	tests := []struct {
		v    any
		want string
	}{
		{RequestSession{Game: "bevygap-spaceships", Version: "1"}, `{"game":"bevygap-spaceships","version":"1","client_ip":null}`},
		{RequestSession{Game: "g", Version: "v", ClientIP: &ip}, `{"game":"g","version":"v","client_ip":"1.2.3.4"}`},
		{MatchmakerRequest{ClientIP: ip, Game: "g", Version: "v"}, `{"client_ip":"1.2.3.4","game":"g","version":"v"}`},
		{GenSessionRequest{ClientIP: ip}, `{"client_ip":"1.2.3.4"}`},
		{GenSessionReply{ConnectToken: "T", GameserverIP: ip, GameserverPort: 32041, Link: "1.2.3.4:32041", CertDigest: "ab"},
			`{"connect_token":"T","gameserver_ip":"1.2.3.4","gameserver_port":32041,"link":"1.2.3.4:32041","cert_digest":"ab"}`},
	}
	for _, tt := range tests {
		got, err := Marshal(tt.v)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != tt.want {
			t.Errorf("marshal %T = %s, want %s", tt.v, got, tt.want)
		}
	}
}

func TestValidateGameVersion(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("a", 31)
	tests := []struct {
		game, version string
		wantErr       string
	}{
		{"bevygap-spaceships", "1", ""},
		{"my_game-2", "v0-1", ""},
		// White space is valid for the reference's \s but can never be a NATS subject token.
		{"my game_2", "v0-1", "Game name invalid"},
		{"game\t", "1", "Game name invalid"},
		{"game\n", "1", "Game name invalid"},
		{"\rgame", "1", "Game name invalid"},
		{"ga\fme", "1", "Game name invalid"},
		{"ga\vme", "1", "Game name invalid"},
		{" ", "1", "Game name invalid"},
		{strings.Repeat(" ", 31), "1", "Game name invalid"},
		{"g", "v 1", "Game version invalid"},
		{"g", "1\t", "Game version invalid"},
		{strings.Repeat("a", 30), strings.Repeat("b", 30), ""},
		{"", "1", "Game name invalid"},
		{"a.b", "1", "Game name invalid"},
		{"a*", "1", "Game name invalid"},
		{"gäme", "1", "Game name invalid"},
		{long, "1", "Game name too long (max 30 chars)"},
		{"g", "", "Game version invalid"},
		{"g", "1.0", "Game version invalid"},
		{"g", long, "Game version too long (max 30 chars)"},
	}
	for _, tt := range tests {
		err := ValidateGameVersion(tt.game, tt.version)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%q/%q: unexpected %v", tt.game, tt.version, err)
			}
			continue
		}
		if err == nil || !errors.Is(err, ErrInvalidName) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%q/%q: err = %v, want %q", tt.game, tt.version, err, tt.wantErr)
		}
	}
	if s, err := MatchmakerRequestSubject("g", "v1"); err != nil || s != "matchmaker.request.g.v1" {
		t.Errorf("subject = %q, %v", s, err)
	}
	if _, err := MatchmakerRequestSubject("g.>", "v1"); err == nil {
		t.Error("wildcard game name accepted")
	}
}

func TestSessionReadyAddr(t *testing.T) {
	t.Parallel()
	a, err := SessionReady{IP: "::1", Port: 5}.Addr()
	if err != nil || a.String() != "[::1]:5" {
		t.Fatalf("addr = %v, %v", a, err)
	}
	if _, err := (SessionReady{IP: "example.com", Port: 5}).Addr(); err == nil {
		t.Fatal("hostname accepted as IP")
	}
}
