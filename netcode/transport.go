package netcode

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"
)

// wtListenConfig is what listenWebTransport needs from the server's configuration.
type wtListenConfig struct {
	addr        string
	tls         *tls.Config
	maxPerIP    int
	idleTimeout time.Duration
	log         *slog.Logger
}

// Transport names how netcode packets travel between client and server. The protocol
// (handshake, keep-alives, payloads, disconnects, replay protection, timeouts) is the same on
// both; only the carrier differs.
type Transport string

// Transports.
const (
	// TransportUDP: plain UDP datagrams (netcode.io standard).
	TransportUDP Transport = "udp"
	// TransportWebTransport: one WebTransport session per client over its own QUIC connection,
	// one netcode packet per datagram (Lightyear 0.17's WebTransportServer / WebTransportClient,
	// and browsers).
	TransportWebTransport Transport = "webtransport"
)

// MaxWebTransportPayloadBytes is the largest payload one packet carries over WebTransport,
// where every netcode packet must fit one WebTransport datagram in one QUIC packet of
// Lightyear's minimum size, 1200 bytes (the size our QUIC stack keeps). quic-go accepts
// datagrams of up to 1200 − 37 bytes at that size (its header estimate: type byte, 20-byte
// connection id, 16-byte tag); the HTTP/3 quarter stream id takes 1 byte, so a packet may
// have 1162 bytes: prefix, up to 8 sequence bytes, 1137 bytes of payload and the 16-byte
// tag. The QUIC packet then fits 1200 bytes for connection ids of up to 13 bytes (quic-go
// uses 4, Chromium and quinn 8). Over UDP the limit is MaxPayloadBytes.
const MaxWebTransportPayloadBytes = 1200 - (1 + 20 + 16) - 1 - (1 + 8 + macBytes) // 1137

// maxPayload returns the largest payload over t.
func (t Transport) maxPayload() int {
	if t == TransportWebTransport {
		return MaxWebTransportPayloadBytes
	}
	return MaxPayloadBytes
}

// errTransport: a Transport value that names no transport.
var errTransport = errors.New(`netcode: transport must be "udp" or "webtransport"`)

// ParseTransport parses "udp" or "webtransport" (case-insensitive, surrounding spaces
// ignored). The empty string is an error: callers that default choose the default themselves.
func ParseTransport(s string) (Transport, error) {
	switch t := Transport(strings.ToLower(strings.TrimSpace(s))); t {
	case TransportUDP, TransportWebTransport:
		return t, nil
	}
	return "", fmt.Errorf("%w, got %q", errTransport, s)
}

// String returns the transport's name ("udp" for the zero value).
func (t Transport) String() string {
	if t == "" {
		return string(TransportUDP)
	}
	return string(t)
}

// normalize returns t parsed as ParseTransport does, "" meaning TransportUDP.
func (t Transport) normalize() (Transport, error) {
	if t == "" {
		return TransportUDP, nil
	}
	return ParseTransport(string(t))
}
