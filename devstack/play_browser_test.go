package devstack

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/examples/dotroom/room"
	"github.com/bevygap-go/bevygap/examples/dotroom/roomclient"
	"github.com/bevygap-go/bevygap/internal/browsertest"
	"github.com/bevygap-go/bevygap/netcode"
)

// playPage is what the player page shows: body data-state and data-snapshots, the status line
// and the room line.
type playPage struct {
	State     string `json:"state"`
	Snapshots int    `json:"snapshots"`
	Me        string `json:"me"` // "x,y" of the player's dot
	Status    string `json:"status"`
	Info      string `json:"info"`
}

// readPlayPage reads a playPage from the DOM.
const readPlayPage = `({state: document.body.dataset.state || "", snapshots: Number(document.body.dataset.snapshots || 0), me: document.body.dataset.me || "",
  status: (document.getElementById("status") || {}).textContent || "", info: (document.getElementById("info") || {}).textContent || ""})`

// TestBrowserPlays: with GameTransport webtransport and Play, a headless chromium opens /play/,
// where the dotroom player (Go compiled to WebAssembly) asks the front door for a session over
// the WebSocket and joins the game server over the browser's WebTransport, pinned to the
// certificate digest from the session. The page must reach "connected", receive room
// snapshots in which a second (native Go) player shows up, and log no console error. The
// screenshot's path is in the log (BEVYGAP_ARTIFACTS chooses the directory).
func TestBrowserPlays(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test in a browser")
	}
	t.Parallel()
	b := browsertest.Start(t) // skips without chromium
	st, err := Start(t.Context(), Config{
		GameTransport:   netcode.TransportWebTransport,
		Play:            true,
		BootTime:        600 * time.Millisecond, // fresh deployments: the matchmaker waits for the digest
		BootJitter:      -1,
		ShutdownTimeout: 2 * time.Second,
		GameTick:        50 * time.Millisecond,
		Logger:          slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), testShutdownLimit)
		defer cancel()
		if err := st.Shutdown(cctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	info := st.Info()
	if info.PlayURL != info.HTTPURL+"/play/" {
		t.Fatalf("PlayURL %q", info.PlayURL)
	}
	select { // the first build of the player for GOOS=js takes a while on a cold build cache
	case <-st.play.Ready():
	case <-time.After(5 * time.Minute):
		t.Fatal("the browser client was not built within 5 minutes")
	}
	if err := st.play.Err(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), testPlayerTimeout)
	defer cancel()
	if err := chromedp.Do(b.Ctx, chromedp.EmulateViewport(900, 620), chromedp.Navigate(info.PlayURL)); err != nil {
		t.Fatal(err)
	}
	wait := func(what string, ok func(playPage) bool) playPage {
		t.Helper()
		var last playPage
		for {
			p, err := chromedp.Run(b.Ctx, chromedp.Evaluate[playPage](readPlayPage))
			if err == nil {
				last = p
				if ok(last) {
					return last
				}
				if last.State == "error" || last.State == "disconnected" {
					t.Fatalf("page %s: %s (console: %q)", last.State, last.Status, b.Errors())
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("page never %s: last %+v (err %v, console %q)", what, last, err, b.Errors())
			case <-time.After(50 * time.Millisecond):
			}
		}
	}
	p := wait("connected with snapshots", func(p playPage) bool { return p.State == "connected" && p.Snapshots >= 3 })
	if !strings.Contains(p.Info, "1 player(s)") && !strings.Contains(p.Info, "2 player(s)") {
		t.Errorf("room line %q", p.Info)
	}

	// The arrow keys move the dot: the server's next snapshots show it elsewhere.
	from := p.Me
	for _, key := range []string{kb.ArrowDown, kb.ArrowDown, kb.ArrowLeft} {
		if err := chromedp.Do(b.Ctx, chromedp.KeyEvent(key)); err != nil {
			t.Fatal(err)
		}
	}
	wait("moving the dot with the arrow keys", func(p playPage) bool { return p.Me != "" && p.Me != from })

	// A native Go player joins the same game: the browser sees two dots.
	other, _, err := roomclient.Join(ctx, info.HTTPURL, info.AppName, info.AppVersion, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := other.Move(room.MaxStep, 1); err != nil {
		t.Fatal(err)
	}
	wait("showing the second player", func(p playPage) bool { return strings.Contains(p.Info, "2 player(s)") })

	dir := browsertest.ArtifactDir(t, "TestBrowserPlays")
	shot, err := b.Screenshot(dir, "play")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", shot)
	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("console errors: %q", errs)
	}
}
