package cluster

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// composeService is what the harness takes from a service of deploy/compose.yaml: its command
// and its environment (anchors and merge keys resolved).
type composeService struct {
	Command     []string          `yaml:"command"`
	Environment map[string]string `yaml:"environment"`
}

// readCompose reads the services of deploy/compose.yaml.
func readCompose(deployDir string) (map[string]composeService, error) {
	b, err := os.ReadFile(filepath.Join(deployDir, "compose.yaml"))
	if err != nil {
		return nil, err
	}
	var f struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("compose.yaml: %w", err)
	}
	return f.Services, nil
}

// interpolation is compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message},
// ${VAR?message} and $$.
var interpolation = regexp.MustCompile(`\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}`)

// interpolate replaces compose's variables in s with vars, as `docker compose` does with
// deploy/.env.
func interpolate(s string, vars map[string]string) (string, error) {
	var err error
	out := interpolation.ReplaceAllStringFunc(s, func(m string) string {
		if m == "$$" {
			return "$"
		}
		g := interpolation.FindStringSubmatch(m)
		name, op, arg := g[1], g[2], g[3]
		v, set := vars[name]
		empty := !set || (strings.HasPrefix(op, ":") && v == "")
		switch {
		case !empty:
			return v
		case strings.HasSuffix(op, "-"):
			return arg
		case strings.HasSuffix(op, "?") || op == "":
			if err == nil {
				err = fmt.Errorf("variable %s is not set (%s)", name, arg)
			}
		}
		return ""
	})
	return out, err
}

// readEnvExample reads deploy/.env.example: the secrets compose needs, with placeholder values.
func readEnvExample(deployDir string) ([]envVar, error) {
	b, err := os.ReadFile(filepath.Join(deployDir, ".env.example"))
	if err != nil {
		return nil, err
	}
	var out []envVar
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf(".env.example: line %q has no =", line)
		}
		out = append(out, envVar{k, v})
	}
	return out, sc.Err()
}

type envVar struct{ key, value string }

// generateSecrets returns a fresh value for every variable of .env.example that is a secret
// (passwords, the Edgegap API key, the Lightyear private key, the webhook secret) and the
// example's value for the others (e.g. BEVYGAP_HTTPD_CORS). Values follow the example's rules:
// passwords and secrets are letters and digits, never all digits.
func generateSecrets(example []envVar) map[string]string {
	out := make(map[string]string, len(example))
	for _, e := range example {
		switch {
		case strings.HasSuffix(e.key, "_PRIVATE_KEY"):
			out[e.key] = randomHex(32)
		case strings.HasSuffix(e.key, "_API_KEY"):
			out[e.key] = "token cluster-" + randomHex(8)
		case strings.HasSuffix(e.key, "_PASSWORD"), strings.HasSuffix(e.key, "_SECRET"):
			out[e.key] = "pw" + randomHex(16)
		default:
			out[e.key] = e.value
		}
	}
	return out
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ports hands out free loopback TCP ports, one per (instance, container port), keeping each
// listener open until release so that no two are the same.
type ports struct {
	byKey map[string]int
	open  []net.Listener
}

func newPorts() *ports { return &ports{byKey: map[string]int{}} }

// get returns the loopback port of instance's container port.
func (p *ports) get(instance string, port string) (int, error) {
	key := instance + ":" + port
	if v, ok := p.byKey[key]; ok {
		return v, nil
	}
	ln, err := listenFree()
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	p.open = append(p.open, ln)
	v := ln.Addr().(*net.TCPAddr).Port
	p.byKey[key] = v
	return v, nil
}

// listenFree listens on a free loopback port below the kernel's ephemeral range (so that no
// outgoing connection takes it between release and the process binding it), or on any free
// port when that fails.
func listenFree() (net.Listener, error) {
	lo := ephemeralLow()
	const base = 10000
	if lo > base+1000 {
		for range 50 {
			port := base + mrand.IntN(lo-base)
			if ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port)); err == nil {
				return ln, nil
			}
		}
	}
	return net.Listen("tcp", "127.0.0.1:0")
}

// ephemeralLow returns the first port of Linux's ephemeral range (32768 elsewhere).
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				return v
			}
		}
	}
	return 32768
}

// release closes the listeners that reserved the ports.
func (p *ports) release() {
	for _, ln := range p.open {
		_ = ln.Close()
	}
	p.open = nil
}

// hostPort matches "0.0.0.0:N" (a listen address) and "<name>:N" (a compose service).
var hostPort = regexp.MustCompile(`(0\.0\.0\.0|[a-z][a-z0-9-]*[a-z0-9]):([0-9]+)\b`)

// localize rewrites the compose network's addresses in s for loopback: "0.0.0.0:N" becomes
// instance's own loopback port for N, and "<service>:N" the loopback port of that service's
// (first) instance. Other text is unchanged.
func localize(s, instance string, services map[string]string, p *ports) (string, error) {
	var err error
	out := hostPort.ReplaceAllStringFunc(s, func(m string) string {
		g := hostPort.FindStringSubmatch(m)
		owner := instance
		if g[1] != "0.0.0.0" {
			inst, ok := services[g[1]]
			if !ok {
				return m // not a compose service (e.g. a URL scheme's host in a comment)
			}
			owner = inst
		}
		port, e := p.get(owner, g[2])
		if e != nil && err == nil {
			err = e
		}
		return "127.0.0.1:" + strconv.Itoa(port)
	})
	return out, err
}

// sortedEnv returns env as sorted "KEY=value" strings.
func sortedEnv(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}
