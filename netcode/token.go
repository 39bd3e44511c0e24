package netcode

import (
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/crypto/chacha20poly1305"
)

// Sizes and constants of the connect token format (see the package documentation).
const (
	// VersionInfo is the 13-byte version string at the start of tokens and connection requests.
	VersionInfo = "NETCODE 1.02\x00"
	// ConnectTokenBytes is the size of an encoded connect token.
	ConnectTokenBytes = 2048
	// PrivateTokenBytes is the size of the sealed private part: 1008 bytes of plaintext plus
	// the 16-byte Poly1305 tag.
	PrivateTokenBytes = 1024
	// UserDataBytes is the size of the user data carried in the private part.
	UserDataBytes = 256
	// KeyBytes is the size of a Key.
	KeyBytes = 32
	// NonceBytes is the size of the XChaCha20-Poly1305 nonce of the private part.
	NonceBytes = 24
	// MaxServersPerConnect is the largest number of server addresses a token may carry.
	MaxServersPerConnect = 32

	// DefaultExpireSeconds is Lightyear's token lifetime, used when TokenParams.ExpireSeconds is 0.
	DefaultExpireSeconds = 30
	// DefaultTimeoutSeconds is Lightyear's connection timeout, used when
	// TokenParams.TimeoutSeconds is 0.
	DefaultTimeoutSeconds = 15
)

// Offsets in the public token and in the private plaintext.
const (
	offVersion    = 0
	offProtocolID = 13
	offCreate     = 21
	offExpire     = 29
	offNonce      = 37
	offPrivate    = 61
	offTimeout    = 1085 // = offPrivate + PrivateTokenBytes
	offAddrCount  = 1089

	privatePlainBytes = PrivateTokenBytes - chacha20poly1305.Overhead // 1008
	privOffClientID   = 0
	privOffTimeout    = 8
	privOffAddrCount  = 12

	associatedDataBytes = len(VersionInfo) + 8 + 8 // 29
	mintRandomBytes     = NonceBytes + 2*KeyBytes  // 88
)

// Errors of this package. Test for them with errors.Is; the returned errors wrap them with
// detail (never with key material).
var (
	// ErrTokenSize: a connect token is not exactly ConnectTokenBytes long.
	ErrTokenSize = errors.New("netcode: connect token must be 2048 bytes")
	// ErrVersion: the version info is not "NETCODE 1.02\0".
	ErrVersion = errors.New("netcode: bad version info")
	// ErrProtocolID: a token or packet carries a protocol id other than the expected one.
	ErrProtocolID = errors.New("netcode: wrong protocol id")
	// ErrExpired: the token's expire timestamp has passed.
	ErrExpired = errors.New("netcode: connect token expired")
	// ErrAddress: a bad server address count (not 1..32), an unknown address type, a truncated
	// address, or an address that cannot be encoded.
	ErrAddress = errors.New("netcode: bad server address")
	// ErrAuth: the private part did not authenticate: wrong key, or tampered bytes (private
	// part, nonce, protocol id or expire timestamp).
	ErrAuth = errors.New("netcode: private connect token failed authentication (wrong key or tampered token)")
	// ErrKey: a key could not be parsed.
	ErrKey = errors.New("netcode: invalid key")
	// ErrZeroKey: an all-zero private key was given where it is not allowed (see ValidateKey).
	ErrZeroKey = errors.New("netcode: all-zero private key")
)

