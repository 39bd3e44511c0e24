package edgegap

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
)

// EndpointSessionUsersDelete removes users from a session: DELETE /v1/session/{id}/users.
const EndpointSessionUsersDelete Endpoint = "session_users_delete"

// SessionUsersPatch is the body of the session users calls (Edgegap's PatchSessionModel).
type SessionUsersPatch struct {
	IPList []string `json:"ip_list"`
}

// SessionUsers is the answer of the session users calls (Edgegap's SessionUserContext): the
// session's users after the change.
type SessionUsers struct {
	SessionUsers []SessionUser `json:"session_users"`
}

// RemoveSessionUsers removes the users with the given IPs from a session (DELETE
// /v1/session/{id}/users, body {"ip_list": [...]}), and returns the session's remaining users.
// In a Seat app version each user of a session holds a socket, so this frees one socket per
// removed user on the session's deployment: bevygap's seat-kind groups create a first session
// with every player's IP (so Edgegap places the deployment for all of them), then remove the
// other players from it before giving each of them a Seat session of their own on that
// deployment. Like DeleteSession, it is retried on network errors, 429 and 5xx (removing the
// same users again changes nothing). A session that is gone matches ErrNotFound.
func (c *Client) RemoveSessionUsers(ctx context.Context, sessionID string, ips []string) (*SessionUsers, error) {
	if len(ips) == 0 {
		return nil, errors.New("edgegap: session users delete: no IPs")
	}
	body, err := json.Marshal(SessionUsersPatch{IPList: ips})
	if err != nil {
		return nil, fmt.Errorf("edgegap: session users delete: encode: %w", err)
	}
	var out SessionUsers
	err = c.do(ctx, request{endpoint: EndpointSessionUsersDelete, method: http.MethodDelete,
		url: c.baseURL + "/v1/session/" + url.PathEscape(sessionID) + "/users", auth: c.apiKey, body: body}, &out)
	if err != nil {
		return nil, err
	}
	return &out, nil
}
