package edgegapsim

import (
	"fmt"
	"net/http"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/internal/logkey"
)

// handleSessionUsersDelete implements DELETE /v1/session/{id}/users (body {"ip_list": [...]}):
// the listed users leave the session, which then holds the sockets of the users it has left
// (Seat: one per user, at least one; Match: one). IPs the session does not have are ignored
// (the simulator's choice: Edgegap's answer is unconfirmed; ignoring keeps a retry harmless).
func (s *Simulator) handleSessionUsersDelete(r *http.Request) (int, any, error) {
	var req edgegap.SessionUsersPatch
	if err := decodeBody(r, &req); err != nil {
		return 0, nil, err
	}
	if len(req.IPList) == 0 {
		return 0, nil, apiErr(http.StatusBadRequest, "ip_list is required")
	}
	drop := make(map[string]bool, len(req.IPList))
	for _, ip := range req.IPList {
		if _, err := netipParse(ip); err != nil {
			return 0, nil, apiErr(http.StatusBadRequest, fmt.Sprintf("invalid IP in ip_list: %q", ip))
		}
		drop[ip] = true
	}
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, err := s.sessionLocked(id)
	if err != nil {
		return 0, nil, err
	}
	kept := sess.users[:0:0]
	for _, ip := range sess.users {
		if !drop[ip] {
			kept = append(kept, ip)
		}
	}
	removed := len(sess.users) - len(kept)
	sess.users = kept
	need := socketsFor(sess.version.cfg.Kind, len(kept))
	sess.dep.usage += need - sess.sockets
	sess.sockets = need
	s.log.Info("session users removed", logkey.SessionID, id, logkey.Deployment, sess.dep.id,
		"removed", removed, "users", len(kept))
	out := edgegap.SessionUsers{SessionUsers: make([]edgegap.SessionUser, 0, len(kept))}
	for _, ip := range kept {
		out.SessionUsers = append(out.SessionUsers, edgegap.SessionUser{IP: ip})
	}
	return http.StatusOK, out, nil
}

// socketsFor is how many sockets a session of kind with users users holds: one per user in a
// Seat version (at least one), one in a Match version.
func socketsFor(kind string, users int) int {
	if kind == edgegap.SessionKindSeat && users > 1 {
		return users
	}
	return 1
}