// TokenParams are the inputs of one connect token.
type TokenParams struct {
	// ProtocolID identifies the game; the server refuses tokens for another protocol id.
	ProtocolID uint64
	// ClientID identifies the player to the game server; it is only in the private part.
	ClientID uint64
	// ServerAddrs are 1..32 public addresses the client tries in order.
	ServerAddrs []netip.AddrPort
	// InternalAddrs, when not empty, go in the private part instead of ServerAddrs (the
	// addresses as the game server sees itself). 1..32 entries.
	InternalAddrs []netip.AddrPort
	// ExpireSeconds is the token lifetime from its creation: 0 means DefaultExpireSeconds,
	// negative means it never expires (expire timestamp math.MaxUint64).
	ExpireSeconds int64
	// TimeoutSeconds is the connection timeout written in the token: 0 means
	// DefaultTimeoutSeconds, negative means the connection never times out.
	TimeoutSeconds int32
	// UserData is opaque data for the game server, delivered in the private part.
	UserData [UserDataBytes]byte
}

// Minter mints connect tokens with one private key.
//
// Now and Rand may be nil (time.Now and crypto/rand); tests inject them to reproduce the
// known-answer vectors. Rand is read for exactly 88 bytes per token: the nonce (24), then the
// client-to-server key (32), then the server-to-client key (32).
//
// A Minter caches its AEAD cipher for Key, so it is safe for concurrent use but must not be
// copied after first use. Changing Key between calls is allowed (the cache notices), but not
// concurrently with Mint. The Minter does not apply a key policy: callers taking a key from
// an operator call ValidateKey first.
type Minter struct {
	Key    Key
	Format Format
	Now    func() time.Time
	Rand   io.Reader

	aead atomic.Pointer[keyedAEAD]
	// pool is behind a pointer so that printing a Minter (%+v) shows an address, never
	// the random bytes of future tokens.
	pool atomic.Pointer[randomPool]
}

// keyedAEAD is a cached cipher together with the key it was built from, and a pool of
// associated-data buffers for sealing with it.
type keyedAEAD struct {
	key    Key
	aead   cipher.AEAD
	adPool sync.Pool // of *[associatedDataBytes]byte
}

// cipher returns the XChaCha20-Poly1305 AEAD for m.Key, building and caching it on first use
// or after Key changed.
func (m *Minter) cipher() (*keyedAEAD, error) {
	if c := m.aead.Load(); c != nil && c.key == m.Key {
		return c, nil
	}
	a, err := chacha20poly1305.NewX(m.Key[:])
	if err != nil {
		return nil, fmt.Errorf("netcode: %w", err)
	}
	c := &keyedAEAD{key: m.Key, aead: a}
	c.adPool.New = func() any { return new([associatedDataBytes]byte) }
	m.aead.Store(c)
	return c, nil
}

// randomPoolBytes is how much crypto/rand output a Minter fetches at once: enough for 46
// tokens. crypto/rand has a fixed cost per call, so batching makes each token cheaper.
const randomPoolBytes = 46 * mintRandomBytes

// randomPool hands out crypto/rand bytes fetched in batches, which saves the fixed cost of a
// crypto/rand call per token. Every byte is handed out once and wiped from the pool as it is
// taken. The zero value is an empty pool; it is safe for concurrent use.
type randomPool struct {
	mu   sync.Mutex
	buf  [randomPoolBytes]byte
	left int // unused bytes, at the end of buf
}

// read fills p (at most randomPoolBytes long) from the pool, refilling the pool from
// crypto/rand when fewer than len(p) bytes are left.
func (r *randomPool) read(p []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(p) > r.left {
		if _, err := rand.Read(r.buf[:]); err != nil {
			return err
		}
		r.left = len(r.buf)
	}
	taken := r.buf[len(r.buf)-r.left:][:len(p)]
	copy(p, taken)
	clear(taken)
	r.left -= len(p)
	return nil
}

// mintBuffer is the single allocation Mint makes for a token with one server address (the
// bevygap case): the token and its address list live together.
type mintBuffer struct {
	addrs [1]netip.AddrPort
	token ConnectToken
}

