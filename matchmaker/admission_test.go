package matchmaker

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestAdmissionFIFOAndCancel(t *testing.T) {
	a := newAdmission(1)
	ctx := context.Background()
	if err := a.acquire(ctx, time.Hour, nil); err != nil {
		t.Fatal(err)
	}
	// Second waits at position 1; third at 2 and gives up; fourth at 3.
	got := make(chan int, 10)
	second := make(chan error, 1)
	go func() { second <- a.acquire(ctx, time.Hour, func(p int) { got <- p }) }()
	if p := <-got; p != 1 {
		t.Fatalf("second at position %d", p)
	}
	cctx, cancel := context.WithCancel(ctx)
	third := make(chan error, 1)
	go func() { third <- a.acquire(cctx, time.Hour, func(p int) { got <- p }) }()
	if p := <-got; p != 2 {
		t.Fatalf("third at position %d", p)
	}
	cancel()
	if err := <-third; !errors.Is(err, context.Canceled) {
		t.Fatalf("third: %v", err)
	}
	if a.queued() != 1 {
		t.Fatalf("queued %d", a.queued())
	}
	a.release() // to the second
	if err := <-second; err != nil {
		t.Fatal(err)
	}
	a.release()
	// All free again: immediate.
	if err := a.acquire(ctx, time.Hour, func(int) { t.Error("queued with a free slot") }); err != nil {
		t.Fatal(err)
	}
	a.release()
	if a.inUse != 0 {
		t.Fatalf("inUse %d", a.inUse)
	}
}
