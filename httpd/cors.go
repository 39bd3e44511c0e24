package httpd

import (
	"net/http"
	"net/url"
	"strings"
)

// corsPolicy is the allow-list of browser origins.
type corsPolicy struct {
	any     bool
	origins map[string]bool
}

func newCORSPolicy(origins []string) corsPolicy {
	p := corsPolicy{origins: map[string]bool{}}
	for _, o := range origins {
		if o == "*" {
			p.any = true
			continue
		}
		p.origins[strings.ToLower(o)] = true
	}
	return p
}

// allowed reports whether a browser at origin may call us cross-origin.
func (p corsPolicy) allowed(origin string) bool {
	return p.any || p.origins[strings.ToLower(origin)]
}

// permits reports whether r may start a session: requests without an Origin header (native
// clients, curl), same-origin requests and allowed origins. Browsers send simple cross-origin
// POSTs and WebSocket upgrades without a preflight, so this check, not the browser, is what
// stops a foreign web page from spending our Edgegap budget.
func (p corsPolicy) permits(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" || p.allowed(origin) {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
}

// handler wraps next with CORS headers and answers preflight requests. A preflight from an
// origin that is not allowed gets 403 without CORS headers.
func (p corsPolicy) handler(next http.Handler, onReject func(reason string)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		ok := p.allowed(origin)
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			if !ok {
				onReject("cors")
				http.Error(w, "origin not allowed", http.StatusForbidden)
				return
			}
			p.setAllowOrigin(h, origin)
			h.Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Content-Type, Authorization") // Authorization: party tokens
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if ok {
			p.setAllowOrigin(h, origin)
		}
		next.ServeHTTP(w, r)
	})
}

func (p corsPolicy) setAllowOrigin(h http.Header, origin string) {
	if p.any {
		h.Set("Access-Control-Allow-Origin", "*")
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
}