// Mint builds and seals a new connect token for p. It fails (wrapping ErrAddress or
// ErrFormat) on bad parameters, or when the random source fails.
//
// The returned token has Format m.Format; encode it with Bytes or Base64. Mint allocates only
// the token; MintInto reuses a token and allocates nothing.
func (m *Minter) Mint(p TokenParams) (*ConnectToken, error) {
	buf := new(mintBuffer)
	t := &buf.token
	if len(p.ServerAddrs) == 1 {
		t.ServerAddrs = buf.addrs[:0]
	}
	if err := m.MintInto(t, p); err != nil {
		return nil, err
	}
	return t, nil
}

// MintInto is Mint writing into t, which it overwrites completely (t.ServerAddrs' backing
// array is reused when it is large enough). It allocates nothing for tokens of at most
// cap(t.ServerAddrs) addresses, so a service can mint from a pool of tokens: mint, encode
// with AppendBase64, put the token back. On error t is left zeroed but for ServerAddrs.
func (m *Minter) MintInto(t *ConnectToken, p TokenParams) error {
	addrs := t.ServerAddrs[:0]
	*t = ConnectToken{}
	if err := checkFormat(m.Format); err != nil {
		return err
	}
	if err := checkAddressList("server", p.ServerAddrs); err != nil {
		return err
	}
	private := p.ServerAddrs
	if len(p.InternalAddrs) > 0 {
		if err := checkAddressList("internal", p.InternalAddrs); err != nil {
			return err
		}
		private = p.InternalAddrs
	}
	c, err := m.cipher()
	if err != nil {
		return err
	}
	t.ServerAddrs = append(addrs, p.ServerAddrs...)

	if err := m.random(t); err != nil {
		clear(t.Nonce[:])
		clear(t.ClientToServerKey[:])
		clear(t.ServerToClientKey[:])
		return err
	}

	var now time.Time
	if m.Now != nil {
		now = m.Now()
	} else {
		now = time.Now()
	}
	t.Format = m.Format
	t.ProtocolID = p.ProtocolID
	t.CreateTimestamp = unixSeconds(now)
	t.ExpireTimestamp = expireTimestamp(t.CreateTimestamp, p.ExpireSeconds)
	t.TimeoutSeconds = p.TimeoutSeconds
	if t.TimeoutSeconds == 0 {
		t.TimeoutSeconds = DefaultTimeoutSeconds
	}

	// Private plaintext, written straight into the output and sealed in place.
	bo := m.Format.byteOrder()
	plain := t.PrivateData[:privatePlainBytes]
	bo.PutUint64(plain[privOffClientID:], p.ClientID)
	bo.PutUint32(plain[privOffTimeout:], uint32(t.TimeoutSeconds))
	n := putAddressList(plain[privOffAddrCount:], private, m.Format) + privOffAddrCount
	n += copy(plain[n:], t.ClientToServerKey[:])
	n += copy(plain[n:], t.ServerToClientKey[:])
	copy(plain[n:], p.UserData[:])

	// The associated data lives in the cipher cache entry's scratch pool: a slice passed to an
	// interface method escapes, and a fresh one per token would be an allocation.
	ad := c.adPool.Get().(*[associatedDataBytes]byte)
	putAssociatedData(ad, t.ProtocolID, t.ExpireTimestamp, m.Format)
	c.aead.Seal(plain[:0], t.Nonce[:], plain, ad[:])
	c.adPool.Put(ad)
	return nil
}

// random fills the nonce and both keys of t, in that order, from m.Rand or crypto/rand.
func (m *Minter) random(t *ConnectToken) error {
	var err error
	if m.Rand != nil {
		// One read per field keeps the documented stream order without a scratch buffer.
		if _, err = io.ReadFull(m.Rand, t.Nonce[:]); err == nil {
			if _, err = io.ReadFull(m.Rand, t.ClientToServerKey[:]); err == nil {
				_, err = io.ReadFull(m.Rand, t.ServerToClientKey[:])
			}
		}
	} else {
		pool := m.pool.Load()
		if pool == nil {
			m.pool.CompareAndSwap(nil, new(randomPool))
			pool = m.pool.Load()
		}
		var r [mintRandomBytes]byte
		err = pool.read(r[:])
		copy(t.Nonce[:], r[:NonceBytes])
		copy(t.ClientToServerKey[:], r[NonceBytes:])
		copy(t.ServerToClientKey[:], r[NonceBytes+KeyBytes:])
		clear(r[:])
	}
	if err != nil {
		return fmt.Errorf("netcode: read random nonce and keys: %w", err)
	}
	return nil
}

