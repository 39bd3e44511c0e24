package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/quic-go/quic-go"

	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/protocol"
)

// rustDigestRE is a digest as bevygap_server_plugin stores it: wtransport's Sha256Digest
// display, 32 lower-case hex bytes joined by ':'.
var rustDigestRE = regexp.MustCompile(`^[0-9a-f]{2}(:[0-9a-f]{2}){31}$`)

// TestDevWebTransportPlay runs `bevygap dev --game-transport webtransport` and `bevygap play`
// (auto) against it: play connects over WebTransport pinned to the session's cert_digest; that
// digest is the SHA-256 of the certificate the game server presents (checked with a QUIC
// handshake of our own); cert_digests holds it in the Rust plugin's format under the IP key and
// one deployment key; once the deployment stops (the player left, the empty deployment
// expired) both keys are gone.
func TestDevWebTransportPlay(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole stack")
	}
	t.Parallel()
	ctx, ctrlC := context.WithCancel(t.Context())
	defer ctrlC()
	// A boot time of at least 0.5 s makes the matchmaker treat each new deployment as fresh and
	// wait (up to its CertDigestWait) for the game server's digest, as on Edgegap; with an
	// instant boot it could ask before the in-process game server published it.
	stdout, stderr, exit := startDev(ctx, "--game-transport", "webtransport",
		"--boot-time", "600ms", "--empty-ttl", "300ms", "--log-level", "warn")
	bannerRE := regexp.MustCompile(`NATS\s+(nats://\S+)[\s\S]*HTTP\s+(http://\S+)[\s\S]*Game\s+.*over webtransport[\s\S]*Browser\s+(http://\S+/play/)`)
	var natsURL, url string
	eventually.True(t, 20*time.Second, func() bool {
		select {
		case code := <-exit:
			t.Fatalf("bevygap dev exited early with %d: %s", code, stderr.String())
		default:
		}
		if m := bannerRE.FindStringSubmatch(stdout.String()); m != nil {
			natsURL, url = m[1], m[2]
		}
		return url != ""
	}, "the banner of bevygap dev (NATS, HTTP, game over webtransport, browser page)")

	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bevygap dev's log:\n%s", stderr.String())
		}
	})
	code, out, errOut := runCLIContext(ctx, nil, "play", "--url", url, "--packets", "3", "--json", "--timeout", "60s")
	if code != 0 {
		t.Fatalf("bevygap play: exit %d\n%s\n%s", code, out, errOut)
	}
	var res playResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("play --json: %v\n%s", err, out)
	}
	gs, sess := res.GameServer, res.Session
	if sess == nil || gs == nil || !gs.Connected || gs.Transport != "webtransport" || gs.PacketsReceived != 3 {
		t.Fatalf("play: session %+v, game server %+v", sess, gs)
	}
	if !rustDigestRE.MatchString(sess.CertDigest) {
		t.Fatalf("session cert_digest %q is not in the Rust plugin's format", sess.CertDigest)
	}

	// The certificate the game server presents, seen by a QUIC handshake of our own.
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(hctx, sess.Server, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h3"}}, nil)
	if err != nil {
		t.Fatalf("QUIC handshake with %s: %v", sess.Server, err)
	}
	presented := qc.ConnectionState().TLS.PeerCertificates[0].Raw
	_ = qc.CloseWithError(0, "")
	sum := sha256.Sum256(presented)
	if got := strings.ReplaceAll(sess.CertDigest, ":", ""); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("session cert_digest %s, but the server presents a certificate with SHA-256 %x", sess.CertDigest, sum)
	}

	// cert_digests, as natscli shows it: `nats kv get cert_digests 127.0.0.1`.
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, protocol.BucketCertDigests)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "127.0.0.1"); err != nil || string(e.Value()) != sess.CertDigest {
		t.Fatalf("cert_digests[127.0.0.1] = %v, %v; want %s", e, err, sess.CertDigest)
	}
	deploymentKeys := func() map[string]string {
		keys := map[string]string{}
		lister, err := kv.ListKeysFiltered(ctx, "127.0.0.1.*")
		if err != nil {
			t.Fatal(err)
		}
		for k := range lister.Keys() {
			if e, err := kv.Get(ctx, k); err == nil {
				keys[k] = string(e.Value())
			}
		}
		return keys
	}
	if keys := deploymentKeys(); len(keys) != 1 || !strings.Contains(strings.Join(mapValues(keys), " "), sess.CertDigest) {
		t.Fatalf("deployment keys %v, want one with %s", keys, sess.CertDigest)
	}

	// The player left; the matchmaker deleted the session; the empty deployment stops after
	// 300 ms and its game server removes its keys.
	eventually.True(t, 20*time.Second, func() bool {
		_, err := kv.Get(ctx, "127.0.0.1")
		return errors.Is(err, jetstream.ErrKeyNotFound) && len(deploymentKeys()) == 0
	}, "cert_digests keys removed after the deployment stopped")

	ctrlC()
	select {
	case code := <-exit:
		if code != 0 {
			t.Fatalf("bevygap dev exited with %d: %s", code, stderr.String())
		}
	case <-time.After(40 * time.Second):
		t.Fatal("bevygap dev did not stop")
	}
}

// mapValues returns the values of m.
func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
