package edgegapsim_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

// TestLinkToDeployment: a session create with deployment_request_id joins that deployment (as
// bevygap's seat-kind groups do: one Seat session per player on the lead's deployment) and is
// refused when the deployment does not exist for that app version (400) or has no free socket
// (409).
func TestLinkToDeployment(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *edgegapsim.Config) {
		c.Apps[0].Versions[0].Sockets = 4
		c.Apps = append(c.Apps, edgegapsim.AppConfig{Name: "other", Versions: []edgegapsim.VersionConfig{{Name: "o1"}}})
	})
	ctx := context.Background()
	lead := f.create(t, edgegap.SessionCreateRequest{IPList: []string{"1.1.1.1"}})
	dep := f.get(t, lead).Deployment.RequestID

	// Linked while the deployment still boots: linked, not ready; ready with it.
	seat := f.create(t, edgegap.SessionCreateRequest{IPList: []string{"2.2.2.2"}, DeploymentRequestID: dep})
	if g := f.get(t, seat); g.Deployment.RequestID != dep || g.Ready || !g.Linked || *g.Deployment.SocketsUsage != 2 {
		t.Fatalf("linked session while booting: %+v %+v", g, g.Deployment)
	}
	// The matchmaker's own create with deployment_request_id echoes it.
	created, err := f.client.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "game", IPList: []string{"3.3.3.3", "4.4.4.4"}, DeploymentRequestID: dep})
	if err != nil || created.DeploymentRequestID == nil || *created.DeploymentRequestID != dep {
		t.Fatalf("create linked: %+v %v", created, err)
	}
	f.clock.Advance(3 * time.Second)
	if g := f.get(t, seat); !g.Ready || *g.Deployment.SocketsUsage != 4 {
		t.Fatalf("linked session after boot: ready %v, usage %d", g.Ready, *g.Deployment.SocketsUsage)
	}
	if st := f.sim.State(); st.LiveDeployments != 1 {
		t.Fatalf("%d deployments, want 1", st.LiveDeployments)
	}

	cases := []struct {
		name   string
		req    edgegap.SessionCreateRequest
		status int
		is     error
	}{
		{"full", edgegap.SessionCreateRequest{AppName: "game", IPList: []string{"5.5.5.5"}, DeploymentRequestID: dep}, http.StatusConflict, edgegap.ErrConflict},
		{"unknown", edgegap.SessionCreateRequest{AppName: "game", DeploymentRequestID: "000000000000"}, http.StatusBadRequest, edgegap.ErrBadRequest},
		{"other app", edgegap.SessionCreateRequest{AppName: "other", DeploymentRequestID: dep}, http.StatusBadRequest, edgegap.ErrBadRequest},
	}
	for _, c := range cases {
		_, err := f.client.CreateSession(ctx, c.req)
		if edgegap.StatusCode(err) != c.status || !errors.Is(err, c.is) {
			t.Errorf("%s: %v, want %d", c.name, err, c.status)
		}
	}

	// A freed socket can be taken again; a terminated deployment cannot be joined.
	if _, err := f.client.DeleteSession(ctx, seat); err != nil {
		t.Fatal(err)
	}
	f.create(t, edgegap.SessionCreateRequest{IPList: []string{"5.5.5.5"}, DeploymentRequestID: dep})
	if err := f.sim.TerminateDeployment(dep); err != nil {
		t.Fatal(err)
	}
	_, err = f.client.CreateSession(ctx, edgegap.SessionCreateRequest{AppName: "game", DeploymentRequestID: dep})
	if edgegap.StatusCode(err) != http.StatusBadRequest {
		t.Errorf("terminated deployment: %v, want 400", err)
	}
}

// TestLinkToFailedDeployment: a deployment in error takes no new session (409).
func TestLinkToFailedDeployment(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	lead := f.create(t, edgegap.SessionCreateRequest{IPList: []string{"1.1.1.1"}})
	dep := f.get(t, lead).Deployment.RequestID
	if err := f.sim.FailDeployment(dep, "boom"); err != nil {
		t.Fatal(err)
	}
	_, err := f.client.CreateSession(context.Background(), edgegap.SessionCreateRequest{AppName: "game", DeploymentRequestID: dep})
	if edgegap.StatusCode(err) != http.StatusConflict {
		t.Errorf("deployment in error: %v, want 409", err)
	}
}

// TestMatchSessionCarriesAllUsers: a Match session is one session for every player of the
// match, on a fresh deployment even when an older one has free sockets.
func TestMatchSessionCarriesAllUsers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *edgegapsim.Config) {
		c.Apps[0].Versions[0].Kind = "match"
		c.Apps[0].Versions[0].Sockets = 6
	})
	ips := []string{"1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"}
	first := f.get(t, f.create(t, edgegap.SessionCreateRequest{IPList: ips[:2]}))
	f.clock.Advance(3 * time.Second)
	second := f.get(t, f.create(t, edgegap.SessionCreateRequest{IPList: ips}))
	if second.Kind != edgegap.SessionKindMatch || second.UserCount != 4 || len(second.SessionUsers) != 4 {
		t.Errorf("match session: kind %s, %d users", second.Kind, second.UserCount)
	}
	if second.Deployment.RequestID == first.Deployment.RequestID || *second.Deployment.SocketsUsage != 1 || second.Ready {
		t.Errorf("match session joined deployment %s (usage %d, ready %v), want a fresh one",
			second.Deployment.RequestID, *second.Deployment.SocketsUsage, second.Ready)
	}
	if st := f.sim.State(); st.LiveDeployments != 2 {
		t.Errorf("%d deployments, want 2", st.LiveDeployments)
	}
}

