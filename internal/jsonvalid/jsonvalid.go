// Package jsonvalid checks JSON syntax exactly as encoding/json.Valid does, in one pass: the
// front door checks every feedback message it relays (a SessionReady carries a 2.7 KB token)
// and the webhook sink every webhook body.
package jsonvalid

// maxJSONDepth is encoding/json's nesting limit: 10,000 nested arrays and objects are valid,
// one more is not.
const maxJSONDepth = 10000

// Valid reports whether data is one JSON value with optional white space around it,
// exactly as encoding/json.Valid does (which accepts any byte ≥ 0x20 in a string, valid UTF-8
// or not), in one pass without the scanner's call per byte; long strings (a connect token) are
// scanned by a tight loop.
func Valid(data []byte) bool {
	c := jsonChecker{b: data}
	if !c.value(0) {
		return false
	}
	c.space()
	return c.i == len(c.b)
}

// jsonChecker is a recursive-descent JSON syntax checker over b, at position i.
type jsonChecker struct {
	b []byte
	i int
}

func (c *jsonChecker) space() {
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}

// next skips white space and returns the next byte without consuming it (0 at the end).
func (c *jsonChecker) next() byte {
	c.space()
	if c.i >= len(c.b) {
		return 0
	}
	return c.b[c.i]
}

// value checks one value; depth is the number of arrays and objects around it.
func (c *jsonChecker) value(depth int) bool {
	switch ch := c.next(); {
	case ch == '{':
		return depth < maxJSONDepth && c.object(depth+1)
	case ch == '[':
		return depth < maxJSONDepth && c.array(depth+1)
	case ch == '"':
		return c.str()
	case ch == '-' || (ch >= '0' && ch <= '9'):
		return c.number()
	case ch == 't':
		return c.literal("true")
	case ch == 'f':
		return c.literal("false")
	case ch == 'n':
		return c.literal("null")
	}
	return false
}

// object checks an object whose '{' is at c.i.
func (c *jsonChecker) object(depth int) bool {
	c.i++
	if c.next() == '}' {
		c.i++
		return true
	}
	for {
		if c.next() != '"' || !c.str() || c.next() != ':' {
			return false
		}
		c.i++
		if !c.value(depth) {
			return false
		}
		switch c.next() {
		case ',':
			c.i++
		case '}':
			c.i++
			return true
		default:
			return false
		}
	}
}

// array checks an array whose '[' is at c.i.
func (c *jsonChecker) array(depth int) bool {
	c.i++
	if c.next() == ']' {
		c.i++
		return true
	}
	for {
		if !c.value(depth) {
			return false
		}
		switch c.next() {
		case ',':
			c.i++
		case ']':
			c.i++
			return true
		default:
			return false
		}
	}
}

// str checks a string whose '"' is at c.i.
func (c *jsonChecker) str() bool {
	b := c.b
	for i := c.i + 1; i < len(b); i++ {
		switch ch := b[i]; {
		case ch == '"':
			c.i = i + 1
			return true
		case ch < 0x20:
			return false
		case ch == '\\':
			i++
			if i >= len(b) {
				return false
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) {
					return false
				}
				for _, h := range b[i+1 : i+5] {
					if !isHex(h) {
						return false
					}
				}
				i += 4
			default:
				return false
			}
		}
	}
	return false
}

func isHex(h byte) bool {
	return (h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F')
}

// number checks -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? at c.i.
func (c *jsonChecker) number() bool {
	b, i := c.b, c.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	digits := func() bool {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i > start
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case !digits():
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if !digits() {
			return false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if !digits() {
			return false
		}
	}
	c.i = i
	return true
}

func (c *jsonChecker) literal(lit string) bool {
	if len(c.b)-c.i < len(lit) || string(c.b[c.i:c.i+len(lit)]) != lit {
		return false
	}
	c.i += len(lit)
	return true
}
