package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// The P5 clients live in the measured process (32 of them at once), so they are as cheap as a
// WebSocket client can be: a hand-written RFC 6455 client that dials, upgrades, sends one
// masked text frame and reads unmasked frames until SessionReady — no HTTP transport with its
// connection goroutines, no per-message contexts. What they cost is not the front door's (a
// real player's client runs on the player's machine); what they leave is for the process under
// measurement.

// errWSClosed is a close frame (or EOF) from the server before SessionReady.
var errWSClosed = errors.New("websocket closed by the server")

// miniWS is one client connection.
type miniWS struct {
	conn net.Conn
	br   *bufio.Reader
	buf  []byte // frame payloads
}

// dialWS connects to a ws:// URL and completes the opening handshake.
func dialWS(ctx context.Context, rawURL string) (*miniWS, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "ws" {
		return nil, fmt.Errorf("bench client: %q is not a ws:// URL", rawURL)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	path := u.RequestURI()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(nonce[:]) + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		_ = conn.Close()
		return nil, err
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("bench client: handshake: %w", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		_ = conn.Close()
		return nil, fmt.Errorf("bench client: handshake: %s", resp.Status)
	}
	return &miniWS{conn: conn, br: br}, nil
}

// writeText sends one masked text frame (payloads under 64 KiB).
func (c *miniWS) writeText(p []byte) error { return c.writeFrame(0x1, p) }

func (c *miniWS) writeFrame(opcode byte, p []byte) error {
	if len(p) > 0xffff {
		return errors.New("bench client: frame too large")
	}
	f := make([]byte, 0, 8+len(p))
	f = append(f, 0x80|opcode)
	if len(p) < 126 {
		f = append(f, 0x80|byte(len(p)))
	} else {
		f = append(f, 0x80|126, byte(len(p)>>8), byte(len(p)))
	}
	var mask [4]byte
	_, _ = rand.Read(mask[:])
	f = append(f, mask[:]...)
	for i, b := range p {
		f = append(f, b^mask[i%4])
	}
	_, err := c.conn.Write(f)
	return err
}

// readMessage returns the next text message (the server's frames are unmasked; a fragmented
// message is reassembled). A close frame is errWSClosed.
func (c *miniWS) readMessage() ([]byte, error) {
	c.buf = c.buf[:0]
	for {
		var h [2]byte
		if _, err := io.ReadFull(c.br, h[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return nil, errWSClosed
			}
			return nil, err
		}
		fin, opcode := h[0]&0x80 != 0, h[0]&0x0f
		n := uint64(h[1] & 0x7f)
		switch n {
		case 126:
			var e [2]byte
			if _, err := io.ReadFull(c.br, e[:]); err != nil {
				return nil, err
			}
			n = uint64(binary.BigEndian.Uint16(e[:]))
		case 127:
			var e [8]byte
			if _, err := io.ReadFull(c.br, e[:]); err != nil {
				return nil, err
			}
			n = binary.BigEndian.Uint64(e[:])
		}
		if h[1]&0x80 != 0 || n > 1<<20 {
			return nil, errors.New("bench client: unexpected frame from the server")
		}
		start := len(c.buf)
		c.buf = append(c.buf, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, c.buf[start:]); err != nil {
			return nil, err
		}
		switch opcode {
		case 0x8: // close
			return nil, fmt.Errorf("%w: %q", errWSClosed, c.buf[start:])
		case 0x9: // ping: answer, drop its payload
			pong := bytes.Clone(c.buf[start:])
			c.buf = c.buf[:start]
			if err := c.writeFrame(0xA, pong); err != nil {
				return nil, err
			}
			continue
		case 0xA: // pong
			c.buf = c.buf[:start]
			continue
		}
		if fin {
			return c.buf, nil
		}
	}
}

// close sends a normal closure and drops the connection without waiting for the answer.
func (c *miniWS) close() {
	_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
	_ = c.writeFrame(0x8, []byte{0x03, 0xe8}) // 1000
	_ = c.conn.Close()
}
