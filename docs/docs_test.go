// Package docs_test keeps the documentation honest: the commands the pages show are run, the
// tutorial's files are the ones in the repository, the tools the pages use are listed, and the
// error strings of the troubleshooting page exist in the code.
//
// Markers, in the info string of a fenced code block (GitHub shows only the first word):
//
//	```sh runnable                  run this block (bash -euo pipefail); it must exit 0
//	```sh runnable exit=1           ... it must exit 1 (a block that shows an error)
//	```sh runnable background       a `bevygap dev` command: started, used by the blocks
//	                                after it, stopped with SIGINT at the end of the page
//	                                (it must exit 0 saying "Stopped cleanly")
//	```go file=P source=R           save this block as P (relative to the current directory
//	                                of the page's shell); it must equal the repository file R
//
// The blocks of a page run in order in one simulated terminal: the current directory and the
// exported variables carry over from block to block. Each page starts in <tmp>/bevygap, a
// symbolic link to this repository (a fresh clone), with `bevygap` on PATH, installed by the
// README's runnable `go install` block. Nothing may write into the repository.
//
// Everything runs on loopback. A page without its own `bevygap dev` uses one shared stack.
// Stacks listen on random ports: the runner adds --nats-addr/--http-addr/--webhook-addr/
// --sim-addr 127.0.0.1:0 to `bevygap dev`, then rewrites the default addresses (127.0.0.1:3000,
// :4222, :3080, :3001) in later blocks to the stack's, gives a bare `bevygap play` the stack's
// --url, and sets NATS_URL for natscli. Go commands run with GOPROXY=off: the tutorial must work
// from the module cache a build of this repository fills. A block that needs a tool that is
// not installed (natscli, jq, curl) is skipped with a log line.
package docs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/internal/syncbuf"
)

// Bounds of the runner: every process it starts is killed by then.
const (
	blockTimeout      = 90 * time.Second // one foreground block
	stackStartTimeout = 60 * time.Second // until `bevygap dev` printed its banner
	stackStopTimeout  = 40 * time.Second // SIGINT until exit (dev itself bounds it by 30 s)
)

// repoRoot is the repository, from the package directory docs/.
func repoRoot(t testing.TB) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

// block is one fenced code block of a page.
type block struct {
	page  string            // path relative to the repository, e.g. "docs/dev.md"
	line  int               // line of the opening fence (1-based)
	lang  string            // first word of the info string
	attrs map[string]string // the other words: "runnable" -> "", "exit" -> "1", "file" -> "…"
	text  string
}

func (b block) String() string { return fmt.Sprintf("%s:%d", b.page, b.line) }

func (b block) has(attr string) bool { _, ok := b.attrs[attr]; return ok }

// parseBlocks returns the fenced code blocks of a Markdown file (``` fences, indented ones
// inside list items too).
func parseBlocks(t testing.TB, root, page string) []block {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(root, page))
	if err != nil {
		t.Fatal(err)
	}
	var out []block
	var cur *block
	indent := 0
	var body strings.Builder
	for i, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimLeft(line, " ")
		if cur == nil {
			if !strings.HasPrefix(trimmed, "```") {
				continue
			}
			indent = len(line) - len(trimmed)
			fields := strings.Fields(strings.TrimPrefix(trimmed, "```"))
			cur = &block{page: page, line: i + 1, attrs: map[string]string{}}
			if len(fields) > 0 {
				cur.lang = fields[0]
				for _, f := range fields[1:] {
					k, v, _ := strings.Cut(f, "=")
					cur.attrs[k] = v
				}
			}
			body.Reset()
			continue
		}
		if strings.TrimSpace(line) == "```" {
			cur.text = body.String()
			out = append(out, *cur)
			cur = nil
			continue
		}
		n := min(indent, len(line)-len(strings.TrimLeft(line, " ")))
		body.WriteString(line[n:])
		body.WriteString("\n")
	}
	if cur != nil {
		t.Fatalf("%s: unclosed code block", cur)
	}
	return out
}

// pages returns README.md and every page of docs/, relative to the repository.
func pages(t testing.TB, root string) []string {
	t.Helper()
	out := []string{"README.md"}
	mds, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mds {
		out = append(out, filepath.ToSlash(filepath.Join("docs", filepath.Base(m))))
	}
	return out
}