// unixSeconds is now as unsigned Unix seconds (0 before 1970).
func unixSeconds(now time.Time) uint64 {
	s := now.Unix()
	if s < 0 {
		return 0
	}
	return uint64(s)
}

// expireTimestamp applies Lightyear's rule: create + seconds (0 = default 30), or
// math.MaxUint64 for negative seconds; it saturates instead of overflowing.
func expireTimestamp(create uint64, seconds int64) uint64 {
	switch {
	case seconds < 0:
		return math.MaxUint64
	case seconds == 0:
		seconds = DefaultExpireSeconds
	}
	if uint64(seconds) > math.MaxUint64-create {
		return math.MaxUint64
	}
	return create + uint64(seconds)
}

// putAssociatedData writes version info ‖ protocol id ‖ expire timestamp in f's order.
func putAssociatedData(ad *[associatedDataBytes]byte, protocolID, expire uint64, f Format) {
	copy(ad[:], VersionInfo)
	bo := f.byteOrder()
	bo.PutUint64(ad[len(VersionInfo):], protocolID)
	bo.PutUint64(ad[len(VersionInfo)+8:], expire)
}

// putAddressList writes a u32 count and the addresses at the start of b, returning the bytes
// written. The list must have been checked with checkAddressList.
func putAddressList(b []byte, list []netip.AddrPort, f Format) int {
	f.byteOrder().PutUint32(b, uint32(len(list)))
	n := 4
	for _, a := range list {
		n += putAddress(b[n:], a, f)
	}
	return n
}

// ConnectToken is the public (client-visible) part of a connect token, plus its sealed
// private part, which only the game servers' private key opens.
type ConnectToken struct {
	// ServerAddrs are the 1..32 addresses the client tries, in order. (It is the first field
	// on purpose: the garbage collector then scans only the start of a token, not its 1 KiB
	// of sealed bytes, which keeps minting cheap.)
	ServerAddrs []netip.AddrPort
	// Format is the byte order the token is encoded in.
	Format Format
	// ProtocolID identifies the game.
	ProtocolID uint64
	// CreateTimestamp is when the token was made, in Unix seconds.
	CreateTimestamp uint64
	// ExpireTimestamp is when the token stops being accepted, in Unix seconds;
	// math.MaxUint64 means never.
	ExpireTimestamp uint64
	// Nonce is the XChaCha20-Poly1305 nonce of the private part.
	Nonce [NonceBytes]byte
	// PrivateData is the sealed private part (see PrivateToken).
	PrivateData [PrivateTokenBytes]byte
	// TimeoutSeconds is the connection timeout; negative means never time out.
	TimeoutSeconds int32
	// ClientToServerKey encrypts packets from the client to the server.
	ClientToServerKey Key
	// ServerToClientKey encrypts packets from the server to the client.
	ServerToClientKey Key
}

// MarshalBinary encodes t into exactly ConnectTokenBytes bytes. It fails (wrapping ErrAddress
// or ErrFormat) when t cannot be encoded: an undefined Format, or not 1..32 valid addresses.
func (t *ConnectToken) MarshalBinary() ([]byte, error) {
	if err := checkFormat(t.Format); err != nil {
		return nil, err
	}
	if err := checkAddressList("server", t.ServerAddrs); err != nil {
		return nil, err
	}
	b := make([]byte, ConnectTokenBytes)
	t.put(b)
	return b, nil
}

