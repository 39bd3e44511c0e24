// Package names is the one validator for the names this module accepts from outside: game and
// version names, bucket prefixes, inbox prefixes, webhook names, host name labels. They are all
// "ASCII letters and digits plus a few punctuation bytes, bounded in length", because they end
// up in NATS subjects, KV keys and URLs.
package names

// Valid reports whether s is 1 to maxLen bytes (maxLen <= 0: no limit), each an ASCII letter,
// an ASCII digit or one of the bytes in extra.
func Valid(s string, maxLen int, extra string) bool {
	if s == "" || (maxLen > 0 && len(s) > maxLen) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !Allowed(s[i], extra) {
			return false
		}
	}
	return true
}

// Allowed reports whether c is an ASCII letter, an ASCII digit or one of the bytes in extra.
func Allowed(c byte, extra string) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	for i := 0; i < len(extra); i++ {
		if extra[i] == c {
			return true
		}
	}
	return false
}