// TestTutorialFilesMatchRepository checks that every file the pages tell the reader to save is,
// byte for byte, the file in the repository that the runnable test builds and runs.
func TestTutorialFilesMatchRepository(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	found := 0
	for _, page := range pages(t, root) {
		for _, b := range parseBlocks(t, root, page) {
			if !b.has("file") {
				continue
			}
			found++
			src := b.attrs["source"]
			if src == "" || b.attrs["file"] == "" {
				t.Errorf("%s: a file block needs file=PATH and source=REPOSITORY_PATH", b)
				continue
			}
			want, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(src)))
			if err != nil {
				t.Errorf("%s: %v", b, err)
				continue
			}
			if b.text != string(want) {
				t.Errorf("%s: the page's %s differs from %s; copy the file into the page (or the page into the file)\n%s",
					b, b.attrs["file"], src, firstDifference(b.text, string(want)))
			}
		}
	}
	if found == 0 {
		t.Error("no file blocks found: docs/first-game.md should show its files with file=… source=…")
	}
}

// firstDifference describes where two texts start to differ.
func firstDifference(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d:\n  page: %q\n  file: %q", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("the page has %d lines, the file %d", len(g), len(w))
}

// TestDocsCallTheInstalledBinary checks that the docs use one form of the command: `bevygap …`
// (installed with the README's `go install ./cmd/bevygap`), never `go run ./cmd/bevygap`,
// except in the README's first block, the two set-up commands of a fresh clone.
func TestDocsCallTheInstalledBinary(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	for _, page := range pages(t, root) {
		for i, b := range parseBlocks(t, root, page) {
			if page == "README.md" && i == 0 {
				continue
			}
			if strings.Contains(b.text, "go run ./cmd/bevygap") {
				t.Errorf("%s: use `bevygap …` (on PATH after `go install ./cmd/bevygap`), not `go run ./cmd/bevygap …`", b)
			}
		}
	}
}

// externalTools are the programs a reader may not have; docs/README.md lists how to get each.
var externalTools = []string{"nats", "jq", "curl", "websocat", "docker", "openssl", "git"}

// commandUses reports whether a shell script runs the program name as a command.
func commandUses(script, name string) bool {
	re := regexp.MustCompile(`(?m)(^\s*|[|;&(]\s*|\$\(\s*|\b(?:then|do|time|exec)\s+)` + regexp.QuoteMeta(name) + `(\s|$)`)
	return re.MatchString(script)
}

