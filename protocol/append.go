package protocol

import (
	"slices"
	"strconv"
)

// AppendJSON appends the JSON encoding of r to dst and returns the extended buffer: the same
// bytes as Marshal(r), written without reflection and, for a nil or too small dst, with one
// allocation of the right size. The matchmaker answers every session.gensession with it.
func (r GenSessionReply) AppendJSON(dst []byte) []byte {
	const fixed = len(`{"connect_token":"","gameserver_ip":"","gameserver_port":65535,"link":"","cert_digest":""}`)
	dst = slices.Grow(dst, fixed+len(r.ConnectToken)+len(r.GameserverIP)+len(r.Link)+len(r.CertDigest))
	dst = append(dst, `{"connect_token":`...)
	dst = appendString(dst, r.ConnectToken)
	return r.appendTail(dst)
}

// AppendJSONToken is AppendJSON with the connect token's text appended by appendToken (to the
// buffer it is given, returning the extended buffer: netcode's ConnectToken.AppendBase64)
// instead of r.ConnectToken, which is not used — the token goes straight into the reply.
// The text must be base64 (no JSON escape needed); tokenLen, its length, sizes the buffer. On
// an error of appendToken, dst is returned unchanged with the error.
func (r GenSessionReply) AppendJSONToken(dst []byte, tokenLen int, appendToken func([]byte) ([]byte, error)) ([]byte, error) {
	const fixed = len(`{"connect_token":"","gameserver_ip":"","gameserver_port":65535,"link":"","cert_digest":""}`)
	n := len(dst)
	dst = slices.Grow(dst, fixed+tokenLen+len(r.GameserverIP)+len(r.Link)+len(r.CertDigest))
	dst = append(dst, `{"connect_token":"`...)
	dst, err := appendToken(dst)
	if err != nil {
		return dst[:n], err
	}
	dst = append(dst, '"')
	return r.appendTail(dst), nil
}

// appendTail appends the members after connect_token and the closing brace.
func (r GenSessionReply) appendTail(dst []byte) []byte {
	dst = append(dst, `,"gameserver_ip":`...)
	dst = appendString(dst, r.GameserverIP)
	dst = append(dst, `,"gameserver_port":`...)
	dst = strconv.AppendUint(dst, uint64(r.GameserverPort), 10)
	dst = append(dst, `,"link":`...)
	dst = appendString(dst, r.Link)
	dst = append(dst, `,"cert_digest":`...)
	dst = appendString(dst, r.CertDigest)
	return append(dst, '}')
}

// appendString appends s as a JSON string the way Marshal encodes it. Printable ASCII other
// than '"' and '\' (all of a connect token, an IP, a digest) is copied as it is; a string with
// anything else is encoded by Marshal itself.
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' {
			b, err := Marshal(s)
			if err != nil { // cannot happen: every Go string encodes
				panic("protocol: encoding a string: " + err.Error())
			}
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
