package gameserver

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkHooks measures what the netcode server pays per client: one ClientConnected plus one
// ClientDisconnected (queueing only; no NATS round trip on the caller's goroutine).
func BenchmarkHooks(b *testing.B) {
	nc := connect(b)
	cfg := fastConfig(testArbitrium("http://127.0.0.1:1/ctx", "http://127.0.0.1:1/stop"))
	cfg.MaxPendingEvents = 1 << 30
	a, err := New(cfg, nc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		a.ClientConnected(uint64(i))
		a.ClientDisconnected(uint64(i))
	}
}

// BenchmarkAuthorizeClientCached measures the repeated connection requests of one handshake,
// answered from memory after the first lookup.
func BenchmarkAuthorizeClientCached(b *testing.B) {
	nc := connect(b)
	a, err := New(fastConfig(testArbitrium("http://127.0.0.1:1/ctx", "http://127.0.0.1:1/stop")), nc,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	a.rememberAuthorization(42, "s-42")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.AuthorizeClient(ctx, 42); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEventsWritten measures end-to-end throughput of the event writer: connect and
// disconnect events written to active_connections on the embedded NATS server.
func BenchmarkEventsWritten(b *testing.B) {
	nc := connect(b)
	resetBuckets(b, nc, 1)
	a, err := New(fastConfig(testArbitrium("http://127.0.0.1:1/ctx", "http://127.0.0.1:1/stop")), nc,
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	a.cfg.MaxPendingEvents = 1 << 30
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go a.processEvents(ctx, false)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := uint64(i + 1)
		a.rememberAuthorization(id, "bench-s")
		a.ClientConnected(id)
		a.ClientDisconnected(id)
	}
	for a.pending() > 0 {
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(2*b.N)/b.Elapsed().Seconds(), "events/s")
}

func BenchmarkContextJSON(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(contextBody)))
	for b.Loop() {
		if _, err := contextJSON([]byte(contextBody)); err != nil {
			b.Fatal(err)
		}
	}
}
