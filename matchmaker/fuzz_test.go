package matchmaker

import (
	"net/http"
	"testing"
)

// FuzzDecodeRequest: any body gives either a client IP or a 400, never a panic.
func FuzzDecodeRequest(f *testing.F) {
	for _, s := range []string{`{"client_ip":"1.2.3.4"}`, `{"client_ip":"::1","x":[1]}`, `{}`, `[]`, `"x"`, `{"client_ip":null}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, rerr := decodeClientIP(data)
		if rerr != nil {
			if rerr.Code != http.StatusBadRequest || rerr.Message == "" {
				t.Fatalf("error %v", rerr)
			}
			return
		}
		if ip, rerr := parseClientIP(s); rerr == nil && !ip.IsValid() {
			t.Fatalf("valid result with invalid ip for %q", s)
		} else if rerr != nil && rerr.Code != http.StatusBadRequest {
			t.Fatalf("error %v", rerr)
		}
	})
}
