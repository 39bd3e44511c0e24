// Package webclient puts the dotroom player in a browser: it builds the program in ./wasm (the
// player compiled to WebAssembly, GOOS=js GOARCH=wasm) with the local Go toolchain and serves
// it with its page. `bevygap dev --game-transport webtransport` mounts it at /play/ on the front
// door, so that a browser on the same machine plays the example game:
//
//	GET /play/              index.html: loads wasm_exec.js, then dotroom.wasm
//	GET /play/wasm_exec.js  Go's JavaScript support for WebAssembly ($GOROOT/lib/wasm)
//	GET /play/dotroom.wasm  the player: matchmaking over the front door's WebSocket (same
//	                        origin), then netcode over the browser's WebTransport API, pinned
//	                        to the game server's certificate digest
//
// Why Go compiled to WebAssembly and not a page of JavaScript: the player then is our netcode
// client — the same handshake, keep-alives, replay protection and timeouts as the native
// client, with only the datagram carrier swapped (netcode/webtransport_js.go). A JavaScript
// client would be a second implementation of netcode, and it would need a JavaScript
// ChaCha20-Poly1305 as well: WebCrypto has no such AEAD. The cost is a download of about
// 10 MB, which does not matter on loopback.
//
// Why it is built at run time and not committed: the .wasm is a build product of about 10 MB
// that would go stale with every change of the SDKs. `bevygap dev` builds it when it starts, in
// the background, into a temporary directory (the Go build cache makes later starts take about
// a second); the page says "building" until it is done. The build needs the Go toolchain and
// the bevygap source: the module containing the current directory, or — for a bevygap binary
// installed with `go install …@version` — that version from the module cache. Without them
// the page explains how to get them; nothing else of `bevygap dev` depends on it.
package webclient

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// indexHTML is the page that runs the player.
//
//go:embed index.html
var indexHTML []byte

// modulePath is the module that holds the player's source.
const modulePath = "github.com/bevygap-go/bevygap"

// Package is the import path of the player program, built with GOOS=js GOARCH=wasm.
const Package = modulePath + "/examples/dotroom/webclient/wasm"

// The files the page loads, next to it.
const (
	WasmFile   = "dotroom.wasm"
	WasmExecJS = "wasm_exec.js"
)

// Build compiles the player into dir (WasmFile) and copies Go's wasm_exec.js next to it, with the
// Go toolchain on $PATH. It finds the source as the package documentation says.
func Build(ctx context.Context, dir string) error {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return fmt.Errorf("webclient: the browser client is built with the Go toolchain, and there is no go on $PATH: %w", err)
	}
	root, err := moduleDir(ctx, goBin)
	if err != nil {
		return err
	}
	build := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, WasmFile), Package)
	build.Dir = root
	build.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("webclient: go build %s (in %s): %w\n%s", Package, root, err, bytes.TrimSpace(out))
	}
	gorootOut, err := exec.CommandContext(ctx, goBin, "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("webclient: go env GOROOT: %w", err)
	}
	goroot := strings.TrimSpace(string(gorootOut))
	var js []byte
	for _, p := range []string{filepath.Join(goroot, "lib", "wasm", WasmExecJS), filepath.Join(goroot, "misc", "wasm", WasmExecJS)} {
		if js, err = os.ReadFile(p); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("webclient: %s not found in %s: %w", WasmExecJS, goroot, err)
	}
	return os.WriteFile(filepath.Join(dir, WasmExecJS), js, 0o644)
}

// moduleDir returns the directory of the bevygap module's source: the module containing the
// current directory, else the version this binary was built from, from the module cache.
func moduleDir(ctx context.Context, goBin string) (string, error) {
	if wd, err := os.Getwd(); err == nil {
		for dir := wd; ; dir = filepath.Dir(dir) {
			if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && declaresModule(b) {
				return dir, nil
			}
			if filepath.Dir(dir) == dir {
				break
			}
		}
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Path == modulePath && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		out, err := exec.CommandContext(ctx, goBin, "mod", "download", "-json", modulePath+"@"+bi.Main.Version).Output()
		if err == nil {
			var m struct{ Dir string }
			if json.Unmarshal(out, &m) == nil && m.Dir != "" {
				return m.Dir, nil
			}
		}
	}
	return "", errors.New("webclient: the browser client is built from the bevygap source: run bevygap dev inside a checkout of " + modulePath)
}

