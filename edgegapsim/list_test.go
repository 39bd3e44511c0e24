package edgegapsim_test

import (
	"context"
	"slices"
	"testing"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

// TestSessionListFollowsChanges: the list order reused between pages follows every create,
// delete and terminated deployment.
func TestSessionListFollowsChanges(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(c *edgegapsim.Config) { c.Apps[0].Versions[0].Sockets = 2 })
	ctx := context.Background()
	ids := func() []string {
		t.Helper()
		all, err := f.client.ListAllSessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := make([]string, 0, len(all))
		for _, s := range all {
			out = append(out, s.SessionID)
		}
		return out
	}
	var want []string
	for range 5 {
		want = append(want, f.create(t, edgegap.SessionCreateRequest{IPList: []string{"1.2.3.4"}}))
		f.clock.Advance(1) // distinct create times: list order = creation order
	}
	if got := ids(); !slices.Equal(got, want) {
		t.Fatalf("list %v, want %v", got, want)
	}
	if _, err := f.client.DeleteSession(ctx, want[1]); err != nil {
		t.Fatal(err)
	}
	extra := f.create(t, edgegap.SessionCreateRequest{IPList: []string{"1.2.3.4"}})
	want = append(slices.Delete(want, 1, 2), extra)
	if got := ids(); !slices.Equal(got, want) {
		t.Fatalf("after a delete and a create: %v, want %v", got, want)
	}
	dep := f.get(t, want[0]).Deployment.RequestID
	if err := f.sim.TerminateDeployment(dep); err != nil {
		t.Fatal(err)
	}
	want = slices.DeleteFunc(want, func(id string) bool {
		_, err := f.client.GetSession(ctx, id)
		return err != nil
	})
	if got := ids(); !slices.Equal(got, want) || len(want) == 0 {
		t.Fatalf("after a terminated deployment: %v, want %v", got, want)
	}
}
