package matchmaker

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/internal/eventually"
)

// TestCertDigestLookup: the deployment's own key wins over the IP key; the IP key is the
// fallback (Rust game servers write only it); for a fresh deployment an IP key older than the
// session is only used when nothing fresh arrives within CertDigestWait.
func TestCertDigestLookup(t *testing.T) {
	t.Parallel()
	b := openBuckets(t, "cd_")
	const wait = 2 * time.Second // only the "nothing new" cases wait it out (in parallel); the others return at once
	log := slog.New(slog.DiscardHandler)
	// direct reads the bucket at every lookup; cached answers from the watched copy a running
	// matchmaker keeps (certcache.go), which must give the same answers.
	direct := &Matchmaker{cfg: Config{CertDigestWait: wait}, b: b, log: log}
	cached := &Matchmaker{cfg: Config{CertDigestWait: wait}, b: b, log: log, certs: newCertCache()}
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() { defer close(stopped); cached.certs.run(ctx, b.CertDigests, log) }()
	t.Cleanup(func() { cancel(); <-stopped })
	const fresh, warm = time.Second, 0

	tests := []struct {
		name string
		// before is written before the session is created; after, after it was created but
		// before the lookup; during, concurrently with the lookup.
		before, after, during map[string]string // key suffix ("" = the IP key, else ".<request id>") -> value
		waited                time.Duration
		want                  string
	}{
		{name: "deployment key wins", before: map[string]string{"": "ip", ".dep": "mine"}, waited: warm, want: "mine"},
		{name: "ip key fallback", before: map[string]string{"": "ip"}, waited: warm, want: "ip"},
		{name: "nothing, warm", waited: warm, want: ""},
		{name: "fresh: ip key of the fresh server", after: map[string]string{"": "fresh-ip"}, waited: fresh, want: "fresh-ip"},
		{name: "fresh: deployment key arrives", before: map[string]string{"": "older-deployment"}, during: map[string]string{".dep": "mine"}, waited: fresh, want: "mine"},
		{name: "fresh: ip key rewritten", before: map[string]string{"": "older-deployment"}, during: map[string]string{"": "rust-fresh"}, waited: fresh, want: "rust-fresh"},
		{name: "fresh: nothing new, old ip key", before: map[string]string{"": "older-deployment"}, waited: fresh, want: "older-deployment"},
		{name: "fresh: nothing at all", waited: fresh, want: ""},
	}
	for mi, mode := range []struct {
		name string
		m    *Matchmaker
	}{{"direct", direct}, {"cached", cached}} {
		for i, tt := range tests {
			t.Run(mode.name+"/"+tt.name, func(t *testing.T) {
				t.Parallel()
				certDigestCase(t, b, mode.m, netip.AddrFrom4([4]byte{10, 0, byte(mi), byte(i + 1)}), tt.before, tt.after, tt.during, tt.waited, tt.want, wait)
			})
		}
	}
}

// certDigestCase runs one case of TestCertDigestLookup on its own IP.
func certDigestCase(t *testing.T, b *bus.Buckets, m *Matchmaker, ip netip.Addr, before, after, during map[string]string, waited time.Duration, want string, wait time.Duration) {
	var last uint64
	put := func(kv map[string]string) {
		for suffix, v := range kv {
			key := ip.String()
			if suffix != "" {
				key += suffix
			}
			rev, err := b.CertDigests.Put(context.Background(), key, []byte(v))
			if err != nil {
				t.Error(err)
			}
			last = max(last, rev)
		}
	}
	put(before)
	createdAt := time.Now() // entries carry the (same machine's) server time
	put(after)
	if m.certs != nil {
		// The copy follows the bucket a delivery later; the direct reads see an acknowledged
		// write at once. Compare them on the same bucket contents.
		eventually.True(t, 5*time.Second, func() bool { return m.certs.seen(last) }, "cert cache saw revision %d", last)
	}
	done := make(chan string, 1)
	go func() { done <- m.certDigest(t.Context(), ip, "dep", createdAt, waited) }()
	put(during)
	select {
	case got := <-done:
		if got != want {
			t.Errorf("certDigest = %q, want %q", got, want)
		}
	case <-time.After(wait + 5*time.Second):
		t.Fatal("certDigest did not return")
	}
}
