package netcode

// Packet layer of netcode.io 1.02 as Lightyear speaks it.
//
// Every datagram starts with a prefix byte. The connection request (prefix 0) is the only
// packet sent in the clear:
//
//	0x00 ‖ version info (13) ‖ protocol id (u64) ‖ expire timestamp (u64) ‖ token nonce (24)
//	     ‖ sealed private token (1024)                                        = 1078 bytes
//
// Every other packet is
//
//	prefix (u8) ‖ sequence (1..8 bytes, least significant first) ‖ AEAD(body) ‖ tag (16)
//
// where the low nibble of the prefix is the packet type (1 denied, 2 challenge, 3 response,
// 4 keep-alive, 5 payload, 6 disconnect) and the high nibble the number of sequence bytes
// (high zero bytes of the 64-bit sequence number are omitted; at least one byte is sent).
// The body is sealed with ChaCha20-Poly1305 (IETF, 12-byte nonce) under the client-to-server
// or server-to-client key of the connect token. The nonce is four zero bytes followed by the
// sequence number as a u64, and the associated data is version info ‖ protocol id (u64) ‖
// prefix byte, so that neither the type nor the sequence can be altered.
//
// Integers written with "(u64)" above and in the bodies below follow the Format's byte order:
// little-endian for "lightyear-0.17" (the netcode.io standard), big-endian for
// "lightyear-0.20" (lightyear_netcode writes every integer with to_be_bytes, including the
// nonce's sequence and the associated data's protocol id). The sequence bytes after the prefix
// are least-significant-first in both formats: Lightyear writes them byte by byte.
//
// Bodies (before sealing):
//
//	denied      reason (u8) [‖ length (u8) ‖ UTF-8 text when reason = 6]   (Lightyear; the
//	            standard sends an empty body, which we accept too)
//	challenge   challenge token sequence (u64) ‖ encrypted challenge token (300)
//	response    challenge token sequence (u64) ‖ encrypted challenge token (300)
//	keep-alive  client id (u64)                 (Lightyear; the standard has client index
//	            (u32) ‖ max clients (u32), also 8 bytes)
//	payload     1..1200 bytes
//	disconnect  empty
//
// The challenge token is client id (u64) ‖ user data (256) zero-padded to 284 bytes and sealed
// with ChaCha20-Poly1305 under a random key known only to the server, with the challenge
// token sequence as the nonce (four zero bytes ‖ u64), giving 300 bytes.

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf8"

	"golang.org/x/crypto/chacha20poly1305"
)

// packetType is the low nibble of a packet's prefix byte.
type packetType uint8

// Packet types of netcode.io 1.02.
const (
	packetRequest    packetType = 0
	packetDenied     packetType = 1
	packetChallenge  packetType = 2
	packetResponse   packetType = 3
	packetKeepAlive  packetType = 4
	packetPayload    packetType = 5
	packetDisconnect packetType = 6
	numPacketTypes              = 7
)

// String returns the packet type's name as the standard spells it.
func (t packetType) String() string {
	switch t {
	case packetRequest:
		return "connection request"
	case packetDenied:
		return "connection denied"
	case packetChallenge:
		return "connection challenge"
	case packetResponse:
		return "connection response"
	case packetKeepAlive:
		return "keep-alive"
	case packetPayload:
		return "payload"
	case packetDisconnect:
		return "disconnect"
	}
	return fmt.Sprintf("packetType(%d)", uint8(t))
}

