package client

import "errors"

// maxMessageBytes bounds one feedback message (a SessionReady with its 2732-character token is
// about 2.9 KB; the bound leaves room for long error texts).
const maxMessageBytes = 64 << 10

// errTruncated: the chunked body ended in the middle of a JSON document.
var errTruncated = errors.New("body ended inside a JSON document")

// feedbackSplitter cuts the chunked-HTTP body into messages; its split method is a
// bufio.SplitFunc. It remembers how far it has scanned an incomplete message, so a body that
// trickles in byte by byte costs linear time.
//
// The reference httpd writes each feedback document as one chunk with no separator, so bodies
// look like `"Acknowledged"{"ProgressReport":"…"}`; ours writes one document per line. Both
// are handled: white space between messages is skipped, a message starting with '"', '{' or
// '[' ends where that JSON value ends (string- and escape-aware bracket matching), and
// anything else ("ERR …" or garbage) runs to the end of the line. The caller decides what a
// token means; the JSON decoder validates documents.
type feedbackSplitter struct {
	scanned  int  // bytes of the current (incomplete) message already scanned
	depth    int  // open brackets at scanned
	inString bool // scanned ends inside a JSON string
	escaped  bool // scanned ends right after a backslash inside a string
}

func (s *feedbackSplitter) split(data []byte, atEOF bool) (advance int, token []byte, err error) {
	i := 0
	if s.scanned == 0 {
		for i < len(data) && isJSONSpace(data[i]) {
			i++
		}
		if i == len(data) {
			return i, nil, nil // only white space so far (or at EOF: done)
		}
	}
	rest := data[i:]
	switch rest[0] {
	case '"', '{', '[':
		if n, complete := s.jsonValueEnd(rest); complete {
			*s = feedbackSplitter{}
			return i + n, rest[:n], nil
		}
	default:
		for j := s.scanned; j < len(rest); j++ {
			if rest[j] == '\n' {
				line := rest[:j]
				if len(line) > 0 && line[len(line)-1] == '\r' {
					line = line[:len(line)-1]
				}
				*s = feedbackSplitter{}
				return i + j + 1, line, nil
			}
		}
		s.scanned = len(rest)
		if atEOF {
			*s = feedbackSplitter{}
			return len(data), rest, nil
		}
	}
	if atEOF {
		return 0, nil, errTruncated
	}
	return i, nil, nil // need more data
}

// jsonValueEnd continues scanning the JSON string, object or array at the start of b from
// s.scanned and returns its length if it is complete in b. It only matches brackets and
// strings; the JSON decoder validates the rest.
func (s *feedbackSplitter) jsonValueEnd(b []byte) (n int, complete bool) {
	for j := s.scanned; j < len(b); j++ {
		c := b[j]
		if s.inString {
			switch {
			case s.escaped:
				s.escaped = false
			case c == '\\':
				s.escaped = true
			case c == '"':
				s.inString = false
				if s.depth == 0 {
					return j + 1, true
				}
			}
			continue
		}
		switch c {
		case '"':
			s.inString = true
		case '{', '[':
			s.depth++
		case '}', ']':
			s.depth--
			if s.depth <= 0 {
				return j + 1, true
			}
		}
	}
	s.scanned = len(b)
	return len(b), false
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