// TestDocsToolsListed checks that every external tool used in a shell block is in the tools
// table of docs/README.md.
func TestDocsToolsListed(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	index, err := os.ReadFile(filepath.Join(root, "docs", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, page := range pages(t, root) {
		for _, b := range parseBlocks(t, root, page) {
			if b.lang != "sh" && b.lang != "bash" && b.lang != "console" {
				continue
			}
			for _, tool := range externalTools {
				if commandUses(b.text, tool) && !bytes.Contains(index, []byte("| `"+tool+"` |")) {
					t.Errorf("%s uses %s, which the tools table of docs/README.md does not list", b, tool)
				}
			}
		}
	}
}

// TestTroubleshootingStringsExist checks that every message quoted first in a row of the
// troubleshooting tables occurs in the code that prints it: this repository, nats.go and
// nats-server (NATS errors), Go's crypto/tls, crypto/x509 and syscall (TLS and socket errors).
// Messages are split at "…" (the variable parts); a part that starts with an environment
// variable name (EDGEGAP_API_KEY is not set) is looked for as the name and the rest. Prefixes
// the services add, "ERR " and "Error: ", are not looked for.
func TestTroubleshootingStringsExist(t *testing.T) {
	t.Parallel()
	root := repoRoot(t)
	var sources bytes.Buffer
	sources.Write(goSources(t, root, false))
	for _, dir := range dependencySourceDirs(t, root) {
		sources.Write(goSources(t, dir, false))
	}
	data, err := os.ReadFile(filepath.Join(root, "docs", "troubleshooting.md"))
	if err != nil {
		t.Fatal(err)
	}
	quoted := regexp.MustCompile("^\\| `([^`]+)`")
	envName := regexp.MustCompile(`^([A-Z][A-Z0-9_]+) (.+)$`)
	checked := 0
	for i, line := range strings.Split(string(data), "\n") {
		m := quoted.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		msg := strings.TrimPrefix(strings.TrimPrefix(m[1], "ERR "), "Error: ")
		for _, part := range strings.Split(msg, "…") {
			part = strings.TrimSpace(part)
			if len(part) < 4 {
				continue
			}
			checked++
			found := bytes.Contains(sources.Bytes(), []byte(part))
			if e := envName.FindStringSubmatch(part); !found && e != nil {
				found = bytes.Contains(sources.Bytes(), []byte(`"`+e[1]+`"`)) && bytes.Contains(sources.Bytes(), []byte(" "+e[2]))
			}
			if !found {
				t.Errorf("docs/troubleshooting.md:%d: %q is printed by nothing (a changed message? update the page)", i+1, part)
			}
		}
	}
	if checked < 40 {
		t.Errorf("only %d messages checked: is the table format of troubleshooting.md still | `message` | …?", checked)
	}
}

// dependencySourceDirs returns the directories of the code whose messages users see besides
// ours: nats.go, nats-server (the versions go.mod requires, from the module cache), and the
// standard library's crypto/tls, crypto/x509 and syscall.
func dependencySourceDirs(t testing.TB, root string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/nats-io/nats.go", "github.com/nats-io/nats-server/v2")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	dirs := strings.Fields(string(out))
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	for _, pkg := range []string{"crypto/tls", "crypto/x509", "syscall"} {
		dirs = append(dirs, filepath.Join(strings.TrimSpace(string(goroot)), "src", filepath.FromSlash(pkg)))
	}
	return dirs
}

// goSources returns every non-test Go file of the repository (withTests: test files too),
// concatenated. Reading them also makes `go test` re-run this package when any of them
// changes: the runnable docs build the commands from these files.
func goSources(t testing.TB, root string, withTests bool) []byte {
	t.Helper()
	var all bytes.Buffer
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != root {
			return filepath.SkipDir
		}
		name := d.Name()
		if d.IsDir() || !(strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum") {
			return nil
		}
		if strings.HasSuffix(name, "_test.go") && !withTests {
			return nil
		}
		b, err := os.ReadFile(path)
		all.Write(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return all.Bytes()
}

// env is the environment of the simulated terminal.
type env struct {
	binDir string // holds bevygap, installed by the README's block
	tmp    string

	done       chan struct{} // closed when the install finished
	installErr error         // then: why it failed
	installLog string        // or how long it took
}

// base returns the environment every block starts from: PATH with the installed bevygap
// first and $(go env GOPATH)/bin last (where the docs install natscli), no -mod in GOFLAGS
// (a reader's shell has none), GOPROXY=off (no network), GOWORK=off.
func (e *env) base() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "GOPROXY", "GOWORK", "GOBIN", "NATS_URL", "NATS_HOST":
			continue
		case "GOFLAGS":
			var keep []string
			for _, f := range strings.Fields(v) {
				if !strings.HasPrefix(f, "-mod=") {
					keep = append(keep, f)
				}
			}
			kv = "GOFLAGS=" + strings.Join(keep, " ")
		}
		out = append(out, kv)
	}
	path := e.binDir + string(os.PathListSeparator) + os.Getenv("PATH")
	if gopath, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
		for _, p := range filepath.SplitList(strings.TrimSpace(string(gopath))) {
			path += string(os.PathListSeparator) + filepath.Join(p, "bin")
		}
	}
	return append(out, "PATH="+path, "GOPROXY=off", "GOWORK=off")
}

// install installs bevygap by running the README's runnable `go install` block with GOBIN set
// to a directory of the test. It runs in the background, while the pages run their first
// blocks (the tutorial builds its own module meanwhile); env.installed waits for it.
func install(t *testing.T, root string) *env {
	t.Helper()
	goSources(t, root, true) // see goSources: re-run when the code changes
	tmp := t.TempDir()
	e := &env{binDir: filepath.Join(tmp, "bin"), tmp: tmp, done: make(chan struct{})}
	var inst *block
	for _, b := range parseBlocks(t, root, "README.md") {
		if b.has("runnable") && strings.Contains(b.text, "go install ./cmd/bevygap") {
			inst = &b
			break
		}
	}
	if inst == nil {
		t.Fatal("README.md has no runnable block with `go install ./cmd/bevygap`")
	}
	go func() {
		defer close(e.done)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		start := time.Now()
		res := runShell(ctx, root, append(e.base(), "GOBIN="+e.binDir), inst.text, "")
		switch _, err := os.Stat(filepath.Join(e.binDir, "bevygap")); {
		case res.err != nil || res.code != 0:
			e.installErr = fmt.Errorf("%s: exit %d %v\n%s%s", inst, res.code, res.err, res.stdout, res.stderr)
		case err != nil:
			e.installErr = fmt.Errorf("%s did not install bevygap into GOBIN: %v", inst, err)
		default:
			e.installLog = fmt.Sprintf("%s: installed bevygap in %s", inst, time.Since(start).Round(time.Millisecond))
		}
	}()
	return e
}

