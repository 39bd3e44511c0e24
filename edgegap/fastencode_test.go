package edgegap

import (
	"bytes"
	"encoding/json"
	"math"
	"testing"
)

// checkAppendJSON fails when AppendJSON does not give json.Marshal's bytes (or error) for v.
func checkAppendJSON(t *testing.T, v any) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	got, err := AppendJSON([]byte("prefix"), v)
	if (err != nil) != (wantErr != nil) {
		t.Fatalf("AppendJSON(%+v) error %v, json.Marshal %v", v, err, wantErr)
	}
	if err != nil {
		if string(got) != "prefix" {
			t.Fatalf("AppendJSON(%+v) failed but changed dst: %q", v, got)
		}
		return
	}
	if !bytes.Equal(got, append([]byte("prefix"), want...)) {
		t.Fatalf("AppendJSON(%+v)\n got %s\nwant prefix%s", v, got, want)
	}
}

func TestAppendJSON(t *testing.T) {
	full := fastSample()
	nan := fastSample()
	nan.Deployment.Location.Latitude = math.NaN()
	empty := &Session{Deployment: &Deployment{Ports: map[string]PortMapping{}, Tags: []string{}}, SessionUsers: []SessionUser{}}
	odd := &Session{SessionID: "<a&b>", Status: "é\u2028\"\\\n\x00\x7f\xff", SessionUsers: []SessionUser{{IP: "x", Latitude: Ptr(1e-7), Longitude: Ptr(1e21)}, {Latitude: Ptr(math.Copysign(0, -1)), Longitude: Ptr(123456789.125)}},
		Deployment: &Deployment{Ports: map[string]PortMapping{"z": {Proxy: Ptr(1)}, "a<": {}, "m": {Name: Ptr("n"), TLSUpgrade: Ptr(true)}}, Tags: []string{"", "t&"},
			Location: &DeploymentLocation{Latitude: 1e-6, Longitude: 999999999999999999999.0}, SocketsUsage: Ptr(-3), IsJoinableBySession: Ptr(false)}}
	for _, v := range []any{full, *full, nan, empty, odd, (*Session)(nil), Session{},
		SessionCreated{SessionID: "s", App: "a", Version: "v", DeploymentRequestID: Ptr("d"), WebhookURL: Ptr("http://h/x?a=1&b=2")},
		&SessionCreated{CustomID: Ptr("c")}, SessionCreated{Selectors: []Selector{{Tag: "t"}}}, (*SessionCreated)(nil),
		SessionSummary{SessionID: "s", Status: "READY", Ready: true, UserCount: -1, DeploymentRequestID: Ptr("d")},
		&SessionSummary{}, (*SessionSummary)(nil), ErrorBody{Message: "m"}, nil, map[string]int{"a": 1},
		SessionCreateRequest{AppName: "dotroom", IPList: []string{"127.0.0.1", "::1"}, WebhookURL: "http://h/hook/session"},
		SessionCreateRequest{AppName: "<a>", VersionName: "v", IPList: []string{}, DeploymentRequestID: "d", City: "c", Country: "k",
			Continent: "n", AdministrativeDivision: "a", Region: "r", SkipTelemetry: Ptr(false)},
		SessionCreateRequest{AppName: "a", Location: &LatLon{Latitude: 1}}, SessionCreateRequest{GeoIPList: []GeoIP{{IP: "x"}}},
		SessionCreateRequest{Selectors: []Selector{{Tag: "t"}}}, SessionCreateRequest{Filters: []SessionFilter{{Field: "f"}}}} {
		checkAppendJSON(t, v)
	}
	data, _ := AppendJSON(nil, full)
	if a := testing.AllocsPerRun(20, func() { _, _ = AppendJSON(data[:0], full) }); a > 1 {
		t.Errorf("AppendJSON of a session into a large enough buffer: %v allocations", a)
	}
}

func FuzzAppendJSON(f *testing.F) {
	f.Add("0123456789ab-S", "Status.READY", "gameport", "127.0.0.1", 31000, 45.5, -73.5, true, uint8(0xff))
	f.Add("<&>", "é\u2028", "a\"b", "\x00", -1, 1e-7, math.Inf(1), false, uint8(0))
	f.Fuzz(func(t *testing.T, id, status, port, ip string, n int, lat, lon float64, b bool, set uint8) {
		opt := func(bit uint8) bool { return set&(1<<bit) != 0 }
		s := &Session{SessionID: id, Status: status, Ready: b, Kind: port, UserCount: n, CreateTime: ip, Elapsed: -n}
		if opt(0) {
			s.CustomID, s.Error = &id, &status
		}
		if opt(1) {
			s.SessionUsers = []SessionUser{{IP: ip, Latitude: &lat}, {Longitude: &lon}}
		}
		if opt(2) {
			s.Deployment = &Deployment{RequestID: id, FQDN: ip, Ports: map[string]PortMapping{port: {External: &n, Link: &ip}, status: {TLSUpgrade: &b}},
				Tags: []string{port}, Sockets: &n}
		}
		if opt(3) && s.Deployment != nil {
			s.Deployment.Location = &DeploymentLocation{City: port, Latitude: lat, Longitude: lon}
		}
		if opt(4) {
			s.WebhookURL = &ip
		}
		checkAppendJSON(t, s)
		checkAppendJSON(t, SessionCreated{SessionID: id, App: port, Version: status, DeploymentRequestID: s.CustomID, WebhookURL: s.WebhookURL})
		checkAppendJSON(t, SessionSummary{SessionID: id, Status: status, Linked: b, UserCount: n, DeploymentRequestID: s.Error})
		req := SessionCreateRequest{AppName: id, VersionName: status, DeploymentRequestID: port, Region: ip, WebhookURL: ip}
		if opt(5) {
			req.IPList = []string{ip, port}
		}
		if opt(6) {
			req.SkipTelemetry = &b
		}
		checkAppendJSON(t, req)
	})
}
