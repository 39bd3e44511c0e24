package netcode

import (
	"crypto/cipher"
	"fmt"

	"golang.org/x/crypto/chacha20poly1305"
)

// challengeSealer seals and opens challenge tokens with a random key that only this server
// knows, so that a connection response proves the client received our challenge at the
// address it claims. Not safe for concurrent use (the server's lock guards it).
type challengeSealer struct {
	aead   cipher.AEAD
	format Format
	nonce  [packetNonceBytes]byte
	plain  [challengeTokenPlainBytes]byte
}

// newChallengeSealer returns a sealer with a fresh random key.
func newChallengeSealer(f Format) (*challengeSealer, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	aead, err := chacha20poly1305.New(key[:])
	clear(key[:])
	if err != nil {
		return nil, fmt.Errorf("netcode: challenge cipher: %w", err)
	}
	return &challengeSealer{aead: aead, format: f}, nil
}

func (s *challengeSealer) setNonce(seq uint64) {
	s.nonce[0], s.nonce[1], s.nonce[2], s.nonce[3] = 0, 0, 0, 0
	s.format.byteOrder().PutUint64(s.nonce[4:], seq)
}

// seal writes the encrypted challenge token for clientID and userData, with challenge
// sequence seq as the nonce, into out: client id (u64) ‖ user data (256) ‖ zeros, 284 bytes
// sealed to 300.
func (s *challengeSealer) seal(out *[challengeTokenBytes]byte, seq, clientID uint64, userData *[UserDataBytes]byte) {
	clear(s.plain[:])
	s.format.byteOrder().PutUint64(s.plain[:8], clientID)
	copy(s.plain[8:], userData[:])
	s.setNonce(seq)
	s.aead.Seal(out[:0], s.nonce[:], s.plain[:], nil)
}

// open authenticates the encrypted challenge token tok (not modified) sealed with sequence
// seq and returns its client id and user data.
func (s *challengeSealer) open(tok *[challengeTokenBytes]byte, seq uint64, userData *[UserDataBytes]byte) (uint64, error) {
	s.setNonce(seq)
	plain, err := s.aead.Open(s.plain[:0], s.nonce[:], tok[:], nil)
	if err != nil {
		return 0, errPacketAuth
	}
	copy(userData[:], plain[8:])
	return s.format.byteOrder().Uint64(plain[:8]), nil
}