// Sizes of the packet layer.
const (
	// MaxPayloadBytes is the largest payload one packet carries (netcode.io and Lightyear).
	MaxPayloadBytes = 1200

	// maxPacketBytes is the largest datagram either side reads; longer ones are ignored
	// (Lightyear's MAX_PKT_BUF_SIZE).
	maxPacketBytes = 1300
	// packetBufferBytes is the size of read and write buffers: room for a maximal packet
	// plus slack, so that a too-long datagram is seen as too long rather than truncated.
	packetBufferBytes = 1500

	macBytes           = chacha20poly1305.Overhead // 16
	packetNonceBytes   = chacha20poly1305.NonceSize
	requestPacketBytes = 1 + len(VersionInfo) + 8 + 8 + NonceBytes + PrivateTokenBytes // 1078
	// minEncryptedPacketBytes: prefix, one sequence byte and a tag (a denied packet with the
	// standard's empty body). The standard ignores anything shorter.
	minEncryptedPacketBytes = 1 + 1 + macBytes

	challengeTokenBytes      = 300
	challengeTokenPlainBytes = challengeTokenBytes - macBytes // 284
	challengeBodyBytes       = 8 + challengeTokenBytes        // 308
	keepAliveBodyBytes       = 8
	maxDeniedBodyBytes       = 2 + 255

	// packetADBytes is the associated data of a sealed packet: version, protocol id, prefix.
	packetADBytes = len(VersionInfo) + 8 + 1 // 22
)

// errPacket is wrapped by every reason a received packet is ignored. None of these errors
// reach the user: servers and clients drop bad packets silently, as the standard requires.
// They are preallocated so that rejecting garbage does not allocate.
var (
	errPacket         = errors.New("netcode: bad packet")
	errPacketSize     = fmt.Errorf("%w: bad size", errPacket)
	errPacketType     = fmt.Errorf("%w: unexpected packet type", errPacket)
	errPacketSequence = fmt.Errorf("%w: sequence bytes out of range 1..8", errPacket)
	errPacketAuth     = fmt.Errorf("%w: failed authentication", errPacket)
	errPacketBody     = fmt.Errorf("%w: bad body size for its type", errPacket)
	errPacketVersion  = fmt.Errorf("%w: %w", errPacket, ErrVersion)
	errPacketReplay   = fmt.Errorf("%w: sequence already received", errPacket)
	errDeniedBody     = fmt.Errorf("%w: malformed denied reason", errPacket)
)

// sequenceBytes returns how many bytes encode seq: 1..8, dropping high zero bytes.
func sequenceBytes(seq uint64) int {
	n := (64 - bits.LeadingZeros64(seq) + 7) / 8
	if n == 0 {
		return 1
	}
	return n
}

// appendPacketHeader appends the prefix byte and the sequence number (least significant byte
// first) of an encrypted packet.
func appendPacketHeader(b []byte, t packetType, seq uint64) []byte {
	n := sequenceBytes(seq)
	b = append(b, byte(n)<<4|byte(t))
	for i := 0; i < n; i++ {
		b = append(b, byte(seq>>(8*i)))
	}
	return b
}

// packetHeader is the clear part of an encrypted packet.
type packetHeader struct {
	prefix   byte
	typ      packetType
	sequence uint64
	size     int // bytes of prefix and sequence; the sealed body starts here
}

// readPacketHeader parses the prefix and sequence of an encrypted packet (type >= 1) and
// applies the standard's size checks, in its order. It does not look at the body.
func readPacketHeader(b []byte) (packetHeader, error) {
	var h packetHeader
	if len(b) < minEncryptedPacketBytes {
		return h, errPacketSize
	}
	if len(b) > maxPacketBytes {
		return h, errPacketSize
	}
	h.prefix = b[0]
	h.typ = packetType(b[0] & 0x0f)
	if h.typ == packetRequest || h.typ >= numPacketTypes {
		return h, errPacketType
	}
	n := int(b[0] >> 4)
	if n < 1 || n > 8 {
		return h, errPacketSequence
	}
	if len(b) < 1+n+macBytes {
		return h, errPacketSize
	}
	for i := 0; i < n; i++ {
		h.sequence |= uint64(b[1+i]) << (8 * i)
	}
	h.size = 1 + n
	return h, nil
}

// packetCipher seals and opens packets with one of a connection's keys. It holds scratch
// space for the nonce and associated data so that sealing and opening do not allocate; it is
// not safe for concurrent use (its owner's lock guards it).
type packetCipher struct {
	aead   cipher.AEAD
	format Format
	nonce  [packetNonceBytes]byte
	ad     [packetADBytes]byte
}

