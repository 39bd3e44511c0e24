package netcode

// Certificates for the WebTransport transport.
//
// A WebTransport server needs a TLS certificate. Game servers have no DNS name and no CA, so
// they use a self-signed certificate: native Lightyear clients skip validation, and browsers
// pin the certificate's SHA-256 (serverCertificateHashes), which the matchmaker hands out as
// the session's cert_digest. Chromium pins only ECDSA certificates whose validity period
// (NotAfter − NotBefore) is at most 14 days, so a long-running server renews its certificate
// before it expires (CertRotator).

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bevygap-go/bevygap/internal/backoff"
	"github.com/bevygap-go/bevygap/internal/logkey"
)

// Certificate validity limits.
const (
	// MaxCertValidity is the longest validity period (NotAfter − NotBefore, backdating
	// included) a browser accepts for a pinned certificate.
	MaxCertValidity = 14 * 24 * time.Hour
	// DefaultCertValidity is the validity period of SelfSignedCert and CertRotator when none
	// is given.
	DefaultCertValidity = 13 * 24 * time.Hour
	// DefaultCertRenewBefore is how long before expiry CertRotator renews by default.
	DefaultCertRenewBefore = 2 * 24 * time.Hour
	// certBackdate is how far before now NotBefore lies, for clients whose clock is behind.
	// It counts towards the validity period.
	certBackdate = time.Hour
)

// ErrCertMismatch: a client pinned to a certificate digest met a server whose certificate has
// another digest, or a certificate that browsers refuse to pin (not ECDSA, valid longer than
// 14 days, expired or not yet valid).
var ErrCertMismatch = errors.New("netcode: server certificate does not match the pinned digest")

// CertDigest is the SHA-256 of a certificate's DER encoding.
type CertDigest [sha256.Size]byte

// DigestOfDER returns the digest of a DER-encoded certificate.
func DigestOfDER(der []byte) CertDigest { return sha256.Sum256(der) }

// DigestOf returns the digest of a parsed certificate.
func DigestOf(cert *x509.Certificate) CertDigest { return DigestOfDER(cert.Raw) }

// String formats the digest as wtransport 0.5.0's Sha256Digest Display (the form the Rust
// bevygap server plugin stores in cert_digests): each byte as two lower-case hex digits, joined
// by ':' ("61:62:...:40", 95 characters).
func (d CertDigest) String() string {
	const digits = "0123456789abcdef"
	b := make([]byte, 0, len(d)*3-1)
	for i, x := range d {
		if i > 0 {
			b = append(b, ':')
		}
		b = append(b, digits[x>>4], digits[x&0xf])
	}
	return string(b)
}

// ParseCertDigest parses a digest in the String form ("61:62:...", each group one or two hex
// digits, as wtransport parses it) or as 64 hex digits without separators (what the Rust
// client derives by removing the ':'). Case and surrounding spaces do not matter.
func ParseCertDigest(s string) (CertDigest, error) {
	var d CertDigest
	t := strings.TrimSpace(s)
	if !strings.Contains(t, ":") {
		if len(t) != 2*len(d) {
			return d, fmt.Errorf("netcode: cert digest %q: want 64 hex digits or 32 ':'-separated bytes", s)
		}
		if _, err := hex.Decode(d[:], []byte(t)); err != nil {
			return d, fmt.Errorf("netcode: cert digest %q: %w", s, err)
		}
		return d, nil
	}
	groups := strings.Split(t, ":")
	if len(groups) != len(d) {
		return d, fmt.Errorf("netcode: cert digest %q: %d bytes, want 32", s, len(groups))
	}
	for i, g := range groups {
		g = strings.TrimSpace(g)
		if len(g) == 1 {
			g = "0" + g
		}
		if len(g) != 2 {
			return d, fmt.Errorf("netcode: cert digest %q: byte %d is %q", s, i, g)
		}
		if _, err := hex.Decode(d[i:i+1], []byte(g)); err != nil {
			return d, fmt.Errorf("netcode: cert digest %q: byte %d: %w", s, i, err)
		}
	}
	return d, nil
}

