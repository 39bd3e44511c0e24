package edgegap

import (
	"crypto/sha256"
	"encoding/hex"
)

// AccountFingerprint identifies the Edgegap account this client works on without revealing its
// API key: the first 16 bytes, hex, of SHA-256 over the base URL and the SHA-256 of the API key.
// Two clients with the same base URL and key have the same fingerprint; a client of another
// endpoint (e.g. a simulator) or another key has a different one. The matchmaker records it on
// the shared delete queue so that matchmakers of different accounts never share it (see
// docs/matchmaker.md). It is safe to log.
func (c *Client) AccountFingerprint() string {
	key := sha256.Sum256([]byte(c.apiKey))
	h := sha256.New()
	h.Write([]byte("bevygap-edgegap-account-v1\n" + c.baseURL + "\n"))
	h.Write(key[:])
	return hex.EncodeToString(h.Sum(nil)[:16])
}
