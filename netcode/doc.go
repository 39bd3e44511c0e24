// Package netcode builds, encodes, decodes and opens netcode connect tokens byte-compatible
// with Lightyear's ConnectToken (netcode.io 1.02 layout), the token a bevygap matchmaker hands
// to a player and a Lightyear game server accepts. The protocol that consumes it lives in
// this package too (Server, Dial; see server.go and packet.go), over UDP or WebTransport
// (Transport; webtransport.go, cert.go for the certificates and their digests).
//
// # Minting and opening
//
// A matchmaker mints:
//
//	m := &netcode.Minter{Key: key, Format: netcode.FormatLightyear017}
//	tok, err := m.Mint(netcode.TokenParams{ProtocolID: 1982, ClientID: id,
//		ServerAddrs: []netip.AddrPort{addr}})
//	s := tok.Base64() // 2732 characters, sent to the player
//
// A client decodes the public part with DecodeConnectTokenBase64; a game server opens the
// private part with ConnectToken.Open or, from a connection request packet,
// OpenPrivateToken. Keys come from operators through ParseKey and pass ValidateKey, which
// refuses the all-zero key outside dev mode. A Key never prints its bytes.
//
// # Byte orders
//
// Two byte orders exist and nothing in a token says which one it uses; both sides must agree:
//
//	Format              name              integers       who
//	FormatLightyear017  "lightyear-0.17"  little-endian  bevygap, Lightyear <= 0.19, netcode.io 1.02
//	FormatLightyear020  "lightyear-0.20"  big-endian     lightyear_netcode >= 0.20
//
// "Integers" means every integer below: u64 ids and timestamps, i32 timeout, u32 counts, u16
// ports, and the integers inside the associated data. Sizes, offsets, IP octets, keys,
// nonce and the AEAD are identical in both.
//
// # Public token: 2048 bytes
//
//	offset  size  field
//	     0    13  version info "NETCODE 1.02\x00" (4e4554434f444520312e303200)
//	    13     8  protocol id (u64)
//	    21     8  create timestamp (u64, Unix seconds)
//	    29     8  expire timestamp (u64) = create + expire seconds (default 30);
//	              0xffffffffffffffff when the token never expires (negative expire seconds)
//	    37    24  nonce (random per token)
//	    61  1024  sealed private part (1008 bytes of ciphertext + 16-byte tag)
//	  1085     4  timeout seconds (i32; default 15; negative = never time out)
//	  1089     4  number of server addresses N (u32, 1..32)
//	  1093   var  N addresses, 7 or 19 bytes each (see below)
//	     …    32  client-to-server key (random per token)
//	     …    32  server-to-client key (random per token)
//	     …     …  zeros up to 2048
//
// With the single IPv4 address of a bevygap token, the address is at 1093..1100, the
// client-to-server key at 1100..1132, the server-to-client key at 1132..1164, and bytes
// 1164..2048 are zero. On the wire (JSON, NATS, WebSocket) the token travels as standard
// base64 with "=" padding: 2732 characters.
//
// # Address encoding
//
//	type byte  1 = IPv4, 2 = IPv6
//	IP         4 or 16 octets in network order (as written: 2001:db8::42 is 20 01 0d b8 … 00 42)
//	port       u16 in the format's byte order
//
// Lightyear writes IPv6 octets in network order; the netcode.io C reference byte-swaps each
// 16-bit group. This package follows Lightyear. IPv6 zones cannot be encoded; IPv4-mapped
// IPv6 addresses are written as IPv6 (type 2).
//
// # Private part: 1008 bytes of plaintext
//
//	offset  size  field
//	     0     8  client id (u64)
//	     8     4  timeout seconds (i32, same as the public field)
//	    12     4  number of server addresses M (u32, 1..32)
//	    16   var  M addresses, same encoding: the internal addresses when given, else the
//	              public list
//	     …    32  client-to-server key (same bytes as in the public part)
//	     …    32  server-to-client key (same bytes as in the public part)
//	     …   256  user data (opaque to netcode; zeros by default)
//	     …     …  zeros up to 1008
//
// # Sealing
//
// The private part is sealed with XChaCha20-Poly1305 (IETF construction, as in
// golang.org/x/crypto/chacha20poly1305.NewX and libsodium's
// crypto_aead_xchacha20poly1305_ietf):
//
//	key             the 32-byte private key shared by the matchmaker and the game servers
//	nonce           the 24 bytes at offset 37
//	plaintext       the 1008-byte private part
//	associated data 29 bytes: version info (13) ‖ protocol id (u64) ‖ expire timestamp (u64),
//	                integers in the format's byte order
//	output          1008 bytes of ciphertext ‖ 16-byte tag = the 1024 bytes at offset 61
//
// Because the protocol id and expire timestamp are authenticated, a token whose public
// protocol id or expiry was altered fails to open (ErrAuth) exactly like a tampered or
// wrongly keyed one. The create timestamp, timeout, public addresses and public keys are not
// authenticated: a server uses the private copies.
//
// # Connection request
//
// A client sends the server 1078 bytes: 0x00 ‖ version info ‖ protocol id (u64) ‖ expire
// timestamp (u64) ‖ nonce (24) ‖ sealed private part (1024). The server checks the version
// and protocol id (ErrProtocolID), rejects a token whose expire timestamp has been reached
// (CheckExpiry, ErrExpired) and opens the private part with OpenPrivateToken.
//
// # Compatibility evidence
//
// testdata/netcode-vectors.json holds known-answer vectors computed by two independent
// implementations (libsodium and Go x/crypto) from the Lightyear source. The tests mint each
// vector from its inputs with an injected clock and random source and compare every byte,
// and decode and open each vector back to its inputs.
package netcode
