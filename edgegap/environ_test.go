package edgegap

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// The two tokens of fullEnv: they must never be printed.
const (
	testContextToken = "ctx-token-dfaf50b9333b9ee07b22ed247e4a17e6"
	testDeleteToken  = "del-token-7df4cd933df87084b34ae80d8abde293"
)

// fullEnv is a complete ARBITRIUM_* environment (values from bevygap's set-mock-arbitrium-envs.sh).
func fullEnv() map[string]string {
	return map[string]string{
		EnvRequestID:          "f0000000000f",
		EnvDeleteURL:          "https://api.com/v1/self/stop/9f511e17/660",
		EnvDeleteToken:        testDeleteToken,
		EnvDeploymentLocation: `{"city":"Montreal","country":"Canada","continent":"North America","administrative_division":"Quebec","timezone":"Eastern Time","latitude":45.513707,"longitude":-73.619073}`,
		EnvContextURL:         "https://api.com/v1/context/9170f5211e17/17",
		EnvContextToken:       testContextToken,
		EnvPublicIP:           "162.254.141.66",
		EnvPortsMapping:       `{"ports":{"5000":{"name":"game_port","internal":5000,"external":31500,"protocol":"HTTP"}}}`,
	}
}

func TestArbitriumFromEnvComplete(t *testing.T) {
	env := fullEnv()
	a, err := ArbitriumFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	want := Arbitrium{
		RequestID:   "f0000000000f",
		DeleteURL:   "https://api.com/v1/self/stop/9f511e17/660",
		DeleteToken: testDeleteToken,
		Location: DeploymentLocation{City: "Montreal", Country: "Canada", Continent: "North America",
			AdministrativeDivision: "Quebec", Timezone: "Eastern Time", Latitude: 45.513707, Longitude: -73.619073},
		ContextURL:   "https://api.com/v1/context/9170f5211e17/17",
		ContextToken: testContextToken,
		PublicIP:     netip.MustParseAddr("162.254.141.66"),
		Ports:        map[string]Port{"5000": {Name: "game_port", Internal: 5000, External: 31500, Protocol: "HTTP"}},
	}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("got  %#v\nwant %#v", a.Ports, want.Ports)
	}
	if p, ok := a.Port("5000"); !ok || p.External != 31500 {
		t.Fatalf("Port(5000) = %+v, %v", p, ok)
	}
	if _, ok := a.Port("nope"); ok {
		t.Fatal("Port(nope) found")
	}
}

