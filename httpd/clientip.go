package httpd

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// errBadClientIP is returned when a client_ip override is not an IP address.
var errBadClientIP = errors.New("client_ip is not an IP address")

// ipPolicy decides which address a request comes from (for limits) and which address is sent to
// Edgegap for placement.
type ipPolicy struct {
	trusted       []netip.Prefix
	allowOverride bool
	standIn       netip.Addr
}

// cgnat is the shared address space of carrier-grade NAT (RFC 6598): not a player's public IP.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// source returns the address the request really comes from: the first X-Forwarded-For entry
// when the TCP peer is a trusted proxy and the entry is an IP address, else the peer itself.
// xff holds the X-Forwarded-For header values in order.
func (p ipPolicy) source(peer netip.Addr, xff []string) netip.Addr {
	peer = peer.Unmap()
	if len(xff) == 0 || !p.isTrusted(peer) {
		return peer
	}
	first, _, _ := strings.Cut(xff[0], ",")
	if a, ok := parseHostMaybePort(strings.TrimSpace(first)); ok {
		return a
	}
	return peer
}

func (p ipPolicy) isTrusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, pr := range p.trusted {
		if pr.Contains(a) {
			return true
		}
	}
	return false
}

// placement returns the address to send to Edgegap: override (when allowed and non-empty) or
// src, with an address that is not publicly routable replaced by the stand-in.
func (p ipPolicy) placement(src netip.Addr, override string) (netip.Addr, error) {
	a := src.Unmap()
	if override = strings.TrimSpace(override); override != "" && p.allowOverride {
		o, err := netip.ParseAddr(override)
		if err != nil {
			return netip.Addr{}, errBadClientIP
		}
		a = o.WithZone("").Unmap()
	}
	if !isPublic(a) {
		return p.standIn, nil
	}
	return a, nil
}

// isPublic reports whether a is a unicast address that can be on the public internet.
func isPublic(a netip.Addr) bool {
	return a.IsValid() && a.IsGlobalUnicast() && !a.IsPrivate() && !a.IsLoopback() &&
		!a.IsLinkLocalUnicast() && !a.IsUnspecified() && !cgnat.Contains(a)
}

// parseHostMaybePort parses "1.2.3.4", "1.2.3.4:80", "2001:db8::1" or "[2001:db8::1]:80".
func parseHostMaybePort(s string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(s); err == nil {
		return a.WithZone("").Unmap(), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().WithZone("").Unmap(), true
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(h); err == nil {
			return a.WithZone("").Unmap(), true
		}
	}
	return netip.Addr{}, false
}

// peerAddr returns the TCP peer of r (the zero Addr if RemoteAddr is not an address).
func peerAddr(r *http.Request) netip.Addr {
	a, _ := parseHostMaybePort(r.RemoteAddr)
	return a
}

// requestSource is source() for an HTTP request.
func (p ipPolicy) requestSource(r *http.Request) netip.Addr {
	return p.source(peerAddr(r), r.Header.Values("X-Forwarded-For"))
}

// limitKey is the key of per-IP limits: the address itself for IPv4, its /64 for IPv6 (one
// subscriber usually holds a whole /64).
func limitKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.WithZone("").Prefix(64)
		return p
	}
	if !a.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, 32)
}
