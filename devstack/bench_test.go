package devstack

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkPlayerRound measures one player's whole round through the full stack, on warm
// deployments: WebSocket matchmaking, netcode connect, move + chat + echo, disconnect. Players
// run in parallel (b.RunParallel), so ns/op is the throughput of the stack.
func BenchmarkPlayerRound(b *testing.B) {
	st, err := Start(b.Context(), Config{
		BootTime: 100 * time.Millisecond, BootJitter: -1, EmptyTTL: time.Minute,
		ShutdownTimeout: time.Second, GameTick: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(b.Output(), &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := st.Shutdown(ctx); err != nil {
			b.Error(err)
		}
	}()
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			ctx, cancel := context.WithTimeout(b.Context(), testPlayerTimeout)
			_, _, err := playOneRound(ctx, st, i)
			cancel()
			if err != nil {
				b.Error(err)
				return
			}
			i++
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "players/s")
}
