package roomserver

import (
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/netcode"
)

const testKeyHex = "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20"

func arbitriumEnv() map[string]string {
	return map[string]string{
		edgegap.EnvRequestID:          "f0000000000f",
		edgegap.EnvDeleteURL:          "http://127.0.0.1:3080/v1/self/stop/f0000000000f/1",
		edgegap.EnvDeleteToken:        "delete-token-secret",
		edgegap.EnvDeploymentLocation: `{"city":"Montreal","country":"Canada","continent":"North America","administrative_division":"Quebec","timezone":"Eastern Time","latitude":45.5,"longitude":-73.6}`,
		edgegap.EnvContextURL:         "http://127.0.0.1:3080/v1/context/f0000000000f/1",
		edgegap.EnvContextToken:       "context-token-secret",
		edgegap.EnvPublicIP:           "127.0.0.1",
		edgegap.EnvPortsMapping:       `{"ports":{"server":{"name":"server","internal":31000,"external":31001,"protocol":"UDP"},"web":{"name":"web","internal":8080,"external":30080,"protocol":"TCP"}}}`,
		"NATS_HOST":                   "nats://127.0.0.1:4222",
		EnvPrivateKey:                 testKeyHex,
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	cfg, err := ConfigFromEnv(func(k string) string { return arbitriumEnv()[k] })
	if err != nil {
		t.Fatal(err)
	}
	want, _ := netcode.ParseKey(testKeyHex)
	switch {
	case !cfg.PrivateKey.Equal(want):
		t.Error("private key not read")
	case cfg.ProtocolID != DefaultProtocolID, cfg.TokenFormat != netcode.FormatLightyear017:
		t.Errorf("protocol id %d, format %v; want the defaults", cfg.ProtocolID, cfg.TokenFormat)
	case cfg.TickInterval != DefaultTickInterval, cfg.IdleTimeout != DefaultIdleTimeout:
		t.Errorf("tick %s, idle %s; want the defaults", cfg.TickInterval, cfg.IdleTimeout)
	case cfg.NATS.Host != "nats://127.0.0.1:4222" || cfg.NATS.Name != "dotroom-f0000000000f":
		t.Errorf("NATS config %v", cfg.NATS)
	case cfg.Arbitrium.RequestID != "f0000000000f":
		t.Errorf("arbitrium %v", cfg.Arbitrium)
	case cfg.Transport != "":
		t.Errorf("transport %q, want the default (udp)", cfg.Transport)
	}
	p, err := cfg.port()
	if err != nil || p.Internal != 31000 || p.External != 31001 {
		t.Errorf("port = %+v, %v; want the server port", p, err)
	}

	overrides := map[string]string{EnvProtocolID: "7", EnvTokenFormat: "lightyear-0.20", EnvTick: "20ms",
		EnvIdleTimeout: "0", EnvMaxClients: "8", EnvPortName: "web", EnvListenHost: "127.0.0.1", EnvBucketPrefix: "g_",
		EnvTransport: "WebTransport"}
	env := arbitriumEnv()
	maps.Copy(env, overrides)
	cfg, err = ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ProtocolID != 7 || cfg.TokenFormat != netcode.FormatLightyear020 || cfg.TickInterval != 20*time.Millisecond ||
		cfg.IdleTimeout != 0 || cfg.MaxClients != 8 || cfg.ListenHost != "127.0.0.1" || cfg.Buckets.Prefix != "g_" ||
		cfg.Transport != netcode.TransportWebTransport {
		t.Errorf("overrides not applied: %+v", cfg)
	}
	if p, err := cfg.port(); err != nil || p.Internal != 8080 {
		t.Errorf("port web = %+v, %v", p, err)
	}
}

func TestConfigFromEnvErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		change  map[string]string
		mention []string
	}{
		{"no_key", map[string]string{EnvPrivateKey: ""}, []string{EnvPrivateKey + " is not set"}},
		{"bad_key", map[string]string{EnvPrivateKey: "not-a-key"}, []string{EnvPrivateKey}},
		{"zero_key", map[string]string{EnvPrivateKey: strings.Repeat("00", 32)}, []string{EnvPrivateKey}},
		{"every_problem_at_once", map[string]string{
			edgegap.EnvPublicIP: "", EnvProtocolID: "x", EnvTick: "soon", EnvMaxClients: "0", EnvTokenFormat: "v9",
			EnvTransport: "tcp",
		}, []string{edgegap.EnvPublicIP, EnvProtocolID, EnvTick, EnvMaxClients, EnvTokenFormat, EnvTransport}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := arbitriumEnv()
			maps.Copy(env, tt.change)
			_, err := ConfigFromEnv(func(k string) string { return env[k] })
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
			for _, m := range tt.mention {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("error %q does not mention %s", err, m)
				}
			}
			for _, secret := range []string{testKeyHex, "delete-token-secret", "context-token-secret"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error shows a secret: %q", err)
				}
			}
		})
	}
}

func TestPortSelection(t *testing.T) {
	t.Parallel()
	env := arbitriumEnv()
	env[edgegap.EnvPortsMapping] = `{"ports":{"b":{"name":"b","internal":2,"external":2,"protocol":"UDP"},"a":{"name":"a","internal":1,"external":1,"protocol":"UDP"}}}`
	cfg, err := ConfigFromEnv(func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if p, err := cfg.port(); err != nil || p.Name != "a" {
		t.Errorf("without a server port: %+v, %v; want the first by name", p, err)
	}
	cfg.PortName = "missing"
	if _, err := cfg.port(); !errors.Is(err, ErrConfig) {
		t.Errorf("missing port: err = %v, want ErrConfig", err)
	}
}