// newPacketCipher returns a cipher for key that binds packets to protocolID, in format f.
func newPacketCipher(key Key, f Format, protocolID uint64) (*packetCipher, error) {
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		return nil, fmt.Errorf("netcode: packet cipher: %w", err)
	}
	c := &packetCipher{aead: aead, format: f}
	copy(c.ad[:], VersionInfo)
	f.byteOrder().PutUint64(c.ad[len(VersionInfo):], protocolID)
	return c, nil
}

// setNonce writes four zero bytes and seq in the format's order into c.nonce.
func (c *packetCipher) setNonce(seq uint64) {
	c.nonce[0], c.nonce[1], c.nonce[2], c.nonce[3] = 0, 0, 0, 0
	c.format.byteOrder().PutUint64(c.nonce[4:], seq)
}

// appendPacket appends the encrypted packet of type t with sequence seq and plaintext body
// to dst and returns the extended slice. Nothing allocates when dst has room for
// len(body) + 9 + 16 more bytes.
func (c *packetCipher) appendPacket(dst []byte, t packetType, seq uint64, body []byte) []byte {
	start := len(dst)
	dst = appendPacketHeader(dst, t, seq)
	hdr := len(dst)
	dst = append(dst, body...)
	c.setNonce(seq)
	c.ad[packetADBytes-1] = dst[start]
	return c.aead.Seal(dst[:hdr], c.nonce[:], dst[hdr:], c.ad[:])
}

// open authenticates and decrypts the body of the packet b whose header is h, in place, and
// returns the plaintext body (a sub-slice of b).
func (c *packetCipher) open(b []byte, h packetHeader) ([]byte, error) {
	c.setNonce(h.sequence)
	c.ad[packetADBytes-1] = h.prefix
	sealed := b[h.size:]
	plain, err := c.aead.Open(sealed[:0], c.nonce[:], sealed, c.ad[:])
	if err != nil {
		return nil, errPacketAuth
	}
	return plain, nil
}

// checkBodySize applies the standard's per-type body size check after decryption.
func checkBodySize(t packetType, body []byte) error {
	ok := false
	switch t {
	case packetDenied:
		ok = len(body) <= maxDeniedBodyBytes
	case packetChallenge, packetResponse:
		ok = len(body) == challengeBodyBytes
	case packetKeepAlive:
		ok = len(body) == keepAliveBodyBytes
	case packetPayload:
		ok = len(body) >= 1 && len(body) <= MaxPayloadBytes
	case packetDisconnect:
		ok = len(body) == 0
	}
	if !ok {
		return errPacketBody
	}
	return nil
}

// requestPacket is a decoded connection request; nonce and sealed point into the datagram.
type requestPacket struct {
	protocolID      uint64
	expireTimestamp uint64
	nonce           *[NonceBytes]byte
	sealed          *[PrivateTokenBytes]byte
}

// tag returns the Poly1305 tag of the sealed private token, the key of token reuse history.
func (p *requestPacket) tag() [macBytes]byte {
	return [macBytes]byte(p.sealed[PrivateTokenBytes-macBytes:])
}

// appendRequestPacket appends the 1078-byte connection request for token t.
func appendRequestPacket(b []byte, t *ConnectToken) []byte {
	bo := t.Format.byteOrder()
	b = append(b, byte(packetRequest))
	b = append(b, VersionInfo...)
	b = bo.AppendUint64(b, t.ProtocolID)
	b = bo.AppendUint64(b, t.ExpireTimestamp)
	b = append(b, t.Nonce[:]...)
	return append(b, t.PrivateData[:]...)
}

// readRequestPacket decodes a connection request in format f. It checks the size, the prefix
// and the version info (ErrVersion); the caller checks protocol id and expiry.
func readRequestPacket(b []byte, f Format) (requestPacket, error) {
	var p requestPacket
	if len(b) != requestPacketBytes || b[0] != byte(packetRequest) {
		return p, errPacketSize
	}
	const off = 1 + len(VersionInfo)
	if string(b[1:off]) != VersionInfo {
		return p, errPacketVersion
	}
	bo := f.byteOrder()
	p.protocolID = bo.Uint64(b[off:])
	p.expireTimestamp = bo.Uint64(b[off+8:])
	p.nonce = (*[NonceBytes]byte)(b[off+16 : off+16+NonceBytes])
	p.sealed = (*[PrivateTokenBytes]byte)(b[off+16+NonceBytes:])
	return p, nil
}

