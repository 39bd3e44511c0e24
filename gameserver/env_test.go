package gameserver

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/bevygap-go/bevygap/edgegap"
)

// fullEnv is a complete ARBITRIUM_* environment (values from bevygap's set-mock-arbitrium-envs.sh).
func fullEnv() map[string]string {
	return map[string]string{
		edgegap.EnvRequestID:          "f0000000000f",
		edgegap.EnvDeleteURL:          "https://api.edgegap.com/v1/self/stop/9f511e17/660",
		edgegap.EnvDeleteToken:        testDeleteToken,
		edgegap.EnvDeploymentLocation: `{"city":"Montreal","country":"Canada","continent":"North America","administrative_division":"Quebec","timezone":"Eastern Time","latitude":45.513707,"longitude":-73.619073}`,
		edgegap.EnvContextURL:         "https://api.edgegap.com/v1/context/9170f5211e17/17",
		edgegap.EnvContextToken:       testContextToken,
		edgegap.EnvPublicIP:           "162.254.141.66",
		edgegap.EnvPortsMapping:       `{"ports":{"5000":{"name":"game_port","internal":5000,"external":31500,"protocol":"HTTP"}}}`,
	}
}

// TestEnvFromEnvironComplete: the SDK returns what edgegap.ArbitriumFromEnv decodes (whose test
// pins every field).
func TestEnvFromEnvironComplete(t *testing.T) {
	t.Parallel()
	env := fullEnv()
	getenv := func(k string) string { return env[k] }
	a, err := EnvFromEnviron(getenv)
	if err != nil {
		t.Fatal(err)
	}
	want, err := edgegap.ArbitriumFromEnv(getenv)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a, want) || a.RequestID != "f0000000000f" || a.ContextToken != testContextToken {
		t.Fatalf("got  %v\nwant %v", a, want)
	}
	if p, ok := a.Port("5000"); !ok || p.External != 31500 {
		t.Fatalf("Port(5000) = %+v, %v", p, ok)
	}
}

// TestEnvFromEnvironErrors: the checks themselves are tested with edgegap.ArbitriumFromEnv; the
// game server SDK adds ErrConfig and keeps the *EnvError reachable.
func TestEnvFromEnvironErrors(t *testing.T) {
	t.Parallel()
	env := fullEnv()
	env[edgegap.EnvRequestID] = ""
	env[edgegap.EnvPublicIP] = "not-an-ip"
	_, err := EnvFromEnviron(func(k string) string { return env[k] })
	if !errors.Is(err, ErrConfig) || !errors.Is(err, edgegap.ErrEnvironment) {
		t.Fatalf("error does not match ErrConfig and edgegap.ErrEnvironment: %v", err)
	}
	var ee *edgegap.EnvError
	if !errors.As(err, &ee) {
		t.Fatalf("not an *EnvError: %T", err)
	}
	if !reflect.DeepEqual(ee.Missing, []string{edgegap.EnvRequestID}) || len(ee.Invalid) != 1 || ee.Invalid[edgegap.EnvPublicIP] == "" {
		t.Errorf("Missing = %v, Invalid = %v", ee.Missing, ee.Invalid)
	}
	for _, s := range []string{"missing ARBITRIUM_REQUEST_ID;", "ARBITRIUM_PUBLIC_IP (not an IP address)"} {
		if msg := err.Error(); !strings.Contains(msg, s) {
			t.Errorf("message lacks %q: %s", s, msg)
		}
	}
}