// Bytes returns the ConnectTokenBytes-byte encoding of t. Tokens from Mint and
// DecodeConnectToken always encode; for a hand-built token that cannot (see MarshalBinary),
// Bytes returns nil.
func (t *ConnectToken) Bytes() []byte {
	b, err := t.MarshalBinary()
	if err != nil {
		return nil
	}
	return b
}

// Base64 returns the standard base64 encoding, with padding, of Bytes (2732 characters), as
// bevygap sends it to clients. It returns "" when Bytes returns nil.
func (t *ConnectToken) Base64() string {
	if checkFormat(t.Format) != nil || checkAddressList("server", t.ServerAddrs) != nil {
		return ""
	}
	// One allocation, the text: the binary token is laid out in its last ConnectTokenBytes
	// bytes and encoded in place (encodeInPlace), which overwrites all of it. The string is
	// the text itself, never written again, not a copy of it.
	text := make([]byte, base64.StdEncoding.EncodedLen(ConnectTokenBytes))
	t.put(text[len(text)-ConnectTokenBytes:])
	encodeInPlace(text)
	return unsafe.String(unsafe.SliceData(text), len(text))
}

// stdAlphabet is base64.StdEncoding's alphabet.
const stdAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// encodeInPlace base64-encodes (standard alphabet, padded) the ConnectTokenBytes bytes at
// the end of text, len(text) == EncodedLen(ConnectTokenBytes), into text. Group k (3 bytes
// at 684+3k) is read before its 4 characters are written at 4k, and 4k+4 <= 684+3(k+1)
// for every group, so no byte is overwritten before it was read.
func encodeInPlace(text []byte) {
	src := len(text) - ConnectTokenBytes
	di := 0
	for si := src; si+3 <= len(text); si += 3 {
		v := uint(text[si])<<16 | uint(text[si+1])<<8 | uint(text[si+2])
		text[di+0] = stdAlphabet[v>>18&0x3f]
		text[di+1] = stdAlphabet[v>>12&0x3f]
		text[di+2] = stdAlphabet[v>>6&0x3f]
		text[di+3] = stdAlphabet[v&0x3f]
		di += 4
	}
	if rest := (len(text) - src) % 3; rest > 0 { // ConnectTokenBytes % 3 == 2
		si := len(text) - rest
		v := uint(text[si]) << 16
		if rest == 2 {
			v |= uint(text[si+1]) << 8
		}
		text[di+0] = stdAlphabet[v>>18&0x3f]
		text[di+1] = stdAlphabet[v>>12&0x3f]
		if rest == 2 {
			text[di+2] = stdAlphabet[v>>6&0x3f]
		} else {
			text[di+2] = '='
		}
		text[di+3] = '='
	}
}

// AppendBase64Scratch is spare capacity with which AppendBase64 allocates nothing (the 2732
// characters of the text suffice: the binary token is laid out in the text's own space).
const AppendBase64Scratch = 2732 + ConnectTokenBytes

// AppendBase64 appends the standard base64 encoding, with padding, of the token's
// ConnectTokenBytes bytes to dst (2732 characters) and returns the extended buffer. It fails like
// MarshalBinary, leaving dst unchanged. It allocates nothing when dst has room for the 2732
// characters.
func (t *ConnectToken) AppendBase64(dst []byte) ([]byte, error) {
	if err := checkFormat(t.Format); err != nil {
		return dst, err
	}
	if err := checkAddressList("server", t.ServerAddrs); err != nil {
		return dst, err
	}
	// The binary token is laid out at the end of the text's space and encoded in place
	// (encodeInPlace), which overwrites all of it.
	n := len(dst)
	textLen := base64.StdEncoding.EncodedLen(ConnectTokenBytes)
	dst = slices.Grow(dst, textLen)[:n+textLen]
	raw := dst[n+textLen-ConnectTokenBytes:]
	clear(raw)
	t.put(raw)
	encodeInPlace(dst[n:])
	return dst, nil
}

