package netcode

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The known answer of wtransport 0.5.0's Sha256Digest (wtransport/src/tls.rs, the doc test of
// Sha256Digest::fmt): bytes 97..=127 then 64, in the DottedHex form its Display prints.
func TestCertDigestStringWtransportKnownAnswer(t *testing.T) {
	t.Parallel()
	var d CertDigest
	for i := range 31 {
		d[i] = byte(97 + i)
	}
	d[31] = 64
	const want = "61:62:63:64:65:66:67:68:69:6a:6b:6c:6d:6e:6f:70:" +
		"71:72:73:74:75:76:77:78:79:7a:7b:7c:7d:7e:7f:40"
	if got := d.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	// The Rust client removes the ':' before hex-decoding: the same bytes come out.
	if got, err := ParseCertDigest(strings.ReplaceAll(want, ":", "")); err != nil || got != d {
		t.Fatalf("plain hex: %v, %v", got, err)
	}
}

func TestParseCertDigest(t *testing.T) {
	t.Parallel()
	var d CertDigest
	for i := range d {
		d[i] = byte(i * 7)
	}
	dotted := d.String()
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"dotted", dotted, true},
		{"dotted upper case", strings.ToUpper(dotted), true},
		{"plain hex", strings.ReplaceAll(dotted, ":", ""), true},
		{"plain hex upper case with spaces", " " + strings.ToUpper(strings.ReplaceAll(dotted, ":", "")) + "\n", true},
		{"one-digit groups (as wtransport parses)", strings.ReplaceAll(dotted, "00:", "0:"), true},
		{"spaces around groups", strings.ReplaceAll(dotted, ":", " : "), true},
		{"empty", "", false},
		{"31 bytes", dotted[:len(dotted)-3], false},
		{"33 bytes", dotted + ":00", false},
		{"63 hex digits", strings.ReplaceAll(dotted, ":", "")[1:], false},
		{"not hex", strings.Replace(dotted, "07", "0g", 1), false},
		{"three-digit group", strings.Replace(dotted, "07", "007", 1), false},
		{"empty group", strings.Replace(dotted, ":07", ":", 1), false},
		{"base64 (serverCertificateHashes' JS form)", "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXp7fH1+f0A=", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseCertDigest(tc.in)
			if tc.ok && (err != nil || got != d) {
				t.Fatalf("ParseCertDigest(%q) = %v, %v; want %v", tc.in, got, err, d)
			}
			if !tc.ok && err == nil {
				t.Fatalf("ParseCertDigest(%q) accepted", tc.in)
			}
		})
	}
}

func TestSelfSignedCert(t *testing.T) {
	t.Parallel()
	before := time.Now()
	cert, d, err := SelfSignedCert([]string{"203.0.113.7", "2001:db8::7", "game.example"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	if d != CertDigest(sha256.Sum256(cert.Certificate[0])) || d != DigestOf(leaf) || d != DigestOf(cert.Leaf) {
		t.Fatal("digest is not the SHA-256 of the certificate's DER")
	}
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Fatalf("key %T, want ECDSA P-256 (browsers pin only ECDSA)", leaf.PublicKey)
	}
	if v := leaf.NotAfter.Sub(leaf.NotBefore); v != DefaultCertValidity || v > MaxCertValidity {
		t.Fatalf("validity %v (backdating included), want %v", v, DefaultCertValidity)
	}
	if leaf.NotBefore.After(before) || before.Sub(leaf.NotBefore) > certBackdate+time.Second {
		t.Fatalf("NotBefore %v, want about %v before %v", leaf.NotBefore, certBackdate, before)
	}
	if len(leaf.IPAddresses) != 2 || !leaf.IPAddresses[0].Equal(net.ParseIP("203.0.113.7")) ||
		len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != "game.example" {
		t.Fatalf("SANs: %v %v", leaf.IPAddresses, leaf.DNSNames)
	}
	if err := leaf.VerifyHostname("203.0.113.7"); err != nil {
		t.Fatal(err)
	}
	if err := checkPinnable(leaf, time.Now()); err != nil {
		t.Fatalf("a browser would refuse it: %v", err)
	}
	if _, _, err := SelfSignedCert(nil, MaxCertValidity); err != nil {
		t.Fatalf("14 days: %v", err)
	}
	for _, v := range []time.Duration{MaxCertValidity + time.Second, certBackdate, -time.Hour} {
		if _, _, err := SelfSignedCert(nil, v); err == nil {
			t.Fatalf("validity %v accepted", v)
		}
	}
	if _, _, err := SelfSignedCert([]string{""}, 0); err == nil {
		t.Fatal("empty host accepted")
	}
}

// TestCheckPinned: the rules a pinned client applies (as Chromium does for
// serverCertificateHashes).
func TestCheckPinned(t *testing.T) {
	t.Parallel()
	good, goodDigest := testCert(t)
	now := time.Now()
	rsaDER := testRSACert(t).Certificate[0]
	long := *good.Leaf
	long.NotAfter = long.NotBefore.Add(MaxCertValidity + time.Second)
	longDER, err := x509.CreateCertificate(rand.Reader, &long, &long, good.Leaf.PublicKey, good.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		der  []byte
		want CertDigest
		now  time.Time
		ok   bool
	}{
		{"matching", good.Certificate[0], goodDigest, now, true},
		{"other digest", good.Certificate[0], CertDigest{1}, now, false},
		{"RSA", rsaDER, DigestOfDER(rsaDER), now, false},
		{"valid longer than 14 days", longDER, DigestOfDER(longDER), now, false},
		{"expired", good.Certificate[0], goodDigest, good.Leaf.NotAfter.Add(time.Second), false},
		{"not yet valid", good.Certificate[0], goodDigest, good.Leaf.NotBefore.Add(-time.Second), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := checkPinned([][]byte{tc.der}, tc.want, tc.now)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrCertMismatch)) {
				t.Fatalf("checkPinned = %v, want ok=%v (else ErrCertMismatch)", err, tc.ok)
			}
		})
	}
	if err := checkPinned(nil, goodDigest, now); !errors.Is(err, ErrCertMismatch) {
		t.Fatalf("no certificate: %v", err)
	}
}

