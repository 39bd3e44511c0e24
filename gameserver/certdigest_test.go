package gameserver

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// rustDigest formats the SHA-256 of der as wtransport 0.5.0's Sha256Digest Display (what
// bevygap_server_plugin stores): lower-case hex bytes joined by ':'. Written independently of
// netcode.CertDigest.String on purpose.
func rustDigest(der []byte) string {
	sum := sha256.Sum256(der)
	parts := make([]string, len(sum))
	for i, b := range sum {
		parts[i] = hex.EncodeToString([]byte{b})
	}
	return strings.Join(parts, ":")
}

// servedDigest returns the digest of the certificate tc serves now.
func servedDigest(t *testing.T, tc *tls.Config) string {
	t.Helper()
	if tc == nil {
		t.Fatal("no TLS config")
	}
	cert, err := tc.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return rustDigest(cert.Certificate[0])
}

func TestTransportAccessors(t *testing.T) {
	t.Parallel()
	inBubble(t, func(t *testing.T, w *fakeWorld) {
		udp, _ := w.newAgent(t, w.config())
		if udp.Transport() != netcode.TransportUDP || udp.TLSConfig() != nil || udp.CertDigest() != "" {
			t.Errorf("UDP agent: transport %q, TLS %v, digest %q", udp.Transport(), udp.TLSConfig(), udp.CertDigest())
		}
		cfg := w.config()
		cfg.Transport = netcode.TransportWebTransport
		cfg.CertHosts = []string{"9170f5211e17.pr.edgegap.net"}
		wt, _ := w.newAgent(t, cfg)
		if wt.Transport() != netcode.TransportWebTransport {
			t.Errorf("transport %q", wt.Transport())
		}
		if got := servedDigest(t, wt.TLSConfig()); got != wt.CertDigest() {
			t.Errorf("CertDigest %q, served certificate's %q", wt.CertDigest(), got)
		}
		cert, _ := wt.TLSConfig().GetCertificate(&tls.ClientHelloInfo{})
		leaf := cert.Leaf
		if len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(netip.MustParseAddr("127.0.0.1").AsSlice()) ||
			len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != cfg.CertHosts[0] {
			t.Errorf("certificate names %v %v", leaf.IPAddresses, leaf.DNSNames)
		}
		if d := leaf.NotAfter.Sub(leaf.NotBefore); d > 14*24*time.Hour {
			t.Errorf("certificate valid for %v, browsers pin at most 14 days", d)
		}
	})
}

