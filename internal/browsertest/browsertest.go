// Package browsertest starts Debian's chromium, headless, for tests that drive a page with
// chromedp: one place for the browser's path, flags, console checking and screenshots.
package browsertest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/chromedp/chromedp"
)

// ExecPathEnv names the environment variable that may point at the browser binary.
const ExecPathEnv = "BEVYGAP_CHROMIUM"

// ArtifactsEnv names the environment variable of the directory screenshots go to.
const ArtifactsEnv = "BEVYGAP_ARTIFACTS"

// ExecPath returns the chromium binary: $BEVYGAP_CHROMIUM, else chromium or chromium-browser on
// PATH. It never downloads a browser.
func ExecPath() (string, error) {
	if p := os.Getenv(ExecPathEnv); p != "" {
		return p, nil
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("chromium is not installed (apt-get install -y chromium, or set " + ExecPathEnv + ")")
}

// Browser is one headless chromium with one tab; its context runs chromedp actions.
type Browser struct {
	// Ctx is the tab's chromedp context; it ends with the test.
	Ctx context.Context

	mu      sync.Mutex
	console []chromedp.ConsoleMessage
}

// Start launches chromium for t (skipping t with a clear message when it is not installed),
// with a fresh profile, and records every console message of the tab. It stops the browser
// when t ends.
func Start(t testing.TB) *Browser {
	t.Helper()
	path, err := ExecPath()
	if err != nil {
		t.Skip("skipping the browser test: " + err.Error())
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	b := &Browser{Ctx: ctx}
	// Start the browser and the tab now, then listen to the tab's console.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			b.mu.Lock()
			b.console = append(b.console, m)
			b.mu.Unlock()
		}
	}()
	return b
}

// Errors returns the console errors and uncaught exceptions seen so far (console.error, browser
// log entries of level error such as failed loads, exceptions, unhandled rejections).
func (b *Browser) Errors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.console {
		if m.Type == chromedp.ConsoleError || m.IsException() {
			out = append(out, m.String())
		}
	}
	return out
}

// ArtifactDir returns the directory for screenshots of test name: $BEVYGAP_ARTIFACTS/<name>,
// else a new directory under the system's temporary directory that is kept after the test.
// It logs the path.
func ArtifactDir(t testing.TB, name string) string {
	t.Helper()
	var dir string
	if base := os.Getenv(ArtifactsEnv); base != "" {
		dir = filepath.Join(base, name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	} else {
		d, err := os.MkdirTemp("", "bevygap-"+strings.ReplaceAll(name, "/", "-")+"-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	t.Logf("artifacts (screenshots) in %s", dir)
	return dir
}

// Screenshot saves a full-page PNG of the tab as dir/name.png and returns its path.
func (b *Browser) Screenshot(dir, name string) (string, error) {
	png, err := chromedp.Run(b.Ctx, chromedp.FullScreenshot(100))
	if err != nil {
		return "", fmt.Errorf("screenshot %s: %w", name, err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		return "", err
	}
	return p, nil
}