// SelfSignedCert makes a self-signed ECDSA P-256 certificate for hosts (IP addresses and/or
// DNS names, e.g. the server's public IP), usable by a WebTransport server and pinnable by
// browsers: NotBefore is an hour ago (for clients whose clock is behind) and NotAfter is
// NotBefore + validity, so validity covers the backdating. validity 0 means
// DefaultCertValidity; more than MaxCertValidity is an error. It returns the certificate
// (with Leaf set) and its digest.
func SelfSignedCert(hosts []string, validity time.Duration) (tls.Certificate, CertDigest, error) {
	if validity == 0 {
		validity = DefaultCertValidity
	}
	if validity <= certBackdate || validity > MaxCertValidity {
		return tls.Certificate{}, CertDigest{}, fmt.Errorf("netcode: certificate validity %v out of range (%v, %v]", validity, certBackdate, MaxCertValidity)
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "bevygap game server"},
		NotBefore:             time.Now().Add(-certBackdate).UTC().Truncate(time.Second),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	tmpl.NotAfter = tmpl.NotBefore.Add(validity)
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		switch {
		case h == "":
			return tls.Certificate{}, CertDigest{}, errors.New("netcode: empty certificate host")
		case net.ParseIP(strings.Trim(h, "[]")) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(strings.Trim(h, "[]")))
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	if len(hosts) > 0 {
		tmpl.Subject.CommonName = strings.TrimSpace(hosts[0])
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, CertDigest{}, fmt.Errorf("netcode: certificate serial: %w", err)
	}
	tmpl.SerialNumber = serial
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, CertDigest{}, fmt.Errorf("netcode: certificate key: %w", err)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, CertDigest{}, fmt.Errorf("netcode: create certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, CertDigest{}, fmt.Errorf("netcode: parse certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, DigestOfDER(der), nil
}

// checkPinnable reports why a browser would refuse to pin cert at now, or nil: the rules of
// serverCertificateHashes (ECDSA key, validity period at most 14 days, currently valid).
func checkPinnable(cert *x509.Certificate, now time.Time) error {
	if _, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok {
		return fmt.Errorf("%w: its key is %v, browsers pin only ECDSA", ErrCertMismatch, cert.PublicKeyAlgorithm)
	}
	if d := cert.NotAfter.Sub(cert.NotBefore); d > MaxCertValidity {
		return fmt.Errorf("%w: it is valid for %v, browsers pin at most %v", ErrCertMismatch, d, MaxCertValidity)
	}
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return fmt.Errorf("%w: it is valid from %s to %s, not now", ErrCertMismatch, cert.NotBefore.Format(time.RFC3339), cert.NotAfter.Format(time.RFC3339))
	}
	return nil
}

// checkPinned checks the certificate chain a server presented against a pinned digest, as a
// browser does with serverCertificateHashes: the leaf's digest, then checkPinnable.
func checkPinned(raw [][]byte, want CertDigest, now time.Time) error {
	if len(raw) == 0 {
		return fmt.Errorf("%w: the server presented no certificate", ErrCertMismatch)
	}
	if got := DigestOfDER(raw[0]); got != want {
		return fmt.Errorf("%w: the server's certificate is %s, pinned %s", ErrCertMismatch, got, want)
	}
	cert, err := x509.ParseCertificate(raw[0])
	if err != nil {
		return fmt.Errorf("%w: %w", ErrCertMismatch, err)
	}
	return checkPinnable(cert, now)
}

// CertRotatorConfig configures NewCertRotator.
type CertRotatorConfig struct {
	// Hosts are the IP addresses and/or DNS names the certificate names (the server's public
	// IP); see SelfSignedCert.
	Hosts []string
	// Validity of each certificate: 0 means DefaultCertValidity, at most MaxCertValidity.
	Validity time.Duration
	// RenewBefore: a certificate is renewed when less than this is left: 0 means
	// DefaultCertRenewBefore (or a quarter of Validity if that is shorter). It must be less
	// than Validity.
	RenewBefore time.Duration
	// OnRenew, when set, is called with the new certificate's digest before the new
	// certificate is served, so that it can be published first (the old one is served until
	// OnRenew returns nil). An error is logged and the renewal tried again later, with a new
	// certificate; the old certificate is served meanwhile. It is not called for the first
	// certificate.
	OnRenew func(ctx context.Context, d CertDigest) error
	// Logger receives renewal logs; nil means slog.Default().
	Logger *slog.Logger
}