// put writes t into b (ConnectTokenBytes long, zeroed); t must be valid.
func (t *ConnectToken) put(b []byte) {
	bo := t.Format.byteOrder()
	copy(b[offVersion:], VersionInfo)
	bo.PutUint64(b[offProtocolID:], t.ProtocolID)
	bo.PutUint64(b[offCreate:], t.CreateTimestamp)
	bo.PutUint64(b[offExpire:], t.ExpireTimestamp)
	copy(b[offNonce:], t.Nonce[:])
	copy(b[offPrivate:], t.PrivateData[:])
	bo.PutUint32(b[offTimeout:], uint32(t.TimeoutSeconds))
	n := offAddrCount + putAddressList(b[offAddrCount:], t.ServerAddrs, t.Format)
	n += copy(b[n:], t.ClientToServerKey[:])
	copy(b[n:], t.ServerToClientKey[:])
}

// DecodeConnectToken decodes the public part of a connect token in format f, as a client
// does. It does not open the private part (see Open) nor check expiry (see Check). Errors wrap
// ErrTokenSize, ErrVersion, ErrAddress or ErrFormat. Bytes after the server-to-client key are
// ignored, as Lightyear ignores them.
func DecodeConnectToken(b []byte, f Format) (*ConnectToken, error) {
	if err := checkFormat(f); err != nil {
		return nil, err
	}
	if len(b) != ConnectTokenBytes {
		return nil, fmt.Errorf("%w, got %d", ErrTokenSize, len(b))
	}
	if string(b[offVersion:offVersion+len(VersionInfo)]) != VersionInfo {
		return nil, ErrVersion
	}
	bo := f.byteOrder()
	t := &ConnectToken{
		Format:          f,
		ProtocolID:      bo.Uint64(b[offProtocolID:]),
		CreateTimestamp: bo.Uint64(b[offCreate:]),
		ExpireTimestamp: bo.Uint64(b[offExpire:]),
		TimeoutSeconds:  int32(bo.Uint32(b[offTimeout:])),
	}
	copy(t.Nonce[:], b[offNonce:])
	copy(t.PrivateData[:], b[offPrivate:])
	addrs, n, err := readAddressList(b[offAddrCount:], f)
	if err != nil {
		return nil, err
	}
	t.ServerAddrs = addrs
	n += offAddrCount
	if n+2*KeyBytes > len(b) {
		return nil, fmt.Errorf("%w: addresses overrun the token", ErrAddress)
	}
	n += copy(t.ClientToServerKey[:], b[n:])
	copy(t.ServerToClientKey[:], b[n:])
	return t, nil
}

// DecodeConnectTokenBase64 decodes a base64 connect token (standard alphabet with padding, as
// bevygap sends it; unpadded and URL-alphabet forms and surrounding white space are accepted
// too) with DecodeConnectToken.
func DecodeConnectTokenBase64(s string, f Format) (*ConnectToken, error) {
	s = strings.TrimSpace(s)
	var firstErr error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if enc.DecodedLen(len(s)) > ConnectTokenBytes+2 {
			// Too long to be a token; decode only to report the size precisely.
			return nil, fmt.Errorf("%w, got about %d bytes of base64 (%d characters)", ErrTokenSize, base64.StdEncoding.DecodedLen(len(s)), len(s))
		}
		b, err := enc.DecodeString(s)
		if err == nil {
			return DecodeConnectToken(b, f)
		}
		if firstErr == nil {
			firstErr = err
		}
	}
	return nil, fmt.Errorf("netcode: connect token is not base64: %w", firstErr)
}

// Check verifies what a server checks in the public fields before opening the private part:
// the protocol id (ErrProtocolID) and expiry at now (ErrExpired, see CheckExpiry).
func (t *ConnectToken) Check(protocolID uint64, now time.Time) error {
	if t.ProtocolID != protocolID {
		return fmt.Errorf("%w: token has %d, want %d", ErrProtocolID, t.ProtocolID, protocolID)
	}
	return CheckExpiry(t.ExpireTimestamp, now)
}