func TestArbitriumFromEnvErrors(t *testing.T) {
	tests := []struct {
		name        string
		change      map[string]string // "" deletes the variable
		wantMissing []string
		wantInvalid []string
		wantText    []string
	}{
		{
			name:        "two missing",
			change:      map[string]string{EnvContextToken: "", EnvRequestID: ""},
			wantMissing: []string{EnvRequestID, EnvContextToken},
			wantText:    []string{"missing ARBITRIUM_REQUEST_ID, ARBITRIUM_CONTEXT_TOKEN"},
		},
		{
			name:        "blank counts as missing",
			change:      map[string]string{EnvPublicIP: "   "},
			wantMissing: []string{EnvPublicIP},
		},
		{
			name: "all missing",
			change: map[string]string{EnvRequestID: "", EnvDeleteURL: "", EnvDeleteToken: "", EnvDeploymentLocation: "",
				EnvContextURL: "", EnvContextToken: "", EnvPublicIP: "", EnvPortsMapping: ""},
			wantMissing: envVars(),
		},
		{
			name:        "location is not JSON",
			change:      map[string]string{EnvDeploymentLocation: `{"city":"Montreal",`},
			wantInvalid: []string{EnvDeploymentLocation},
			wantText:    []string{"ARBITRIUM_DEPLOYMENT_LOCATION (bad JSON"},
		},
		{
			name:        "location is a string",
			change:      map[string]string{EnvDeploymentLocation: `"Montreal"`},
			wantInvalid: []string{EnvDeploymentLocation},
		},
		{
			name:        "location latitude has the wrong type",
			change:      map[string]string{EnvDeploymentLocation: `{"latitude":"north"}`},
			wantInvalid: []string{EnvDeploymentLocation},
			wantText:    []string{`field "latitude"`},
		},
		{
			name:        "ports mapping is not JSON",
			change:      map[string]string{EnvPortsMapping: `{"ports":{`},
			wantInvalid: []string{EnvPortsMapping},
		},
		{
			name:        "ports mapping without ports",
			change:      map[string]string{EnvPortsMapping: `{"server":{"external":1}}`},
			wantInvalid: []string{EnvPortsMapping},
			wantText:    []string{`no "ports" object`},
		},
		{
			name:        "port out of range",
			change:      map[string]string{EnvPortsMapping: `{"ports":{"server":{"internal":6420,"external":70000}}}`},
			wantInvalid: []string{EnvPortsMapping},
		},
		{
			name:        "port without external",
			change:      map[string]string{EnvPortsMapping: `{"ports":{"server":{"internal":6420}}}`},
			wantInvalid: []string{EnvPortsMapping},
			wantText:    []string{`port "server" has no external port`},
		},
		{
			name:        "bad IP and bad URLs, plus one missing",
			change:      map[string]string{EnvPublicIP: "gameserver.example.com", EnvContextURL: "ftp://x/y", EnvDeleteURL: "/v1/self/stop", EnvRequestID: ""},
			wantMissing: []string{EnvRequestID},
			wantInvalid: []string{EnvDeleteURL, EnvContextURL, EnvPublicIP},
			wantText:    []string{"missing ARBITRIUM_REQUEST_ID;", "ARBITRIUM_PUBLIC_IP (not an IP address)"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := fullEnv()
			for k, v := range tt.change {
				env[k] = v
			}
			_, err := ArbitriumFromEnv(func(k string) string { return env[k] })
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrEnvironment) {
				t.Errorf("error does not match ErrEnvironment: %v", err)
			}
			var ee *EnvError
			if !errors.As(err, &ee) {
				t.Fatalf("not an *EnvError: %T", err)
			}
			if !reflect.DeepEqual(ee.Missing, tt.wantMissing) {
				t.Errorf("Missing = %v, want %v", ee.Missing, tt.wantMissing)
			}
			var invalid []string
			for _, name := range envVars() {
				if _, ok := ee.Invalid[name]; ok {
					invalid = append(invalid, name)
				}
			}
			if !reflect.DeepEqual(invalid, tt.wantInvalid) {
				t.Errorf("Invalid = %v, want %v", ee.Invalid, tt.wantInvalid)
			}
			msg := err.Error()
			for _, name := range append(append([]string{}, tt.wantMissing...), tt.wantInvalid...) {
				if !strings.Contains(msg, name) {
					t.Errorf("message does not name %s: %s", name, msg)
				}
			}
			for _, s := range tt.wantText {
				if !strings.Contains(msg, s) {
					t.Errorf("message lacks %q: %s", s, msg)
				}
			}
			for _, secret := range []string{testContextToken, testDeleteToken} {
				if strings.Contains(msg, secret) {
					t.Errorf("message leaks a token: %s", msg)
				}
			}
		})
	}
}

func TestArbitriumNeverPrintsTokens(t *testing.T) {
	env := fullEnv()
	a, err := ArbitriumFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("boot", "arbitrium", a)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("boot", "arbitrium", a)
	for _, out := range []string{fmt.Sprint(a), fmt.Sprintf("%v %+v %#v %s", a, a, a, a), logged.String()} {
		for _, secret := range []string{testContextToken, testDeleteToken} {
			if strings.Contains(out, secret) {
				t.Fatalf("token printed: %s", out)
			}
		}
	}
	if !strings.Contains(fmt.Sprint(a), "f0000000000f") || !strings.Contains(logged.String(), "Montreal, Canada") {
		t.Fatalf("useful fields missing: %s / %s", a, logged.String())
	}
}

func FuzzParsePorts(f *testing.F) {
	f.Add(fullEnv()[EnvPortsMapping])
	f.Add(`{"ports":{"gameport":{"name":"gameport","internal":7777,"external":32013,"protocol":"UDP"}}}`)
	f.Add(`{"ports":null}`)
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := parsePorts(s)
		if err != nil {
			return
		}
		for key, p := range ports {
			if p.External == 0 || p.Name == "" {
				t.Fatalf("accepted port %q = %+v", key, p)
			}
		}
	})
}