// renewRetry spaces renewal attempts whose OnRenew failed.
var renewRetry = backoff.Policy{Base: time.Second, Max: time.Minute}

// servedCert is a certificate being served and its digest.
type servedCert struct {
	cert   *tls.Certificate
	digest CertDigest
}

// CertRotator serves a self-signed certificate (TLSConfig) and renews it before it expires
// (Run). Its methods are safe for concurrent use.
type CertRotator struct {
	cfg     CertRotatorConfig
	log     *slog.Logger
	current atomic.Pointer[servedCert]
}

// NewCertRotator checks cfg and makes the first certificate (OnRenew is not called for it).
func NewCertRotator(cfg CertRotatorConfig) (*CertRotator, error) {
	if cfg.Validity == 0 {
		cfg.Validity = DefaultCertValidity
	}
	if cfg.RenewBefore == 0 {
		cfg.RenewBefore = min(DefaultCertRenewBefore, cfg.Validity/4)
	}
	if cfg.RenewBefore < 0 || cfg.RenewBefore >= cfg.Validity {
		return nil, fmt.Errorf("netcode: RenewBefore %v must be in [0, Validity %v)", cfg.RenewBefore, cfg.Validity)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	r := &CertRotator{cfg: cfg, log: cfg.Logger.With(logkey.Component, "netcode-cert")}
	cert, d, err := SelfSignedCert(cfg.Hosts, cfg.Validity)
	if err != nil {
		return nil, err
	}
	r.current.Store(&servedCert{cert: &cert, digest: d})
	return r, nil
}

// Digest returns the digest of the certificate being served now.
func (r *CertRotator) Digest() CertDigest { return r.current.Load().digest }

// Certificate returns the certificate being served now.
func (r *CertRotator) Certificate() *tls.Certificate { return r.current.Load().cert }

// TLSConfig returns a TLS configuration that serves the current certificate, for
// ServerConfig.TLSConfig.
func (r *CertRotator) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return r.current.Load().cert, nil
		},
	}
}

// Run renews the certificate RenewBefore its expiry until ctx ends, then returns ctx's cause.
// Each renewal makes a new certificate, calls OnRenew with its digest and, once that returned
// nil, serves it.
func (r *CertRotator) Run(ctx context.Context) error {
	for {
		renewAt := r.current.Load().cert.Leaf.NotAfter.Add(-r.cfg.RenewBefore)
		if err := backoff.Sleep(ctx, time.Until(renewAt)); err != nil {
			return context.Cause(ctx)
		}
		b := renewRetry.Start()
		for {
			err := r.renew(ctx)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			wait := b.Next()
			r.log.Error("netcode certificate renewal failed; the old certificate is served meanwhile", logkey.Err, err, "retry_in", wait, "old_expires", r.current.Load().cert.Leaf.NotAfter)
			if err := backoff.Sleep(ctx, wait); err != nil {
				return context.Cause(ctx)
			}
		}
	}
}

// renew makes a new certificate, has OnRenew publish its digest, then serves it.
func (r *CertRotator) renew(ctx context.Context) error {
	cert, d, err := SelfSignedCert(r.cfg.Hosts, r.cfg.Validity)
	if err != nil {
		return err
	}
	if r.cfg.OnRenew != nil {
		if err := r.cfg.OnRenew(ctx, d); err != nil {
			return fmt.Errorf("OnRenew: %w", err)
		}
	}
	old := r.current.Swap(&servedCert{cert: &cert, digest: d})
	r.log.Info("netcode certificate renewed", "digest", d.String(), "expires", cert.Leaf.NotAfter, "old_digest", old.digest.String())
	return nil
}