// CheckExpiry returns an error wrapping ErrExpired when a token with expireTimestamp (Unix
// seconds) is no longer valid at now: a token is expired once now, in whole seconds, has
// reached expireTimestamp (the netcode.io rule "expire timestamp <= current timestamp").
// math.MaxUint64 never expires.
func CheckExpiry(expireTimestamp uint64, now time.Time) error {
	if expireTimestamp == math.MaxUint64 {
		return nil
	}
	if n := unixSeconds(now); n >= expireTimestamp {
		return fmt.Errorf("%w at %d (now %d)", ErrExpired, expireTimestamp, n)
	}
	return nil
}

// Open decrypts and decodes the private part of t with the servers' private key, as a game
// server does. Errors wrap ErrAuth (wrong key or tampered bytes) or ErrAddress. It does not
// check expiry or the protocol id (see Check).
func (t *ConnectToken) Open(key Key) (*PrivateToken, error) {
	return OpenPrivateToken(&t.PrivateData, &t.Nonce, t.ProtocolID, t.ExpireTimestamp, key, t.Format)
}

// PrivateToken is the decrypted private part of a connect token: what a game server sees.
type PrivateToken struct {
	// ClientID identifies the player.
	ClientID uint64
	// TimeoutSeconds is the connection timeout; negative means never time out.
	TimeoutSeconds int32
	// ServerAddrs are the server addresses in the private part (the internal addresses when
	// the token was minted with some, otherwise the public ones).
	ServerAddrs []netip.AddrPort
	// ClientToServerKey encrypts packets from the client to the server.
	ClientToServerKey Key
	// ServerToClientKey encrypts packets from the server to the client.
	ServerToClientKey Key
	// UserData is the opaque data given at minting.
	UserData [UserDataBytes]byte
}

// OpenPrivateToken opens a sealed private part given the fields a server receives in a
// connection request packet; the associated data is version info ‖ protocol id ‖ expire
// timestamp in f's byte order, so a changed protocol id or expire timestamp fails like a
// tampered private part. Errors wrap ErrAuth, ErrAddress or ErrFormat.
func OpenPrivateToken(sealed *[PrivateTokenBytes]byte, nonce *[NonceBytes]byte, protocolID, expireTimestamp uint64, key Key, f Format) (*PrivateToken, error) {
	if err := checkFormat(f); err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.NewX(key[:])
	if err != nil {
		return nil, fmt.Errorf("netcode: %w", err)
	}
	var ad [associatedDataBytes]byte
	putAssociatedData(&ad, protocolID, expireTimestamp, f)
	plain, err := aead.Open(make([]byte, 0, privatePlainBytes), nonce[:], sealed[:], ad[:])
	if err != nil {
		return nil, ErrAuth
	}
	return decodePrivate(plain, f)
}

// decodePrivate decodes the 1008-byte private plaintext.
func decodePrivate(b []byte, f Format) (*PrivateToken, error) {
	bo := f.byteOrder()
	p := &PrivateToken{
		ClientID:       bo.Uint64(b[privOffClientID:]),
		TimeoutSeconds: int32(bo.Uint32(b[privOffTimeout:])),
	}
	addrs, n, err := readAddressList(b[privOffAddrCount:], f)
	if err != nil {
		return nil, fmt.Errorf("%w (in the private part)", err)
	}
	p.ServerAddrs = addrs
	n += privOffAddrCount
	if n+2*KeyBytes+UserDataBytes > len(b) {
		return nil, fmt.Errorf("%w: addresses overrun the private part", ErrAddress)
	}
	n += copy(p.ClientToServerKey[:], b[n:])
	n += copy(p.ServerToClientKey[:], b[n:])
	copy(p.UserData[:], b[n:])
	clear(b)
	return p, nil
}
