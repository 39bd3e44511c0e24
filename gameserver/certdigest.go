package gameserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/bevygap-go/bevygap/internal/logkey"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/protocol"
)

// This file is the certificate side of the agent: for a WebTransport game server it owns the
// self-signed certificate (a netcode.CertRotator), publishes its digest in cert_digests under the
// public IP (the key bevygap_server_plugin writes and the Rust matchmaker reads) and under a key
// of this deployment (which the Go matchmaker prefers, since deployments may share an IP), renews
// it before it expires, and removes the keys when the deployment stops.

// casAttempts bounds the compare-and-set loops on the shared IP key; each lost race means
// another deployment on the same IP wrote it meanwhile, so a handful is plenty.
const casAttempts = 8

// errCASContention ends a compare-and-set loop that kept losing races (retried with backoff).
var errCASContention = errors.New("cert_digests: the IP key keeps changing")

// digestState is what the agent published in cert_digests. Guarded by Agent.dmu.
type digestState struct {
	// current is the digest being served (and published, once boot stored it).
	current string
	// published holds every digest this deployment ever put (the IP key may still hold an older
	// one when another deployment's write raced with a renewal).
	published []string
	// touched is set once a put was attempted: from then on the keys are removed at stop.
	touched bool
}

// initCert prepares the certificate side for cfg: the rotator for WebTransport, the static digest
// otherwise. It does no I/O.
func (a *Agent) initCert() error {
	a.digest.current = a.cfg.CertDigest
	a.ipKey, _ = protocol.CertDigestIPKey(a.cfg.Arbitrium.PublicIP)
	a.depKey, _ = protocol.CertDigestDeploymentKey(a.cfg.Arbitrium.PublicIP, a.cfg.Arbitrium.RequestID)
	a.depFilter, _ = protocol.CertDigestDeploymentFilter(a.cfg.Arbitrium.PublicIP)
	if a.cfg.Transport != netcode.TransportWebTransport {
		return nil
	}
	hosts := append([]string{a.cfg.Arbitrium.PublicIP.Unmap().String()}, a.cfg.CertHosts...)
	r, err := netcode.NewCertRotator(netcode.CertRotatorConfig{
		Hosts:       hosts,
		Validity:    a.cfg.CertValidity,
		RenewBefore: a.cfg.CertRenewBefore,
		OnRenew:     a.publishRenewedDigest,
		Logger:      a.log,
	})
	if err != nil {
		return fmt.Errorf("%w: WebTransport certificate: %w", ErrConfig, err)
	}
	a.rotator = r
	a.digest.current = r.Digest().String()
	return nil
}

// Transport returns the transport the game server runs (Config.Transport; UDP when unset). Use it
// for netcode.ServerConfig.Transport.
func (a *Agent) Transport() netcode.Transport {
	if a.cfg.Transport == "" {
		return netcode.TransportUDP
	}
	return a.cfg.Transport
}

// TLSConfig returns the TLS configuration of a WebTransport game server, for
// netcode.ServerConfig.TLSConfig: it serves the agent's current self-signed certificate, which
// the agent renews before it expires (publishing the new digest before serving it). It is nil
// for a UDP game server.
func (a *Agent) TLSConfig() *tls.Config {
	if a.rotator == nil {
		return nil
	}
	return a.rotator.TLSConfig()
}

// CertDigest returns the digest of the certificate the game server serves now, in the form stored
// in cert_digests ("ab:cd:…", see netcode.CertDigest.String), or Config.CertDigest; "" for a UDP
// game server without one.
func (a *Agent) CertDigest() string {
	a.dmu.Lock()
	defer a.dmu.Unlock()
	return a.digest.current
}

// hasDigest reports whether the agent publishes a certificate digest.
func (a *Agent) hasDigest() bool { return a.CertDigest() != "" }

// markPublished records that digest is (maybe) in cert_digests from now on.
func (a *Agent) markPublished(digest string) {
	a.dmu.Lock()
	defer a.dmu.Unlock()
	a.digest.touched = true
	if !slices.Contains(a.digest.published, digest) {
		a.digest.published = append(a.digest.published, digest)
	}
}