// TestCertDigestRenewal: on fake time, the renewal publishes the new digest under both keys
// while the old certificate is still served, and serves the new one afterwards; an IP key that
// another deployment took over stays theirs; while NATS is down the old certificate is served.
func TestCertDigestRenewal(t *testing.T) {
	t.Parallel()
	const ipKey, depKey = "127.0.0.1", "127.0.0.1.9170f5211e17"
	tests := []struct {
		name string
		// before runs just before the renewal is due.
		before func(w *fakeWorld)
		// outage: NATS is down at the renewal and comes back after it.
		outage bool
		// wantIP: the IP key after the renewal: "new", or a literal value.
		wantIP string
	}{
		{name: "ip key ours", wantIP: "new"},
		{name: "ip key taken by another deployment", before: func(w *fakeWorld) {
			w.nats.mu.Lock()
			w.nats.writeLocked(protocol.BucketCertDigests, ipKey, []byte("other-deployment"))
			w.nats.mu.Unlock()
		}, wantIP: "other-deployment"},
		{name: "ip key gone", before: func(w *fakeWorld) {
			w.nats.mu.Lock()
			delete(w.nats.kv, protocol.BucketCertDigests+"/"+ipKey)
			w.nats.mu.Unlock()
		}, wantIP: "new"},
		{name: "nats down at renewal", outage: true, wantIP: "new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			inBubble(t, func(t *testing.T, w *fakeWorld) {
				cfg := w.config()
				cfg.Transport = netcode.TransportWebTransport
				cfg.CertValidity = 2 * time.Hour // NotBefore is an hour back: renewal due in 30 min
				cfg.CertRenewBefore = 30 * time.Minute
				var a *Agent
				var servedAtPut []string // the certificate served while each digest was put
				w.nats.fail = func(op, bucket, key string) error {
					if op == "put" && key == depKey {
						servedAtPut = append(servedAtPut, servedDigest(t, a.TLSConfig()))
					}
					return nil
				}
				a, _ = w.newAgent(t, cfg)
				go func() { _ = a.Run(t.Context()) }()
				<-a.Ready()
				old := a.CertDigest()
				if v, _ := w.nats.value(protocol.BucketCertDigests, depKey); v != old {
					t.Fatalf("boot: deployment key %q, want %q", v, old)
				}
				if v, _ := w.nats.value(protocol.BucketCertDigests, ipKey); v != old {
					t.Fatalf("boot: IP key %q, want %q", v, old)
				}
				time.Sleep(29 * time.Minute)
				synctest.Wait()
				if tt.before != nil {
					tt.before(w)
				}
				if tt.outage {
					w.nats.setConnected(false)
				}
				time.Sleep(2 * time.Minute) // the renewal is due
				synctest.Wait()
				if tt.outage {
					if got := servedDigest(t, a.TLSConfig()); got != old || a.CertDigest() != old {
						t.Fatalf("NATS down: serving %q (CertDigest %q), want the old %q until the new digest is published", got, a.CertDigest(), old)
					}
					w.nats.setConnected(true)
					time.Sleep(cfg.RetryMax)
					synctest.Wait()
				}
				renewed := a.CertDigest()
				if renewed == old {
					t.Fatal("certificate not renewed")
				}
				if got := servedDigest(t, a.TLSConfig()); got != renewed {
					t.Errorf("serving %q after the renewal, want %q", got, renewed)
				}
				if len(servedAtPut) != 2 || servedAtPut[1] != old {
					t.Errorf("certificates served while the digests were put: %q; the renewed digest must be published while %q is still served", servedAtPut, old)
				}
				if v, _ := w.nats.value(protocol.BucketCertDigests, depKey); v != renewed {
					t.Errorf("deployment key %q, want the renewed %q", v, renewed)
				}
				wantIP := tt.wantIP
				if wantIP == "new" {
					wantIP = renewed
				}
				if v, _ := w.nats.value(protocol.BucketCertDigests, ipKey); v != wantIP {
					t.Errorf("IP key %q, want %q", v, wantIP)
				}
			})
		})
	}
}

// certKV opens the cert_digests bucket of prefix.
func certKV(t *testing.T, prefix string) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return kv(t, js, prefix+protocol.BucketCertDigests)
}

// digestAt returns cert_digests[key], or "" when it does not exist.
func digestAt(t *testing.T, b jetstream.KeyValue, key string) string {
	t.Helper()
	e, err := b.Get(t.Context(), key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return ""
	}
	if err != nil {
		t.Fatalf("get cert_digests[%s]: %v", key, err)
	}
	return string(e.Value())
}

// wtAgent starts a WebTransport agent of deployment requestID on 127.0.0.1 with bucket prefix,
// waits until it is ready and returns it with a function that stops it (Close + Run returned).
func wtAgent(t *testing.T, prefix, requestID string) (*Agent, func()) {
	t.Helper()
	cs := okContext(t)
	arb := testArbitrium(cs.URL+"/ctx", cs.URL+"/stop")
	arb.RequestID = requestID
	cfg := fastConfig(arb)
	cfg.Transport = netcode.TransportWebTransport
	cfg.Buckets = bus.BucketOptions{Prefix: prefix}
	a, _, runErr := startAgent(t, cfg, connect(t))
	select {
	case <-a.Ready():
	case <-time.After(10 * time.Second):
		t.Fatalf("agent %s not ready", requestID)
	}
	return a, func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Fatalf("Close %s: %v", requestID, err)
		}
		if err := <-runErr; err != nil {
			t.Fatalf("Run %s: %v", requestID, err)
		}
	}
}