// installed waits for the README's install block; a failure fails t.
func (e *env) installed(t *testing.T) {
	t.Helper()
	<-e.done
	if e.installErr != nil {
		t.Fatal(e.installErr)
	}
}

// shellResult is how a script ended.
type shellResult struct {
	code           int
	stdout, stderr string
	err            error // could not start, or killed at the deadline
}

// runShell runs script with bash in dir, in its own process group, killing the group when ctx
// ends. stateDir, when set, holds the simulated terminal's state: the script starts in the
// directory and with the exported variables the previous script left there, and leaves its
// own.
func runShell(ctx context.Context, dir string, environ []string, script, stateDir string) shellResult {
	var full strings.Builder
	if stateDir != "" {
		envFile, cwdFile := filepath.Join(stateDir, "env"), filepath.Join(stateDir, "cwd")
		fmt.Fprintf(&full, "if [ -f %q ]; then source %q 2>/dev/null || true; fi\n", envFile, envFile)
		fmt.Fprintf(&full, "if [ -f %q ]; then cd \"$(cat %q)\"; fi\n", cwdFile, cwdFile)
		full.WriteString("set -euo pipefail\n")
		full.WriteString(script)
		fmt.Fprintf(&full, "\npwd > %q\nexport -p > %q\n", cwdFile, envFile)
	} else {
		full.WriteString("set -euo pipefail\n" + script)
	}
	cmd := exec.CommandContext(ctx, "bash", "-c", full.String())
	cmd.Dir = dir
	cmd.Env = environ
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // anything the script left behind
	}
	res := shellResult{stdout: stdout.String(), stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.code = ee.ExitCode()
	default:
		res.err = err
		res.code = -1
	}
	return res
}

// stack is a running `bevygap dev` and the addresses it listens on.
type stack struct {
	cmd     *exec.Cmd
	out     *syncbuf.Buffer // stdout: the banner, "Stopped cleanly"
	errOut  *syncbuf.Buffer // stderr: the logs
	exited  chan struct{}
	waitErr error
	nats    string // nats://127.0.0.1:port
	http    string // 127.0.0.1:port
	sim     string
	webhook string
}

var (
	devCommand = regexp.MustCompile(`\bbevygap dev\b`)
	playBare   = regexp.MustCompile(`(^|[\s;&|(])bevygap play\b`)
	bannerRes  = map[string]*regexp.Regexp{
		"nats":    regexp.MustCompile(`(?m)^\s+NATS\s+(nats://\S+)`),
		"http":    regexp.MustCompile(`(?m)^\s+HTTP\s+http://(\S+)`),
		"sim":     regexp.MustCompile(`(?m)^\s+Edgegap sim\s+http://(\S+)`),
		"webhook": regexp.MustCompile(`(?m)^\s+Webhook sink\s+http://([^/\s]+)`),
	}
)

