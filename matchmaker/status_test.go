package matchmaker

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/internal/eventually"
	"github.com/bevygap-go/bevygap/internal/statusfeed"
)

// TestStatusSnapshotsOfTwoMatchmakers: two matchmakers publish status snapshots; the sum a
// front door shows counts the grants and failures of both (whichever served them), the shared
// buckets (one claimed, one ready session) and the Edgegap calls of both clients.
func TestStatusSnapshotsOfTwoMatchmakers(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessOpts{webhook: true, noMatchmaker: true, faults: edgegapsim.Faults{
		Endpoints: map[edgegap.Endpoint]edgegapsim.EndpointFaults{edgegap.EndpointSessionCreate: {FailNext: 1, Status: http.StatusServiceUnavailable}},
	}})
	agg, err := statusfeed.NewAggregator(h.nc)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = agg.Close() }()
	cfg := h.cfg
	cfg.StatusInterval = 50 * time.Millisecond
	cfg.CertDigestWait = 0
	h.start(t, cfg)
	h.start(t, cfg)

	if r := h.gensession(t, `{"client_ip":"81.2.69.160"}`); r.errCode != "503" && r.errCode != "502" {
		t.Fatalf("first request: %q %q, want the injected failure", r.errCode, r.errDesc)
	}
	var granted []genReply
	for range 2 {
		r := h.gensession(t, `{"client_ip":"81.2.69.160"}`)
		if r.errCode != "" {
			t.Fatalf("error %s %s", r.errCode, r.errDesc)
		}
		granted = append(granted, r)
	}
	h.claim(t, strconv.FormatUint(h.clientIDOf(t, granted[0].reply.ConnectToken), 10))

	var v statusfeed.View
	eventually.True(t, 10*time.Second, func() bool {
		v = agg.View(time.Now())
		creates := map[string]uint64{}
		for _, c := range v.EdgegapCalls {
			if c.Endpoint == string(edgegap.EndpointSessionCreate) {
				creates[c.Outcome] += c.Count
			}
		}
		return len(v.Instances) == 2 && v.Grants.Total == 2 && v.Grants.Failed == 1 && len(v.Errors) == 1 &&
			v.Sessions.Claimed == 1 && v.Sessions.Ready == 1 && v.Sessions.WaitingReady == 0 && v.Sessions.Creating == 0 &&
			creates["ok"] == 2 && creates["server_error"] == 1 && v.Grants.TTR.Count == 2 && v.OldestSession != nil
	}, "aggregated view of two matchmakers: %+v", &v)
	h.releaseAll(t)
}
