package webclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// get serves one GET of path and returns the status, content type and body.
func get(t *testing.T, h http.Handler, path string) (int, string, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, rec.Header().Get("Content-Type"), string(body)
}

// TestServerStates: the page says "building" until the build is done, then serves the player;
// a failed build is shown on the page; Close removes the files.
func TestServerStates(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	fakeBuild := func(ctx context.Context, dir string) error {
		select {
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		for name, body := range map[string]string{WasmFile: "\x00asm\x01\x00\x00\x00", WasmExecJS: "class Go {}"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
				return err
			}
		}
		return nil
	}
	s, err := start(nil, fakeBuild)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	code, _, body := get(t, s, "/")
	if code != http.StatusOK || !strings.Contains(body, `data-state="building"`) || !strings.Contains(body, "refresh") {
		t.Errorf("while building: %d %q", code, body)
	}
	if code, _, _ := get(t, s, "/"+WasmFile); code != http.StatusServiceUnavailable {
		t.Errorf("wasm while building: %d, want 503", code)
	}

	close(release)
	<-s.Ready()
	if s.Err() != nil {
		t.Fatal(s.Err())
	}
	code, ctype, body := get(t, s, "/")
	if code != http.StatusOK || body != string(indexHTML) || !strings.HasPrefix(ctype, "text/html") {
		t.Errorf("page: %d %s %q", code, ctype, body)
	}
	for _, f := range []struct{ path, ctype, prefix string }{
		{"/" + WasmFile, "application/wasm", "\x00asm"},
		{"/" + WasmExecJS, "text/javascript", "class Go"},
	} {
		code, ctype, body := get(t, s, f.path)
		if code != http.StatusOK || !strings.HasPrefix(ctype, f.ctype) || !strings.HasPrefix(body, f.prefix) {
			t.Errorf("%s: %d %s %q", f.path, code, ctype, body)
		}
	}
	if code, _, _ := get(t, s, "/../../etc/passwd"); code != http.StatusNotFound {
		t.Errorf("other path: %d, want 404", code)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", rec.Code)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left %s: %v", s.dir, err)
	}

	failing, err := start(nil, func(context.Context, string) error { return errors.New("go: no <toolchain>") })
	if err != nil {
		t.Fatal(err)
	}
	defer failing.Close()
	<-failing.Ready()
	if _, _, body := get(t, failing, "/"); !strings.Contains(body, "build-failed") || !strings.Contains(body, "go: no &lt;toolchain&gt;") {
		t.Errorf("failed build page: %q", body)
	}
}

// TestBuild builds the real player: a WebAssembly module and Go's wasm_exec.js.
func TestBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the player for GOOS=js")
	}
	t.Parallel()
	dir := t.TempDir()
	if err := Build(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	wasm, err := os.ReadFile(filepath.Join(dir, WasmFile))
	if err != nil || !bytes.HasPrefix(wasm, []byte("\x00asm")) {
		t.Fatalf("%s: %d bytes, %v", WasmFile, len(wasm), err)
	}
	js, err := os.ReadFile(filepath.Join(dir, WasmExecJS))
	if err != nil || !bytes.Contains(js, []byte("class Go")) && !bytes.Contains(js, []byte("Go = class")) {
		t.Fatalf("%s: %v", WasmExecJS, err)
	}
	t.Logf("%s: %.1f MB", WasmFile, float64(len(wasm))/1e6)
}

func TestDeclaresModule(t *testing.T) {
	t.Parallel()
	for gomod, want := range map[string]bool{
		"module github.com/bevygap-go/bevygap\n\ngo 1.26\n": true,
		"// x\nmodule \"github.com/bevygap-go/bevygap\"\n":  true,
		"module example.com/mygame\n":                       false,
		"module github.com/bevygap-go/bevygap/sub\n":        false,
	} {
		if got := declaresModule([]byte(gomod)); got != want {
			t.Errorf("declaresModule(%q) = %v", gomod, got)
		}
	}
}