// startStack starts the `bevygap dev` command of a background block (on random loopback ports)
// and waits for its banner.
func startStack(e *env, dir, stateDir, command string) (*stack, error) {
	command = devCommand.ReplaceAllString(command,
		"bevygap dev --nats-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --webhook-addr 127.0.0.1:0 --sim-addr 127.0.0.1:0")
	var full strings.Builder
	if stateDir != "" {
		envFile, cwdFile := filepath.Join(stateDir, "env"), filepath.Join(stateDir, "cwd")
		fmt.Fprintf(&full, "if [ -f %q ]; then source %q 2>/dev/null || true; fi\n", envFile, envFile)
		fmt.Fprintf(&full, "if [ -f %q ]; then cd \"$(cat %q)\"; fi\n", cwdFile, cwdFile)
	}
	full.WriteString(command)
	cmd := exec.Command("bash", "-c", full.String())
	cmd.Dir = dir
	cmd.Env = e.base()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	s := &stack{cmd: cmd, out: &syncbuf.Buffer{}, errOut: &syncbuf.Buffer{}, exited: make(chan struct{})}
	stderr := s.errOut
	cmd.Stdout, cmd.Stderr = s.out, stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.waitErr = cmd.Wait(); close(s.exited) }()
	deadline := time.Now().Add(stackStartTimeout)
	for {
		out := s.out.String()
		found := map[string]string{}
		for k, re := range bannerRes {
			if m := re.FindStringSubmatch(out); m != nil {
				found[k] = m[1]
			}
		}
		if len(found) == len(bannerRes) && strings.Contains(out, "Try it:") {
			s.nats, s.http, s.sim, s.webhook = found["nats"], found["http"], found["sim"], found["webhook"]
			return s, nil
		}
		select {
		case <-s.exited:
			return nil, fmt.Errorf("bevygap dev exited before it was ready (%v)\nstdout:\n%s\nstderr:\n%s", s.waitErr, out, tail(stderr.String(), 40))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.kill()
			return nil, fmt.Errorf("bevygap dev printed no banner within %s\nstdout:\n%s\nstderr:\n%s", stackStartTimeout, out, tail(stderr.String(), 40))
		}
	}
}

// rewrite points a block at this stack instead of the default addresses.
func (s *stack) rewrite(script string) string {
	natsHostPort := strings.TrimPrefix(s.nats, "nats://")
	for def, actual := range map[string]string{"3000": s.http, "4222": natsHostPort, "3080": s.sim, "3001": s.webhook} {
		re := regexp.MustCompile(`\b(127\.0\.0\.1|localhost):` + def + `\b`)
		script = re.ReplaceAllString(script, actual)
	}
	return playBare.ReplaceAllString(script, "${1}bevygap play --url ws://"+s.http+"/matchmaker/ws")
}

// environ is the environment of blocks that use this stack.
func (s *stack) environ(e *env) []string { return append(e.base(), "NATS_URL="+s.nats) }

// stop sends SIGINT (Ctrl-C) and waits for a clean exit: exit code 0, "Stopped cleanly".
func (s *stack) stop() error {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-s.exited:
	case <-time.After(stackStopTimeout):
		s.kill()
		return fmt.Errorf("bevygap dev did not stop within %s of SIGINT", stackStopTimeout)
	}
	s.kill() // game servers started with --exec that outlived it
	if s.waitErr != nil {
		return fmt.Errorf("bevygap dev: %v\nstdout:\n%s\nstderr:\n%s", s.waitErr, tail(s.out.String(), 20), tail(s.errOut.String(), 40))
	}
	if !strings.Contains(s.out.String(), "Stopped cleanly: 0 live sessions") {
		return fmt.Errorf("bevygap dev did not stop cleanly:\n%s\nstderr:\n%s", tail(s.out.String(), 20), tail(s.errOut.String(), 40))
	}
	return nil
}

func (s *stack) kill() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-s.exited:
	case <-time.After(5 * time.Second):
	}
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// sharedStack is the stack of the pages without a `bevygap dev` of their own, started by the
// first page that needs it and stopped when every page is done.
type sharedStack struct {
	once sync.Once
	st   *stack
	err  error
}

func (s *sharedStack) get(e *env) (*stack, error) {
	s.once.Do(func() {
		dir := filepath.Join(e.tmp, "shared-stack")
		if s.err = os.MkdirAll(dir, 0o755); s.err == nil {
			s.st, s.err = startStack(e, dir, "", "bevygap dev --log-level warn")
		}
	})
	return s.st, s.err
}

func (s *sharedStack) stop(t *testing.T) {
	if s.st != nil {
		if err := s.st.stop(); err != nil {
			t.Errorf("shared bevygap dev: %v", err)
		}
	}
}

