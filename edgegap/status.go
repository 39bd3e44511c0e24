package edgegap

import "strings"

// StatusIs reports whether an Edgegap status string means want, comparing leniently:
// case-insensitively, ignoring a "Status." prefix and surrounding space. So "Status.READY"
// (GET /v1/session), "Ready" (webhook) and "READY" are all the same status.
func StatusIs(status, want string) bool {
	return normalizeStatus(status) == normalizeStatus(want)
}

// normalizeStatus lower-cases status and strips a "Status." prefix.
func normalizeStatus(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 7 && strings.EqualFold(s[:7], "status.") {
		s = s[7:]
	}
	return strings.ToLower(s)
}
