package devstack

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/bevygap-go/bevygap/client"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/examples/dotroom/roomclient"
	"github.com/bevygap-go/bevygap/httpd"
	"github.com/bevygap-go/bevygap/internal/browsertest"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/matchmaker"
)

// pageNumbers are the numbers the status page shows, read from its DOM.
type pageNumbers struct {
	Waiting     string `json:"waiting"`
	Deployments string `json:"deployments"`
	EgSessions  string `json:"eg-sessions"`
	Creating    string `json:"s-creating"`
	WaitReady   string `json:"s-waiting"`
	Ready       string `json:"s-ready"`
	Claimed     string `json:"s-claimed"`
	Deleting    string `json:"s-deleting"`
	Granted     string `json:"grants-total"`
	Failed      string `json:"failed-total"`
	TTRCount    string `json:"ttr-n"`
	Errors      string `json:"errors"`
	Calls       string `json:"calls"`
}

const readPage = `JSON.stringify(Object.fromEntries(["waiting","deployments","eg-sessions","s-creating","s-waiting","s-ready",
  "s-claimed","s-deleting","grants-total","failed-total","ttr-n","errors","calls"].map(id => [id, document.getElementById(id).textContent])))`

// TestStatusPageInBrowser drives plays through a dev stack and checks, in headless chromium,
// that /status shows what the simulator's admin state says, without console errors; it saves
// desktop and phone screenshots (path in the log; BEVYGAP_ARTIFACTS chooses the directory).
func TestStatusPageInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	t.Parallel()
	b := browsertest.Start(t) // skips without chromium
	st, err := Start(t.Context(), Config{
		BootTime:        testBoot,
		BootJitter:      -1,
		Sockets:         2, // three players need two deployments
		ShutdownTimeout: 2 * time.Second,
		GameTick:        50 * time.Millisecond,
		Status:          httpd.StatusConfig{Open: true, PublishInterval: 100 * time.Millisecond},
		Matchmaker: func(c *matchmaker.Config) {
			c.StatusInterval = 100 * time.Millisecond
			c.ReconcileInterval = 200 * time.Millisecond
		},
		// The first session create fails (429): a recent error and a rate_limited call.
		Faults: edgegapsim.Faults{Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{
			edgegap.EndpointSessionCreate: {FailNext: 1, Status: http.StatusTooManyRequests},
		}},
		Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError})),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), testShutdownLimit)
		defer cancel()
		_ = st.Shutdown(cctx)
	})
	info := st.Info()
	ctx, cancel := context.WithTimeout(t.Context(), testPlayerTimeout)
	defer cancel()

	if _, err := client.Request(ctx, info.HTTPURL, info.AppName, info.AppVersion, client.Options{}); err == nil {
		t.Fatal("the first request should fail with the injected 429")
	}
	// Three players who connect (claimed sessions) and one who only takes a token (ready).
	for range 3 {
		p, _, err := roomclient.Join(ctx, info.HTTPURL, info.AppName, info.AppVersion, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
	}
	if _, err := client.Request(ctx, info.HTTPURL, info.AppName, info.AppVersion, client.Options{}); err != nil {
		t.Fatal(err)
	}

	if err := chromedp.Do(b.Ctx, chromedp.EmulateViewport(1280, 900), chromedp.Navigate(info.HTTPURL+"/status")); err != nil {
		t.Fatal(err)
	}
	var page pageNumbers
	var sim edgegapsim.State
	eventually.NoError(t, 20*time.Second, func() error {
		if err := getJSON(ctx, info.SimURL+"/admin/state", &sim); err != nil {
			return err
		}
		text, err := chromedp.Run(b.Ctx, chromedp.Evaluate[string](readPage))
		if err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(text), &page); err != nil {
			return err
		}
		ready := 0
		for _, s := range sim.Sessions {
			if s.Ready {
				ready++
			}
		}
		want := pageNumbers{
			Waiting:     "0",
			Deployments: fmt.Sprint(sim.LiveDeployments),
			EgSessions:  fmt.Sprint(sim.LiveSessions),
			Creating:    "0",
			WaitReady:   "0",
			Ready:       fmt.Sprint(sim.LiveSessions - 3),
			Claimed:     "3",
			Deleting:    "0",
			Granted:     "4",
			Failed:      "1",
			TTRCount:    "4",
		}
		got := page
		got.Errors, got.Calls = "", ""
		if sim.LiveSessions != 4 || ready != 4 || got != want {
			return fmt.Errorf("page %+v, simulator %d sessions (%d ready) on %d deployments, want page %+v",
				got, sim.LiveSessions, ready, sim.LiveDeployments, want)
		}
		return nil
	}, "status page matching the simulator")
	t.Logf("page: %+v", page)
	if page.Deployments != "2" {
		t.Errorf("deployments %s, want 2 (2 sockets each, 4 sessions)", page.Deployments)
	}
	for _, want := range []string{"429", "session_create", "rate_limited"} {
		if !strings.Contains(page.Errors+page.Calls, want) {
			t.Errorf("errors %q / calls %q lack %q", page.Errors, page.Calls, want)
		}
	}

	dir := browsertest.ArtifactDir(t, "status")
	desktop, err := b.Screenshot(dir, "status-desktop")
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(b.Ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile)); err != nil {
		t.Fatal(err)
	}
	// A phone-width page has no horizontal scrolling.
	if overflow, err := chromedp.Run(b.Ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`)); err != nil || overflow {
		t.Errorf("phone width: horizontal overflow %v (%v)", overflow, err)
	}
	phone, err := b.Screenshot(dir, "status-phone")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots: %s %s", desktop, phone)
	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("console errors: %q", errs)
	}
}

func getJSON(ctx context.Context, url string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