// testRSACert makes a self-signed RSA certificate: native clients accept it, browsers do not
// pin it.
func testRSACert(t testing.TB) tls.Certificate {
	t.Helper()
	good, _ := testCert(t)
	key, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := *good.Leaf
	tmpl.SignatureAlgorithm = x509.UnknownSignatureAlgorithm
	tmpl.PublicKey = &key.PublicKey
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func TestNewCertRotatorValidatesConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []CertRotatorConfig{
		{Validity: MaxCertValidity + time.Hour},
		{Validity: 48 * time.Hour, RenewBefore: 48 * time.Hour},
		{RenewBefore: -time.Hour},
		{Hosts: []string{" "}},
	} {
		if _, err := NewCertRotator(cfg); err == nil {
			t.Errorf("NewCertRotator(%+v) accepted", cfg)
		}
	}
	r, err := NewCertRotator(CertRotatorConfig{Hosts: []string{"127.0.0.1"}, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := r.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
	if err != nil || DigestOfDER(cert.Certificate[0]) != r.Digest() || cert != r.Certificate() {
		t.Fatalf("TLSConfig serves another certificate than Digest names: %v", err)
	}
	if v := cert.Leaf.NotAfter.Sub(cert.Leaf.NotBefore); v != DefaultCertValidity {
		t.Fatalf("validity %v", v)
	}
}

// TestCertRotatorRenews runs the rotator on fake time: renewal RenewBefore the expiry, OnRenew
// called with the new digest while the old certificate is still served, the new one served
// once OnRenew returned nil, failures retried with backoff while the old one is served.
func TestCertRotatorRenews(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		const validity, renewBefore = 13 * 24 * time.Hour, 2 * 24 * time.Hour
		var (
			mu      sync.Mutex
			calls   []time.Time
			fail    = 2 // the second renewal's first two OnRenew calls fail
			round   int
			served  []CertDigest // what TLSConfig served during each OnRenew call
			renewed = make(chan CertDigest, 8)
		)
		var r *CertRotator
		r, err := NewCertRotator(CertRotatorConfig{
			Hosts: []string{"127.0.0.1"}, Validity: validity, RenewBefore: renewBefore, Logger: testLogger(),
			OnRenew: func(ctx context.Context, d CertDigest) error {
				mu.Lock()
				defer mu.Unlock()
				calls = append(calls, time.Now())
				cur, _ := r.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
				served = append(served, DigestOfDER(cur.Certificate[0]))
				if round == 1 && fail > 0 {
					fail--
					return errors.New("NATS down")
				}
				round++
				renewed <- d
				return nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		first := r.Digest()
		firstExpiry := r.Certificate().Leaf.NotAfter
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()

		// First renewal: RenewBefore the first certificate's expiry.
		d1 := <-renewed
		if got, want := time.Since(start), firstExpiry.Sub(start)-renewBefore; got != want {
			t.Fatalf("renewed after %v, want %v (2 days before expiry)", got, want)
		}
		synctest.Wait()
		if r.Digest() != d1 || d1 == first {
			t.Fatalf("after OnRenew the rotator serves %v, want the new %v", r.Digest(), d1)
		}
		secondExpiry := r.Certificate().Leaf.NotAfter
		renewedAt := time.Now()

		// Second renewal: OnRenew fails twice (retried after 1 s, then 2 s), the old
		// certificate is served meanwhile.
		d2 := <-renewed
		mu.Lock()
		n := len(calls)
		gaps := []time.Duration{calls[n-2].Sub(calls[n-3]), calls[n-1].Sub(calls[n-2])}
		firstTry := calls[n-3]
		servedDuring := served[n-3:]
		mu.Unlock()
		if want := secondExpiry.Sub(renewedAt) - renewBefore; firstTry.Sub(renewedAt) != want {
			t.Fatalf("second renewal after %v, want %v", firstTry.Sub(renewedAt), want)
		}
		if gaps[0] != time.Second || gaps[1] != 2*time.Second {
			t.Fatalf("retries after %v, want 1s then 2s", gaps)
		}
		for i, d := range servedDuring {
			if d != d1 {
				t.Fatalf("OnRenew call %d: the new certificate was served before OnRenew returned nil", i)
			}
		}
		synctest.Wait()
		if r.Digest() != d2 {
			t.Fatal("second renewal not served")
		}
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("Run = %v", err)
		}
	})
}
