package protocol

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"

	"github.com/bevygap-go/bevygap/internal/names"
)

// Keys of the cert_digests bucket ([BucketCertDigests]). Each value is a game server's
// WebTransport certificate digest exactly as bevygap_server_plugin writes it: wtransport's
// Sha256Digest Display, lower-case hex bytes joined by ':' ("61:62:…:40").
//
//	<public ip>                 written by every game server (the reference's only key; the
//	                            Rust matchmaker reads it). Deployments sharing one IP overwrite
//	                            each other's value.
//	<public ip>.<deployment>    written by Go game servers (package gameserver) next to it: one
//	                            key per deployment, which the Go matchmaker prefers. <deployment>
//	                            is the Edgegap request id (see [CertDigestDeploymentKey]).
//
// An IPv6 address cannot be a KV key (':' is not allowed): it has no IP key, and its ':' become
// '-' in the deployment key.

// CertDigestIPKey returns the reference's cert_digests key of a public IP: the IP as text. It
// reports false for an address that cannot be a KV key (IPv6, or invalid).
func CertDigestIPKey(ip netip.Addr) (string, bool) {
	ip = ip.Unmap()
	if !ip.Is4() {
		return "", false
	}
	return ip.String(), true
}

// CertDigestDeploymentKey returns the per-deployment cert_digests key: "<public ip>.<request id>",
// for example "1.2.3.4.9170f5211e17". A request id that is not 1..64 ASCII letters, digits, '_'
// or '-' (Edgegap's are 12 hex digits) is replaced by the first 32 hex digits of its SHA-256, so
// the key is always valid. It reports false for an invalid IP or an empty request id.
// [CertDigestDeploymentFilter] matches every deployment key of one IP.
func CertDigestDeploymentKey(ip netip.Addr, requestID string) (string, bool) {
	if !ip.IsValid() || requestID == "" {
		return "", false
	}
	if !names.Valid(requestID, 64, "_-") {
		sum := sha256.Sum256([]byte(requestID))
		requestID = hex.EncodeToString(sum[:16])
	}
	return ipToken(ip) + "." + requestID, true
}

// CertDigestDeploymentFilter returns the KV key filter that matches the deployment keys of ip
// (and not its IP key): "<public ip>.*".
func CertDigestDeploymentFilter(ip netip.Addr) (string, bool) {
	if !ip.IsValid() {
		return "", false
	}
	return ipToken(ip) + ".*", true
}

// ipToken is ip as key characters: IPv4 dotted, IPv6 with '-' for ':'.
func ipToken(ip netip.Addr) string {
	ip = ip.Unmap().WithZone("")
	return strings.ReplaceAll(ip.String(), ":", "-")
}
