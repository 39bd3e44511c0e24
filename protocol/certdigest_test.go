package protocol

import (
	"net/netip"
	"regexp"
	"testing"
)

// kvKey is nats.go's rule for a valid KV key.
var kvKey = regexp.MustCompile(`^[-/_=\.a-zA-Z0-9]+$`)

func TestCertDigestKeys(t *testing.T) {
	t.Parallel()
	tests := []struct {
		ip, requestID       string
		ipKey, depKey, filt string // "" = none
	}{
		{"1.2.3.4", "9170f5211e17", "1.2.3.4", "1.2.3.4.9170f5211e17", "1.2.3.4.*"},
		{"127.0.0.1", "sim-0001_a", "127.0.0.1", "127.0.0.1.sim-0001_a", "127.0.0.1.*"},
		{"::ffff:10.0.0.1", "abc", "10.0.0.1", "10.0.0.1.abc", "10.0.0.1.*"},
		{"2001:db8::1", "abc", "", "2001-db8--1.abc", "2001-db8--1.*"},
		// Not key characters: hashed (SHA-256 of "a.b c", first 16 bytes).
		{"1.2.3.4", "a.b c", "1.2.3.4", "1.2.3.4.8640d2e22c0699815cacc519ee3f91ad", "1.2.3.4.*"},
		{"1.2.3.4", "", "1.2.3.4", "", "1.2.3.4.*"},
	}
	for _, tt := range tests {
		ip := netip.MustParseAddr(tt.ip)
		ipKey, ok := CertDigestIPKey(ip)
		if ipKey != tt.ipKey || ok != (tt.ipKey != "") {
			t.Errorf("CertDigestIPKey(%s) = %q, %v; want %q", tt.ip, ipKey, ok, tt.ipKey)
		}
		depKey, ok := CertDigestDeploymentKey(ip, tt.requestID)
		if depKey != tt.depKey || ok != (tt.depKey != "") {
			t.Errorf("CertDigestDeploymentKey(%s, %q) = %q, %v; want %q", tt.ip, tt.requestID, depKey, ok, tt.depKey)
		}
		filt, _ := CertDigestDeploymentFilter(ip)
		if filt != tt.filt {
			t.Errorf("CertDigestDeploymentFilter(%s) = %q, want %q", tt.ip, filt, tt.filt)
		}
		for _, k := range []string{ipKey, depKey} {
			if k != "" && !kvKey.MatchString(k) {
				t.Errorf("%q is not a valid KV key", k)
			}
		}
	}
	if _, ok := CertDigestIPKey(netip.Addr{}); ok {
		t.Error("invalid IP has an IP key")
	}
	if _, ok := CertDigestDeploymentKey(netip.Addr{}, "x"); ok {
		t.Error("invalid IP has a deployment key")
	}
}
