package bench

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestMiniWS: the bench's WebSocket client talks to coder/websocket (the front door's
// library): handshake, a masked text frame the server reads, server messages of every length
// encoding (7-bit, 16-bit, 64-bit), then the server's close.
func TestMiniWS(t *testing.T) {
	t.Parallel()
	sizes := []int{5, 2800, 70000}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		defer func() { _ = c.CloseNow() }()
		ctx := r.Context()
		typ, got, err := c.Read(ctx)
		if err != nil || typ != websocket.MessageText || string(got) != "hello" {
			t.Errorf("server read %v %q %v", typ, got, err)
			return
		}
		for _, n := range sizes {
			if err := c.Write(ctx, websocket.MessageText, bytes.Repeat([]byte{'x'}, n)); err != nil {
				t.Error(err)
				return
			}
		}
		_ = c.Close(websocket.StatusNormalClosure, "bye")
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := dialWS(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	if err := c.writeText([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	for _, n := range sizes {
		b, err := c.readMessage()
		if err != nil || len(b) != n || bytes.Count(b, []byte{'x'}) != n {
			t.Fatalf("message of %d bytes: got %d bytes, %v", n, len(b), err)
		}
	}
	if _, err := c.readMessage(); !errors.Is(err, errWSClosed) {
		t.Errorf("after the server's close: %v, want errWSClosed", err)
	}
}