// TestCertDigestLifecycle runs WebTransport agents on one IP against the real NATS KV: each
// publishes the digest of the certificate it serves, in the Rust plugin's format, under its
// deployment key and the IP key; stopping removes the deployment key and releases the IP key
// only when no other live deployment on the IP uses it.
func TestCertDigestLifecycle(t *testing.T) {
	t.Parallel()
	const ip = "127.0.0.1"
	t.Run("newest_stops_first", func(t *testing.T) {
		t.Parallel()
		const prefix = "wtlife1_"
		a, stopA := wtAgent(t, prefix, "dep-a")
		b := certKV(t, prefix)
		da := a.CertDigest()
		if want := servedDigest(t, a.TLSConfig()); da != want || len(da) != 95 {
			t.Fatalf("CertDigest %q, want the served certificate's %q", da, want)
		}
		if got := digestAt(t, b, ip); got != da {
			t.Fatalf("cert_digests[%s] = %q, want %q (the Rust plugin's key and format)", ip, got, da)
		}
		if got := digestAt(t, b, ip+".dep-a"); got != da {
			t.Fatalf("cert_digests[%s.dep-a] = %q, want %q", ip, got, da)
		}

		bAgent, stopB := wtAgent(t, prefix, "dep-b")
		db := bAgent.CertDigest()
		if got := digestAt(t, b, ip); got != db {
			t.Fatalf("after B booted, cert_digests[%s] = %q, want B's %q (newest wins, like the Rust plugin)", ip, got, db)
		}
		stopB()
		if got := digestAt(t, b, ip+".dep-b"); got != "" {
			t.Errorf("B's deployment key left behind: %q", got)
		}
		if got := digestAt(t, b, ip); got != da {
			t.Errorf("after B stopped, cert_digests[%s] = %q, want it handed to the live A: %q", ip, got, da)
		}
		stopA()
		for _, k := range []string{ip, ip + ".dep-a"} {
			if got := digestAt(t, b, k); got != "" {
				t.Errorf("after every deployment stopped, cert_digests[%s] = %q, want gone", k, got)
			}
		}
	})
	t.Run("oldest_stops_first", func(t *testing.T) {
		t.Parallel()
		const prefix = "wtlife2_"
		_, stopA := wtAgent(t, prefix, "dep-a")
		bAgent, stopB := wtAgent(t, prefix, "dep-b")
		b := certKV(t, prefix)
		stopA()
		if got := digestAt(t, b, ip); got != bAgent.CertDigest() {
			t.Errorf("A stopped: cert_digests[%s] = %q, want B's %q untouched", ip, got, bAgent.CertDigest())
		}
		if got := digestAt(t, b, ip+".dep-a"); got != "" {
			t.Errorf("A's deployment key left behind: %q", got)
		}
		stopB()
		if got := digestAt(t, b, ip); got != "" {
			t.Errorf("B stopped last: cert_digests[%s] = %q, want gone", ip, got)
		}
	})
	t.Run("ip_key_of_a_rust_server", func(t *testing.T) {
		t.Parallel()
		const prefix = "wtlife3_"
		_, stopA := wtAgent(t, prefix, "dep-a")
		b := certKV(t, prefix)
		// A Rust game server on the same IP boots and overwrites the IP key.
		const rust = "aa:bb:cc"
		if _, err := b.Put(t.Context(), ip, []byte(rust)); err != nil {
			t.Fatal(err)
		}
		stopA()
		if got := digestAt(t, b, ip); got != rust {
			t.Errorf("cert_digests[%s] = %q, want the Rust server's %q kept", ip, got, rust)
		}
		if got := digestAt(t, b, ip+".dep-a"); got != "" {
			t.Errorf("A's deployment key left behind: %q", got)
		}
	})
}

// TestReleaseIPKeyRaces drives releaseIPKey's compare-and-set against the real KV: a hand-over to
// a deployment that stops before it lands is taken back and the key deleted; a key another
// deployment rewrote meanwhile is left alone.
func TestReleaseIPKeyRaces(t *testing.T) {
	t.Parallel()
	const prefix = "wtrace_"
	a, stopA := wtAgent(t, prefix, "dep-a")
	defer stopA()
	b := certKV(t, prefix)
	mine := a.CertDigest()

	// A stopped deployment "dep-gone" whose digest A handed the IP key to: A's next look finds
	// no live owner and deletes the key.
	if _, err := b.Put(t.Context(), "127.0.0.1", []byte("gone-digest")); err != nil {
		t.Fatal(err)
	}
	a.dmu.Lock()
	a.digest.published = append(a.digest.published, "gone-digest") // as releaseIPKey's hand-over does
	a.dmu.Unlock()
	if err := a.releaseIPKey(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if got := digestAt(t, b, "127.0.0.1"); got != "" {
		t.Errorf("IP key %q, want deleted: its owner is gone", got)
	}

	// Another live deployment on the IP: the key goes to it.
	if _, err := b.Put(t.Context(), "127.0.0.1.dep-live", []byte("live-digest")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Put(t.Context(), "127.0.0.1", []byte(mine)); err != nil {
		t.Fatal(err)
	}
	if err := a.releaseIPKey(t.Context(), b); err != nil {
		t.Fatal(err)
	}
	if got := digestAt(t, b, "127.0.0.1"); got != "live-digest" {
		t.Errorf("IP key %q, want handed to the live deployment", got)
	}
}