// missingTools returns the external tools a script uses that are not installed.
func missingTools(script string, environ []string) []string {
	var path string
	for _, kv := range environ {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	var missing []string
	for _, tool := range externalTools {
		if !commandUses(script, tool) {
			continue
		}
		found := false
		for _, dir := range filepath.SplitList(path) {
			if fi, err := os.Stat(filepath.Join(dir, tool)); err == nil && !fi.IsDir() {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, tool)
		}
	}
	return missing
}

// TestRunnableDocs runs the runnable blocks of every page, as a reader pasting them into a
// terminal would (see the package comment).
func TestRunnableDocs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs every runnable block of the docs: builds, a bevygap dev stack, the tutorial")
	}
	if runtime.GOOS == "windows" {
		t.Skip("the runnable blocks are bash")
	}
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("no bash")
	}
	root := repoRoot(t)
	e := install(t, root)
	shared := &sharedStack{}
	t.Cleanup(func() { shared.stop(t) }) // after every page's subtest
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		<-e.done
		if e.installErr != nil {
			t.Error(e.installErr)
		} else {
			t.Log(e.installLog)
		}
	}()
	for _, page := range pages(t, root) {
		var blocks []block
		for _, b := range parseBlocks(t, root, page) {
			if b.has("runnable") || b.has("file") {
				blocks = append(blocks, b)
			}
		}
		if page == "README.md" {
			blocks = nil // its runnable block is the setup
		}
		if len(blocks) == 0 {
			continue
		}
		// Pages run at once, not limited by -parallel: they mostly wait (boots, ticks).
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(strings.TrimSuffix(filepath.Base(page), ".md"), func(t *testing.T) {
				runPage(t, e, shared, root, blocks)
			})
		}()
	}
}

// runPage runs the blocks of one page in order.
func runPage(t *testing.T, e *env, shared *sharedStack, root string, blocks []block) {
	work := t.TempDir()
	if err := os.Symlink(root, filepath.Join(work, "bevygap")); err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(stateDir, "cwd"), []byte(filepath.Join(work, "bevygap")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var st *stack
	ownStack := false
	for _, b := range blocks {
		if b.has("background") {
			ownStack = true
		}
	}
	defer func() {
		if st != nil && ownStack {
			if err := st.stop(); err != nil {
				t.Errorf("the page's bevygap dev: %v", err)
			}
		}
	}()
	for _, b := range blocks {
		switch {
		case b.has("file"):
			cwd, err := os.ReadFile(filepath.Join(stateDir, "cwd"))
			if err != nil {
				t.Fatal(err)
			}
			dir, err := filepath.EvalSymlinks(strings.TrimSpace(string(cwd)))
			if err != nil {
				t.Fatal(err)
			}
			realRoot, err := filepath.EvalSymlinks(root)
			if err != nil {
				t.Fatal(err)
			}
			if dir == realRoot || strings.HasPrefix(dir, realRoot+string(filepath.Separator)) {
				t.Fatalf("%s would write %s into the repository: the page must leave the clone first", b, b.attrs["file"])
			}
			dst := filepath.Join(dir, filepath.FromSlash(b.attrs["file"]))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, []byte(b.text), 0o644); err != nil {
				t.Fatal(err)
			}
		case b.has("background"):
			e.installed(t)
			if st != nil {
				t.Fatalf("%s: a page may start one bevygap dev", b)
			}
			if !devCommand.MatchString(b.text) {
				t.Fatalf("%s: a background block must run bevygap dev", b)
			}
			s, err := startStack(e, work, stateDir, b.text)
			if err != nil {
				t.Fatalf("%s: %v", b, err)
			}
			st = s
			t.Cleanup(s.kill)
		default:
			if commandUses(b.text, "bevygap") || (st == nil && !ownStack) {
				e.installed(t)
			}
			if st == nil && !ownStack {
				s, err := shared.get(e)
				if err != nil {
					t.Fatal(err)
				}
				st = s
			}
			script, environ := b.text, e.base()
			if st != nil {
				script, environ = st.rewrite(b.text), st.environ(e)
			}
			if missing := missingTools(script, environ); len(missing) > 0 {
				t.Logf("%s: skipped, needs %s (see docs/README.md#tools)", b, strings.Join(missing, ", "))
				continue
			}
			want := 0
			if v, ok := b.attrs["exit"]; ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					t.Fatalf("%s: exit=%q", b, v)
				}
				want = n
			}
			ctx, cancel := context.WithTimeout(context.Background(), blockTimeout)
			start := time.Now()
			res := runShell(ctx, work, environ, script, stateDir)
			cancel()
			if res.err != nil || res.code != want {
				t.Fatalf("%s: exit %d (want %d) %v after %s\nscript:\n%s\nstdout:\n%s\nstderr:\n%s",
					b, res.code, want, res.err, time.Since(start).Round(time.Millisecond), script, tail(res.stdout, 40), tail(res.stderr, 40))
			}
			t.Logf("%s: ok in %s", b, time.Since(start).Round(time.Millisecond))
		}
	}
}
