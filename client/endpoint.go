package client

import (
	"fmt"
	"net/url"
	"strings"
)

// Paths of the HTTP front door (see DESIGN.md, "HTTP front door").
const (
	wsPath      = "/matchmaker/ws"
	requestPath = "/matchmaker/request"
	partyPath   = "/matchmaker/party"
)

// partyEndpoint returns the base URL of the party routes of game (version),
// http(s)://host/…/matchmaker/party/{game}/{version}, for a matchmaker URL in any of the forms
// [endpoint] takes (…/ws and …/request map to the sibling …/party).
func partyEndpoint(raw, game, version string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	switch strings.ToLower(u.Scheme) {
	case "ws", "http":
		u.Scheme = "http"
	case "wss", "https":
		u.Scheme = "https"
	default:
		return "", fmt.Errorf("%w %q: want ws://, wss://, http:// or https://", ErrInvalidURL, raw)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("%w %q: no host", ErrInvalidURL, raw)
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case p == "":
		p = partyPath
	case strings.HasSuffix(p, "/matchmaker"):
		p += "/party"
	case strings.HasSuffix(p, "/ws"):
		p = strings.TrimSuffix(p, "/ws") + "/party"
	case strings.HasSuffix(p, "/request"):
		p = strings.TrimSuffix(p, "/request") + "/party"
	case strings.HasSuffix(p, "/party"):
	default:
		return "", fmt.Errorf("%w %q: path %q is neither the front door's root, …/matchmaker, …/ws, …/request nor …/party", ErrInvalidURL, raw, u.Path)
	}
	u.Path, u.RawPath = p+"/"+game+"/"+version, ""
	u.RawQuery, u.Fragment, u.RawFragment = "", "", ""
	return u.String(), nil
}

// endpoint turns the matchmaker URL a user gave into the URL that transport t talks to.
//
// Schemes ws, wss, http and https are all accepted and mapped to the transport: ws/http and
// wss/https are the same server. The path may be empty or "/" (the default routes are used),
// end in "/matchmaker" (the route is appended), or name the WebSocket route ("…/ws"); for the
// chunked transport a path ending in "/ws" is mapped to the sibling ".../request/{game}/{version}"
// and a path ending in "/request" gets "/{game}/{version}" appended. A non-empty clientIP is put
// in the query parameter client_ip (replacing one that is already there), which both the
// reference httpd and ours honour.
func endpoint(raw string, t Transport, game, version, clientIP string) (string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrInvalidURL, err)
	}
	secure := false
	switch strings.ToLower(u.Scheme) {
	case "ws", "http":
	case "wss", "https":
		secure = true
	case "":
		return "", fmt.Errorf("%w %q: no scheme (want ws://, wss://, http:// or https://)", ErrInvalidURL, raw)
	default:
		return "", fmt.Errorf("%w %q: scheme %q (want ws, wss, http or https)", ErrInvalidURL, raw, u.Scheme)
	}
	if u.Host == "" || u.Hostname() == "" {
		return "", fmt.Errorf("%w %q: no host", ErrInvalidURL, raw)
	}
	u.Fragment, u.RawFragment = "", ""

	p := strings.TrimRight(u.Path, "/")
	switch t {
	case TransportWebSocket:
		u.Scheme = "ws"
		if secure {
			u.Scheme = "wss"
		}
		switch {
		case p == "":
			p = wsPath
		case strings.HasSuffix(p, "/matchmaker"):
			p += "/ws"
		}
	case TransportHTTP:
		u.Scheme = "http"
		if secure {
			u.Scheme = "https"
		}
		switch {
		case p == "":
			p = requestPath
		case strings.HasSuffix(p, "/matchmaker"):
			p += "/request"
		case strings.HasSuffix(p, "/ws"):
			p = strings.TrimSuffix(p, "/ws") + "/request"
		case strings.HasSuffix(p, "/request"):
		default:
			return "", fmt.Errorf("%w %q: path %q is neither the front door's root, …/matchmaker, …/ws nor …/request", ErrInvalidURL, raw, u.Path)
		}
		// game and version are validated (letters, digits, white space, '_' and '-'), so
		// they are single path segments; String escapes the white space.
		p += "/" + game + "/" + version
	default:
		return "", fmt.Errorf("%w: unknown transport %d", ErrInvalidURL, t)
	}
	u.Path, u.RawPath = p, ""

	if clientIP != "" {
		q := u.Query()
		q.Set("client_ip", clientIP)
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}