// certBucket returns the cert_digests bucket, failing fast while NATS is down.
func (a *Agent) certBucket(ctx context.Context) (jetstream.KeyValue, error) {
	if !a.nc.IsConnected() {
		return nil, errNotConnected
	}
	bk, err := a.buckets(ctx)
	if err != nil {
		return nil, err
	}
	return bk.CertDigests, nil
}

// storeCertDigest puts the boot digest under the deployment key and the IP key (like the Rust
// plugin: the IP key is simply overwritten, the newest deployment on an IP wins it).
func (a *Agent) storeCertDigest(ctx context.Context) error {
	digest := a.CertDigest()
	return a.retry(ctx, "store cert digest", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, a.cfg.OpTimeout)
		defer cancel()
		kv, err := a.certBucket(ctx)
		if err != nil {
			return err
		}
		a.markPublished(digest)
		for _, key := range a.digestKeys() {
			if _, err := kv.Put(ctx, key, []byte(digest)); err != nil {
				return classifyKV(fmt.Errorf("put %s[%s]: %w", kv.Bucket(), key, err))
			}
		}
		a.log.Info("cert digest stored", "public_ip", a.ipKey, "key", a.depKey, "digest", digest)
		return nil
	}, "public_ip", a.ipKey)
}

// digestKeys returns the keys the digest is written under: the deployment key first (the Go
// matchmaker prefers it, so it must never be older than the IP key), then the IP key.
func (a *Agent) digestKeys() []string {
	keys := make([]string, 0, 2)
	for _, k := range []string{a.depKey, a.ipKey} {
		if k != "" {
			keys = append(keys, k)
		}
	}
	return keys
}

// publishRenewedDigest is the rotator's OnRenew: it publishes the new certificate's digest before
// the rotator serves the certificate. The deployment key is overwritten; the IP key only if it
// still holds one of this deployment's digests (or is missing): if another deployment on the
// same IP took it over meanwhile, it stays theirs. It retries until it succeeds or ctx ends;
// until then the old certificate is served.
func (a *Agent) publishRenewedDigest(ctx context.Context, d netcode.CertDigest) error {
	digest := d.String()
	err := a.retry(ctx, "publish renewed cert digest", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, a.cfg.OpTimeout)
		defer cancel()
		kv, err := a.certBucket(ctx)
		if err != nil {
			return err
		}
		ours := a.publishedDigests()
		a.markPublished(digest)
		if a.depKey != "" {
			if _, err := kv.Put(ctx, a.depKey, []byte(digest)); err != nil {
				return classifyKV(fmt.Errorf("put %s[%s]: %w", kv.Bucket(), a.depKey, err))
			}
		}
		if a.ipKey == "" {
			return nil
		}
		return a.takeIPKey(ctx, kv, digest, ours)
	}, "public_ip", a.ipKey)
	if err != nil {
		return err
	}
	a.dmu.Lock()
	old := a.digest.current
	a.digest.current = digest
	a.dmu.Unlock()
	a.log.Info("renewed certificate's digest published", "public_ip", a.ipKey, "key", a.depKey, "digest", digest, "previous", old)
	return nil
}

// takeIPKey sets the IP key to digest if it is missing or holds one of ours.
func (a *Agent) takeIPKey(ctx context.Context, kv jetstream.KeyValue, digest string, ours []string) error {
	for range casAttempts {
		e, err := kv.Get(ctx, a.ipKey)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = kv.Create(ctx, a.ipKey, []byte(digest))
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // someone put it meanwhile: look again
			}
			return classifyKV(err)
		case err != nil:
			return fmt.Errorf("get %s[%s]: %w", kv.Bucket(), a.ipKey, err)
		}
		if !slices.Contains(ours, string(e.Value())) {
			a.log.Info("IP key of cert_digests belongs to another deployment on this IP; leaving it", "public_ip", a.ipKey)
			return nil
		}
		_, err = kv.Update(ctx, a.ipKey, []byte(digest), e.Revision())
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		return classifyKV(err)
	}
	return errCASContention
}

// publishedDigests returns a copy of every digest this deployment published.
func (a *Agent) publishedDigests() []string {
	a.dmu.Lock()
	defer a.dmu.Unlock()
	return slices.Clone(a.digest.published)
}

