package soak

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
)

func TestParseFaults(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec    string
		want    []string // name@at+for of each fault
		wantErr bool
	}{
		{"", nil, false},
		{"edgegap-5xx@20s+15s", []string{"edgegap-5xx@20s+15s"}, false},
		{"gameserver-crash@40s, webhook-loss@1m+10s", []string{"gameserver-crash@40s+0s", "webhook-loss@1m0s+10s"}, false},
		{"edgegap-429@10s+5s*3", []string{"edgegap-429@10s+5s", "edgegap-429@20s+5s", "edgegap-429@30s+5s"}, false},
		{"edgegap-5xx@20s", nil, true},     // needs a duration
		{"nope@1s+1s", nil, true},          // unknown
		{"edgegap-5xx", nil, true},         // no time
		{"edgegap-5xx@x+1s", nil, true},    // bad time
		{"edgegap-5xx@1s+1s*0", nil, true}, // bad repeat
	}
	for _, tc := range tests {
		t.Run(tc.spec, func(t *testing.T) {
			fs, err := ParseFaults(tc.spec)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseFaults(%q) error %v, want error %v", tc.spec, err, tc.wantErr)
			}
			var got []string
			for _, f := range fs {
				got = append(got, f.Name+"@"+f.At.String()+"+"+f.For.String())
				if f.Start == nil {
					t.Errorf("%s has no Start", f.Name)
				}
			}
			if len(got) != len(tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Errorf("fault %d = %s, want %s", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestMergeFaults(t *testing.T) {
	t.Parallel()
	got := mergeFaults(edgegapsim.Faults{WebhookLossRate: 0.1}, simulatorFaults[FaultEdgegap5xx],
		simulatorFaults[FaultEdgegapLatency], simulatorFaults[FaultEdgegap429], simulatorFaults[FaultWebhookLoss])
	if got.WebhookLossRate != 0.5 {
		t.Errorf("webhook loss %v, want 0.5", got.WebhookLossRate)
	}
	all := got.Endpoints[edgegapsim.AllEndpoints]
	if all.Latency != edgegapsim.Duration(time.Second) || all.ErrorRate != 0.33 || all.Status != 429 {
		t.Errorf("* = %+v, want latency 1s, 429 at 0.33", all)
	}
	if c := got.Endpoints[edgegap.EndpointSessionCreate]; c.ErrorRate != 0.2 || c.Status != 503 {
		t.Errorf("session_create = %+v", c)
	}
	if empty := mergeFaults(); empty.Endpoints != nil || empty.BootFailureRate != 0 {
		t.Errorf("merge of nothing = %+v", empty)
	}
}

func TestPlayerIP(t *testing.T) {
	t.Parallel()
	bench := netip.MustParsePrefix("198.18.0.0/15")
	seen := map[netip.Addr]bool{}
	for _, base := range []uint32{0, 1 << 16, 1<<17 - 5} {
		for i := range 20000 {
			ip := playerIP(base, i)
			if !bench.Contains(ip) || ip == netip.MustParseAddr("198.18.0.0") || ip == netip.MustParseAddr("198.19.255.255") {
				t.Fatalf("playerIP(%d, %d) = %s, outside 198.18.0.0/15's hosts", base, i, ip)
			}
			if base == 0 {
				if seen[ip] {
					t.Fatalf("playerIP(0, %d) = %s twice", i, ip)
				}
				seen[ip] = true
			}
		}
	}
}

// TestRelayCut: datagrams go through the relay both ways until it is cut; after that nothing
// reaches the server, as with a player who vanished.
func TestRelayCut(t *testing.T) {
	t.Parallel()
	srv, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	got := make(chan string, 16)
	go func() {
		buf := make([]byte, 64)
		for {
			n, from, err := srv.ReadFromUDPAddrPort(buf)
			if err != nil {
				close(got)
				return
			}
			got <- string(buf[:n])
			_, _ = srv.WriteToUDPAddrPort(append([]byte("echo "), buf[:n]...), from)
		}
	}()
	r, err := newRelay(srv.LocalAddr().(*net.UDPAddr).AddrPort())
	if err != nil {
		t.Fatal(err)
	}
	cl, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(r.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Write([]byte("one")); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "one" {
		t.Fatalf("server got %q", s)
	}
	_ = cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, err := cl.Read(buf)
	if err != nil || string(buf[:n]) != "echo one" {
		t.Fatalf("client got %q, %v", buf[:n], err)
	}
	r.cut()
	_, _ = cl.Write([]byte("two")) // to a closed port: refused or dropped
	// The server must not get it: close the server after a last datagram of its own from
	// elsewhere, so that "two" would have arrived before it.
	probe, err := net.DialUDP("udp", nil, srv.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	if _, err := probe.Write([]byte("probe")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	select {
	case s := <-got:
		if s != "probe" {
			t.Fatalf("server got %q after the relay was cut", s)
		}
	case <-ctx.Done():
		t.Fatal("probe not received")
	}
}
