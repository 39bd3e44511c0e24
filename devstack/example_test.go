package devstack_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/devstack"
	"github.com/bevygap-go/bevygap/examples/dotroom/roomclient"
)

// A whole bevygap on random loopback ports, one player, and a clean shutdown.
func Example() {
	ctx := context.Background()
	st, err := devstack.Start(ctx, devstack.Config{
		BootTime: 200 * time.Millisecond,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	info := st.Info()
	player, sess, err := roomclient.Join(ctx, info.HTTPURL, info.AppName, info.AppVersion, client.Options{})
	if err == nil {
		fmt.Println("playing on", sess.ServerAddr, "as", player.ID())
		_ = player.Close()
	}
	shutdownCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := st.Shutdown(shutdownCtx); err != nil { // errors.Is(err, devstack.ErrLeakedSessions)
		fmt.Println(err)
	}
}