// TestRemoveSessionUsers: DELETE /v1/session/{id}/users frees the removed users' seats, so a
// seat group of N players peaks at N sockets: a lead session with every IP, the others removed
// from it once it is placed, then one linked Seat session each.
func TestRemoveSessionUsers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *edgegapsim.Config) {
		c.Apps[0].Versions[0].Sockets = 6
		c.Apps = append(c.Apps, edgegapsim.AppConfig{Name: "match", Versions: []edgegapsim.VersionConfig{{Name: "m1", Kind: "Match"}}})
	})
	ctx := context.Background()
	ips := []string{"1.1.1.1", "2.2.2.2", "3.3.3.3", "4.4.4.4"}
	lead := f.create(t, edgegap.SessionCreateRequest{IPList: ips})
	dep := f.get(t, lead).Deployment.RequestID
	usage := func() int { return *f.get(t, lead).Deployment.SocketsUsage }
	if u := usage(); u != 4 {
		t.Fatalf("lead session with 4 users holds %d sockets, want 4", u)
	}

	left, err := f.client.RemoveSessionUsers(ctx, lead, ips[1:])
	if err != nil || len(left.SessionUsers) != 1 || left.SessionUsers[0].IP != ips[0] {
		t.Fatalf("RemoveSessionUsers = %+v, %v", left, err)
	}
	if g := f.get(t, lead); g.UserCount != 1 || *g.Deployment.SocketsUsage != 1 {
		t.Fatalf("after the removal: %d users, %d sockets; want 1 and 1", g.UserCount, *g.Deployment.SocketsUsage)
	}
	for _, ip := range ips[1:] {
		f.create(t, edgegap.SessionCreateRequest{IPList: []string{ip}, DeploymentRequestID: dep})
	}
	if u := usage(); u != 4 {
		t.Fatalf("4 players hold %d sockets, want 4", u)
	}
	// The wire form: Edgegap's SessionUserContext, nothing else.
	status, body := f.raw(t, http.MethodDelete, "/v1/session/"+lead+"/users", testKey, `{"ip_list":["2.2.2.2"]}`)
	var users edgegap.SessionUsers
	strictDecode(t, "session_users_delete", body, &users)
	if status != http.StatusOK || len(users.SessionUsers) != 1 || !strings.Contains(string(body), `"session_users":[{"ip":"1.1.1.1"}]`) {
		t.Errorf("raw answer %d %s", status, body)
	}
	// Again, and an IP the session does not have: nothing changes.
	if left, err := f.client.RemoveSessionUsers(ctx, lead, []string{"2.2.2.2", "9.9.9.9"}); err != nil || len(left.SessionUsers) != 1 {
		t.Fatalf("repeated removal: %+v, %v", left, err)
	}
	// The last user of a Seat session still holds its socket; a Match session holds one.
	if _, err := f.client.RemoveSessionUsers(ctx, lead, ips[:1]); err != nil || usage() != 4 {
		t.Fatalf("removing the last user: %v, usage %d, want 4", err, usage())
	}
	m := f.create(t, edgegap.SessionCreateRequest{AppName: "match", IPList: ips})
	if _, err := f.client.RemoveSessionUsers(ctx, m, ips[2:]); err != nil {
		t.Fatal(err)
	}
	if g := f.get(t, m); g.UserCount != 2 || *g.Deployment.SocketsUsage != 1 {
		t.Errorf("match session: %d users, %d sockets; want 2 and 1", g.UserCount, *g.Deployment.SocketsUsage)
	}

	for _, c := range []struct {
		name, id string
		ips      []string
		status   int
	}{
		{"unknown session", "000000000000-S", ips[:1], http.StatusNotFound},
		{"no ips", lead, nil, 0}, // refused by the client before the call
		{"bad ip", lead, []string{"not-an-ip"}, http.StatusBadRequest},
	} {
		_, err := f.client.RemoveSessionUsers(ctx, c.id, c.ips)
		if err == nil || edgegap.StatusCode(err) != c.status {
			t.Errorf("%s: %v, want status %d", c.name, err, c.status)
		}
	}
	if err := f.sim.TerminateDeployment(dep); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.RemoveSessionUsers(ctx, lead, ips[:1]); !errors.Is(err, edgegap.ErrGone) {
		t.Errorf("terminated: %v, want 410", err)
	}
	if n := f.sim.CallCounts().Endpoint(edgegap.EndpointSessionUsersDelete); n < 5 {
		t.Errorf("%d session_users_delete calls counted", n)
	}
}
