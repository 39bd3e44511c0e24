package edgegapsim

// listedSessionsLocked returns the live sessions in list order (oldest first), like
// sortedSessions, but reuses the order of the previous call while the set of sessions is the
// same: a client walking every page of GET /v1/sessions then pays one map lookup per session
// and page instead of a sort. Caller holds s.mu.
func (s *Simulator) listedSessionsLocked() []*session {
	fresh := len(s.listed) == len(s.sessions)
	for _, sess := range s.listed {
		if !fresh {
			break
		}
		fresh = s.sessions[sess.id] == sess
	}
	if !fresh {
		s.listed = sortedSessions(s.sessions)
	}
	return s.listed
}
