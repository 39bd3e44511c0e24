package measure

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// ClientSpec tells a client process which idle WebSockets to open: N connections to URL, each
// sending First and waiting for a first reply starting with WantPrefix.
type ClientSpec struct {
	URL        string `json:"url"`
	N          int    `json:"n"`
	First      string `json:"first"`
	WantPrefix string `json:"want_prefix"`
}

// ServeClients is the client process: it reads one ClientSpec as a JSON line from in, opens
// the connections (from several 127.x.y.z source addresses, so ephemeral ports do not run
// short), prints "READY n" (or "FAIL reason") on out, and holds them until in ends.
func ServeClients(ctx context.Context, in io.Reader, out io.Writer) error {
	rd := bufio.NewReader(in)
	line, err := rd.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("measure: client spec: %w", err)
	}
	var spec ClientSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("measure: client spec: %w", err)
	}
	if _, err := RaiseNoFile(uint64(spec.N + 1024)); err != nil {
		fmt.Fprintln(out, "FAIL", err)
		return err
	}
	conns, err := openIdle(ctx, spec)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.CloseNow()
			}
		}
	}()
	if err != nil {
		fmt.Fprintln(out, "FAIL", err)
		return err
	}
	fmt.Fprintln(out, "READY", spec.N)
	_, _ = io.Copy(io.Discard, rd) // until the parent closes our stdin
	return nil
}

func openIdle(ctx context.Context, spec ClientSpec) ([]*websocket.Conn, error) {
	// A socket bound to a source address before connecting takes its ephemeral port from that
	// address's range, shared with every other socket (and TIME_WAIT) on it: spread the
	// connections over source addresses 127.<random>.0.x, 2,000 each.
	const perSource = 2000
	base := byte(1 + rand.IntN(250))
	clients := make([]*http.Client, spec.N/perSource+1)
	for i := range clients {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, base, byte(i/250), byte(1+i%250))}, Timeout: 10 * time.Second}
		clients[i] = &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	var (
		next   atomic.Int64
		mu     sync.Mutex
		first  error
		failed atomic.Bool
		wg     sync.WaitGroup
	)
	conns := make([]*websocket.Conn, spec.N)
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !failed.Load() {
				i := int(next.Add(1) - 1)
				if i >= spec.N {
					return
				}
				c, err := openOne(ctx, clients[i/perSource], spec)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("connection %d: %w", i, err)
					}
					mu.Unlock()
					failed.Store(true)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	return conns, first
}

func openOne(ctx context.Context, hc *http.Client, spec ClientSpec) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, spec.URL, &websocket.DialOptions{HTTPClient: hc})
	if err != nil {
		return nil, err
	}
	if err := c.Write(ctx, websocket.MessageText, []byte(spec.First)); err != nil {
		_ = c.CloseNow()
		return nil, err
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		_ = c.CloseNow()
		return nil, err
	}
	if !strings.HasPrefix(string(got), spec.WantPrefix) {
		_ = c.CloseNow()
		return nil, fmt.Errorf("first reply %q, want %q…", got, spec.WantPrefix)
	}
	return c, nil
}

// HoldIdle starts cmd as a client process (it must run ServeClients on its stdin and stdout),
// has it open spec's connections and returns once they are all open. release closes them and
// waits for the process.
func HoldIdle(ctx context.Context, cmd *exec.Cmd, spec ClientSpec) (release func(), err error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("measure: starting the client process: %w", err)
	}
	release = func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	}
	b, _ := json.Marshal(spec)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		release()
		return nil, fmt.Errorf("measure: client process: %w", err)
	}
	type result struct{ err error }
	done := make(chan result, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			switch line := sc.Text(); {
			case strings.HasPrefix(line, "READY"):
				done <- result{}
				go func() { _, _ = io.Copy(io.Discard, stdout) }()
				return
			case strings.HasPrefix(line, "FAIL"):
				done <- result{fmt.Errorf("measure: client process: %s", line)}
				return
			}
		}
		done <- result{fmt.Errorf("measure: client process ended before its connections were open")}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			release()
			return nil, r.err
		}
		return release, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}

// EchoWebSocket is the bare floor of the memory measurements: a coder/websocket server that
// echoes every message back and holds idle connections and nothing else.
func EchoWebSocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, msg, err := c.Read(context.Background())
		if err != nil {
			return
		}
		if err := c.Write(context.Background(), typ, msg); err != nil {
			return
		}
	}
}