// removeCertDigests undoes what the agent wrote in cert_digests when the deployment stops
// (bevygap#6: the Rust plugin leaves its key behind for 14 days). It deletes the deployment key,
// then releases the IP key unless another live deployment on the IP uses it: if it still holds
// one of our digests, it is handed over to another live deployment on the same IP (its
// deployment key's digest), or deleted when there is none. Every write of the shared IP key is a
// compare-and-set on its revision, so a deployment that boots or stops meanwhile never loses its
// value. It retries until done or ctx ends.
func (a *Agent) removeCertDigests(ctx context.Context) error {
	a.dmu.Lock()
	touched := a.digest.touched
	a.dmu.Unlock()
	if !touched {
		return nil
	}
	err := a.retry(ctx, "remove cert digest", func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, a.cfg.OpTimeout)
		defer cancel()
		kv, err := a.certBucket(ctx)
		if err != nil {
			return err
		}
		if a.depKey != "" {
			if err := kv.Delete(ctx, a.depKey); err != nil {
				return classifyKV(fmt.Errorf("delete %s[%s]: %w", kv.Bucket(), a.depKey, err))
			}
		}
		if a.ipKey == "" {
			return nil
		}
		return a.releaseIPKey(ctx, kv)
	}, "public_ip", a.ipKey)
	if err == nil {
		a.log.Info("cert digest removed", "public_ip", a.ipKey, "key", a.depKey)
	}
	return err
}

// releaseIPKey hands the IP key over or deletes it, as removeCertDigests describes.
func (a *Agent) releaseIPKey(ctx context.Context, kv jetstream.KeyValue) error {
	// mine are the values this loop may replace: our digests, and a handed-over digest whose
	// deployment stopped before the hand-over landed.
	mine := a.publishedDigests()
	for range casAttempts {
		e, err := kv.Get(ctx, a.ipKey)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("get %s[%s]: %w", kv.Bucket(), a.ipKey, err)
		}
		value := string(e.Value())
		live, err := a.liveDigests(ctx, kv)
		if err != nil {
			return err
		}
		if slices.Contains(live, value) || !slices.Contains(mine, value) {
			return nil // another live deployment's, or not ours (e.g. a Rust game server's)
		}
		if len(live) > 0 {
			_, err = kv.Update(ctx, a.ipKey, []byte(live[0]), e.Revision())
			if err == nil {
				a.log.Info("IP key of cert_digests handed over to another deployment on this IP", "public_ip", a.ipKey, "digest", live[0])
				mine = append(mine, live[0]) // look again: that deployment may have stopped meanwhile
				continue
			}
		} else {
			err = kv.Delete(ctx, a.ipKey, jetstream.LastRevision(e.Revision()))
			if err == nil {
				return nil
			}
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) && !errors.Is(err, jetstream.ErrKeyExists) {
			return classifyKV(fmt.Errorf("release %s[%s]: %w", kv.Bucket(), a.ipKey, err))
		}
	}
	return errCASContention
}

// liveDigests returns the digests of the other deployments on this IP (their deployment keys),
// ordered by key.
func (a *Agent) liveDigests(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	if a.depFilter == "" {
		return nil, nil
	}
	w, err := kv.Watch(ctx, a.depFilter, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("list %s[%s]: %w", kv.Bucket(), a.depFilter, err)
	}
	defer func() { _ = w.Stop() }()
	byKey := make(map[string]string)
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return nil, fmt.Errorf("list %s[%s]: watcher stopped", kv.Bucket(), a.depFilter)
			}
			if e == nil { // every current value seen
				keys := make([]string, 0, len(byKey))
				for k := range byKey {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				out := make([]string, 0, len(keys))
				for _, k := range keys {
					out = append(out, byKey[k])
				}
				return out, nil
			}
			if e.Key() != a.depKey && e.Operation() == jetstream.KeyValuePut && len(e.Value()) > 0 {
				byKey[e.Key()] = string(e.Value())
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// runRotator renews the certificate once the boot digest is stored, until ctx ends.
func (a *Agent) runRotator(ctx context.Context) {
	select {
	case <-a.digestStored:
	case <-ctx.Done():
		return
	}
	if err := a.rotator.Run(ctx); err != nil && ctx.Err() == nil {
		a.log.Error("certificate renewal stopped", logkey.Err, err)
	}
}