// putChallengeBody writes a challenge or response body: the challenge token sequence and the
// encrypted challenge token.
func putChallengeBody(b *[challengeBodyBytes]byte, f Format, seq uint64, token *[challengeTokenBytes]byte) {
	f.byteOrder().PutUint64(b[:8], seq)
	copy(b[8:], token[:])
}

// readChallengeBody splits a challenge or response body (already size-checked).
func readChallengeBody(body []byte, f Format) (uint64, *[challengeTokenBytes]byte) {
	return f.byteOrder().Uint64(body[:8]), (*[challengeTokenBytes]byte)(body[8:])
}

// DeniedReason is why a server denied a connection, as Lightyear encodes it in the first byte
// of a connection denied packet. A ServerConfig.OnConnectRequest hook chooses the reason the
// client sees by returning a *DeniedError carrying it.
type DeniedReason uint8

// Denied reasons (Lightyear's DeniedReason enum, in its wire order).
const (
	// DeniedServerFull: every client slot is taken.
	DeniedServerFull DeniedReason = 0
	// DeniedBanned: the server refuses this client.
	DeniedBanned DeniedReason = 1
	// DeniedInternalError: the server could not decide (e.g. the connect request hook failed
	// or timed out).
	DeniedInternalError DeniedReason = 2
	// DeniedAlreadyConnected: a client with this id is already connected.
	DeniedAlreadyConnected DeniedReason = 3
	// DeniedTokenAlreadyUsed: the connect token was used from another address.
	DeniedTokenAlreadyUsed DeniedReason = 4
	// DeniedInvalidToken: the connect token is invalid.
	DeniedInvalidToken DeniedReason = 5
	// DeniedCustom: the reason is the text that follows in the packet.
	DeniedCustom DeniedReason = 6
	// DeniedUnspecified is what a client reports for a denied packet with an empty body, as
	// the netcode.io standard (and its C reference server) sends it.
	DeniedUnspecified DeniedReason = 255
)

// String returns a short description of r.
func (r DeniedReason) String() string {
	switch r {
	case DeniedServerFull:
		return "server full"
	case DeniedBanned:
		return "banned"
	case DeniedInternalError:
		return "internal error"
	case DeniedAlreadyConnected:
		return "already connected"
	case DeniedTokenAlreadyUsed:
		return "token already used"
	case DeniedInvalidToken:
		return "invalid token"
	case DeniedCustom:
		return "custom"
	case DeniedUnspecified:
		return "unspecified"
	}
	return fmt.Sprintf("DeniedReason(%d)", uint8(r))
}

// appendDeniedBody appends Lightyear's encoding of a denied reason. Only the fixed reasons
// are sent by our server (a custom text is accepted when reading).
func appendDeniedBody(b []byte, r DeniedReason) []byte {
	if r > DeniedInvalidToken {
		r = DeniedInternalError
	}
	return append(b, byte(r))
}

// readDeniedBody decodes a denied body: empty (standard), one reason byte, or reason 6 with a
// length-prefixed text (Lightyear). An unknown reason or a malformed text is an error.
func readDeniedBody(body []byte) (DeniedReason, string, error) {
	if len(body) == 0 {
		return DeniedUnspecified, "", nil
	}
	r := DeniedReason(body[0])
	switch {
	case r < DeniedCustom:
		return r, "", nil
	case r == DeniedCustom && len(body) >= 2 && len(body) >= 2+int(body[1]):
		text := body[2 : 2+int(body[1])]
		if !utf8.Valid(text) {
			return 0, "", errDeniedBody
		}
		return r, string(text), nil
	}
	return 0, "", errDeniedBody
}