// declaresModule reports whether a go.mod declares modulePath.
func declaresModule(gomod []byte) bool {
	for line := range strings.Lines(string(gomod)) {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "module" && strings.Trim(f[1], `"`) == modulePath {
			return true
		}
	}
	return false
}

// Server serves the player page (an http.Handler for paths relative to its mount point: "/",
// "/wasm_exec.js", "/dotroom.wasm"). It builds the player in the background when it starts;
// until the build is done the page says so, and a failed build is shown on the page.
type Server struct {
	dir    string
	log    *slog.Logger
	cancel context.CancelFunc
	ready  chan struct{}
	err    error // set before ready is closed
	start  time.Time
	once   sync.Once
}

// Start starts building the player ([Build]) into a new temporary directory and returns its
// server; log (nil: discard) gets the outcome. Close removes the directory.
func Start(log *slog.Logger) (*Server, error) { return start(log, Build) }

// start is Start with another build function (tests).
func start(log *slog.Logger, build func(ctx context.Context, dir string) error) (*Server, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp("", "bevygap-play-")
	if err != nil {
		return nil, fmt.Errorf("webclient: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{dir: dir, log: log, cancel: cancel, ready: make(chan struct{}), start: time.Now()}
	go func() {
		defer close(s.ready)
		s.err = build(ctx, dir)
		if s.err != nil {
			if ctx.Err() == nil {
				log.Error("the browser client could not be built; /play/ shows why", "err", s.err)
			}
			return
		}
		log.Info("browser client built", "took", time.Since(s.start).Round(time.Millisecond))
	}()
	return s, nil
}

// Ready is closed when the build finished (see Err).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Err returns why the build failed, once Ready is closed (nil: the player is served).
func (s *Server) Err() error {
	select {
	case <-s.ready:
		return s.err
	default:
		return nil
	}
}

// Close stops a build in progress and removes the built files.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		<-s.ready
		err = os.RemoveAll(s.dir)
	})
	return err
}

// ServeHTTP serves the page and its two files.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	built := false
	select {
	case <-s.ready:
		built = s.err == nil
	default:
	}
	switch r.URL.Path {
	case "/", "/index.html":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if built {
			_, _ = w.Write(indexHTML)
			return
		}
		_, _ = w.Write(s.statusPage())
	case "/" + WasmFile, "/" + WasmExecJS:
		if !built {
			http.Error(w, "the browser client is not built (yet): see this page's index", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		http.ServeFile(w, r, filepath.Join(s.dir, strings.TrimPrefix(r.URL.Path, "/")))
	default:
		http.NotFound(w, r)
	}
}

// statusPage is the page shown while the player is being built, or why it could not be.
func (s *Server) statusPage() []byte {
	var b bytes.Buffer
	b.WriteString(`<!doctype html><html lang="en"><head><meta charset="utf-8"><title>dotroom — bevygap</title><link rel="icon" href="data:,">`)
	if s.Err() == nil {
		b.WriteString(`<meta http-equiv="refresh" content="1">`)
	}
	b.WriteString(`<style>body{font-family:system-ui,sans-serif;background:#0b0e14;color:#d8dee9;margin:2em}pre{white-space:pre-wrap}</style></head>`)
	if err := s.Err(); err != nil {
		fmt.Fprintf(&b, `<body data-state="build-failed"><h1>dotroom</h1><p>The browser client could not be built:</p><pre>%s</pre></body></html>`, html.EscapeString(err.Error()))
	} else {
		fmt.Fprintf(&b, `<body data-state="building"><h1>dotroom</h1><p>Building the browser client (go build, GOOS=js GOARCH=wasm) for %s; this page reloads itself.</p></body></html>`,
			time.Since(s.start).Round(time.Second))
	}
	return b.Bytes()
}
