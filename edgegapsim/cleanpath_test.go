package edgegapsim

import (
	"net/http"
	"net/url"
	"testing"
)

// checkPlainPath fails when plainPath takes a path that rewritePath would change.
func checkPlainPath(t *testing.T, target string) bool {
	t.Helper()
	u, err := url.ParseRequestURI(target)
	if err != nil || !plainPath(u) {
		return false
	}
	r := &http.Request{URL: u}
	c := rewritePath(r).URL
	if c.Path != u.Path || c.EscapedPath() != u.EscapedPath() {
		t.Fatalf("plainPath(%q) is true, but the clean path is %q (escaped %q), not %q (%q)",
			target, c.Path, c.EscapedPath(), u.Path, u.EscapedPath())
	}
	return true
}

func TestPlainPath(t *testing.T) {
	for _, p := range []string{"/", "/v1/session", "/v1/session/0123456789ab-S", "/v1/app/a_b.c~d/version/v1",
		"/v1/context/abc/12345"} {
		if !checkPlainPath(t, p) {
			t.Errorf("plainPath(%q) = false", p)
		}
	}
	for _, p := range []string{"//v1/session", "/v1/session/", "/v1//session", "/v1/./session", "/v1/../x",
		"/v1/session/a%2Fb", "/v1/session/a%41", "/v1/session/a;b", "/v1/session/a:b", "/v1/session/a b",
		"/.", "/..", "*"} {
		if checkPlainPath(t, p) {
			t.Errorf("plainPath(%q) = true", p)
		}
	}
}

func FuzzPlainPath(f *testing.F) {
	for _, p := range []string{"/v1/session/abc-S", "//v1/session", "/a/./b", "/a%2Fb", "/.../x"} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p string) { checkPlainPath(t, p) })
}
