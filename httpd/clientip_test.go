package httpd

import (
	"errors"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestClientIPSelection(t *testing.T) {
	t.Parallel()
	trusted, err := ParsePrefixes("10.0.0.0/8, 127.0.0.1, fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	standIn := mustAddr("81.128.157.100")
	on := ipPolicy{trusted: trusted, allowOverride: true, standIn: standIn}
	off := ipPolicy{trusted: trusted, allowOverride: false, standIn: standIn}
	tests := []struct {
		name       string
		policy     ipPolicy
		remote     string // http.Request.RemoteAddr
		xff        []string
		override   string
		wantSource string
		want       string // "" means: placement fails with errBadClientIP
	}{
		// IPv4
		{"public peer", on, "198.51.100.7:5000", nil, "", "198.51.100.7", "198.51.100.7"},
		{"loopback peer -> stand-in", on, "127.0.0.1:5000", nil, "", "127.0.0.1", "81.128.157.100"},
		{"private peer -> stand-in", on, "192.168.1.20:5000", nil, "", "192.168.1.20", "81.128.157.100"},
		{"cgnat peer -> stand-in", on, "100.64.3.4:5000", nil, "", "100.64.3.4", "81.128.157.100"},
		{"link-local peer -> stand-in", on, "169.254.1.1:5000", nil, "", "169.254.1.1", "81.128.157.100"},
		{"xff from untrusted peer ignored", on, "198.51.100.7:5000", []string{"203.0.113.1"}, "", "198.51.100.7", "198.51.100.7"},
		{"xff from trusted proxy", on, "10.1.2.3:5000", []string{"203.0.113.1, 10.9.9.9"}, "", "203.0.113.1", "203.0.113.1"},
		{"xff first header wins", on, "10.1.2.3:5000", []string{"203.0.113.1", "203.0.113.2"}, "", "203.0.113.1", "203.0.113.1"},
		{"xff with port", on, "10.1.2.3:5000", []string{"203.0.113.1:4444"}, "", "203.0.113.1", "203.0.113.1"},
		{"xff garbage -> peer", on, "10.1.2.3:5000", []string{"unknown"}, "", "10.1.2.3", "81.128.157.100"},
		{"xff empty -> peer", on, "10.1.2.3:5000", []string{""}, "", "10.1.2.3", "81.128.157.100"},
		{"xff private from trusted -> stand-in", on, "127.0.0.1:5000", []string{"192.168.0.9"}, "", "192.168.0.9", "81.128.157.100"},
		{"override wins over xff", on, "10.1.2.3:5000", []string{"203.0.113.1"}, "203.0.113.99", "203.0.113.1", "203.0.113.99"},
		{"override loopback -> stand-in", on, "198.51.100.7:5000", nil, "127.0.0.1", "198.51.100.7", "81.128.157.100"},
		{"override invalid", on, "198.51.100.7:5000", nil, "999.1.1.1", "198.51.100.7", ""},
		{"override switched off", off, "198.51.100.7:5000", nil, "203.0.113.99", "198.51.100.7", "198.51.100.7"},
		{"override switched off, invalid ignored", off, "198.51.100.7:5000", nil, "junk", "198.51.100.7", "198.51.100.7"},
		{"mapped v4 peer", on, "[::ffff:198.51.100.7]:5000", nil, "", "198.51.100.7", "198.51.100.7"},
		// IPv6
		{"v6 public peer", on, "[2001:db8::5]:5000", nil, "", "2001:db8::5", "2001:db8::5"},
		{"v6 loopback -> stand-in", on, "[::1]:5000", nil, "", "::1", "81.128.157.100"},
		{"v6 ula peer -> stand-in", on, "[fc00::1]:5000", nil, "", "fc00::1", "81.128.157.100"},
		{"v6 link-local with zone -> stand-in", on, "[fe80::1%eth0]:5000", nil, "", "fe80::1", "81.128.157.100"},
		{"v6 xff from trusted v6 proxy", on, "[fd00::2]:5000", []string{"2001:db8::77"}, "", "2001:db8::77", "2001:db8::77"},
		{"v6 xff bracketed with port", on, "[fd00::2]:5000", []string{"[2001:db8::77]:443"}, "", "2001:db8::77", "2001:db8::77"},
		{"v6 xff from untrusted", on, "[2001:db8::5]:5000", []string{"2001:db8::77"}, "", "2001:db8::5", "2001:db8::5"},
		{"v4 xff via v6 proxy", on, "[fd00::2]:5000", []string{"203.0.113.1"}, "", "203.0.113.1", "203.0.113.1"},
		{"v6 override", on, "127.0.0.1:5000", nil, "2001:db8::1", "127.0.0.1", "2001:db8::1"},
		{"v6 override unspecified -> stand-in", on, "127.0.0.1:5000", nil, "::", "127.0.0.1", "81.128.157.100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			src := tt.policy.requestSource(r)
			if src.String() != tt.wantSource {
				t.Fatalf("source = %s, want %s", src, tt.wantSource)
			}
			got, err := tt.policy.placement(src, tt.override)
			if tt.want == "" {
				if !errors.Is(err, errBadClientIP) {
					t.Fatalf("err = %v, want errBadClientIP", err)
				}
				return
			}
			if err != nil || got.String() != tt.want {
				t.Fatalf("placement = %s, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestParsePrefixes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{"", "[]", false},
		{"10.0.0.0/8", "[10.0.0.0/8]", false},
		{"10.1.2.3/8, ::1 ,127.0.0.1", "[10.0.0.0/8 ::1/128 127.0.0.1/32]", false},
		{"::ffff:10.0.0.1", "[10.0.0.1/32]", false},
		{"10.0.0.0/33", "", true},
		{"proxy.local", "", true},
	}
	for _, tt := range tests {
		got, err := ParsePrefixes(tt.in)
		if (err != nil) != tt.wantErr {
			t.Errorf("%q: err %v", tt.in, err)
			continue
		}
		if !tt.wantErr {
			s := "["
			for i, p := range got {
				if i > 0 {
					s += " "
				}
				s += p.String()
			}
			if s += "]"; s != tt.want {
				t.Errorf("%q: got %s, want %s", tt.in, s, tt.want)
			}
		}
	}
}

func TestLimitKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		a, b string
		same bool
	}{
		{"203.0.113.1", "203.0.113.1", true},
		{"203.0.113.1", "203.0.113.2", false},
		{"2001:db8:1:2::1", "2001:db8:1:2:ffff::9", true}, // same /64
		{"2001:db8:1:2::1", "2001:db8:1:3::1", false},
		{"::ffff:203.0.113.1", "203.0.113.1", true},
	}
	for _, tt := range tests {
		if got := limitKey(mustAddr(tt.a)) == limitKey(mustAddr(tt.b)); got != tt.same {
			t.Errorf("%s vs %s: same = %v", tt.a, tt.b, got)
		}
	}
}

func TestRateLimiter(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := limitKey(mustAddr("203.0.113.1"))
	b := limitKey(mustAddr("203.0.113.2"))
	tests := []struct {
		name      string
		perMinute float64
		burst     int
		steps     []struct {
			key netip.Prefix
			at  time.Duration
			ok  bool
		}
	}{
		{"burst then refill", 6, 2, []struct {
			key netip.Prefix
			at  time.Duration
			ok  bool
		}{
			{a, 0, true}, {a, 0, true}, {a, 0, false}, // burst of 2 used up
			{b, 0, true},                // another IP is not affected
			{a, 5 * time.Second, false}, // 6/min = one token per 10 s
			{a, 10 * time.Second, true},
			{a, 11 * time.Second, false},
		}},
		{"unlimited", -1, 1, []struct {
			key netip.Prefix
			at  time.Duration
			ok  bool
		}{{a, 0, true}, {a, 0, true}, {a, 0, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newIPRateLimiter(tt.perMinute, tt.burst)
			for i, st := range tt.steps {
				if got := l.allow(st.key, t0.Add(st.at)); got != st.ok {
					t.Fatalf("step %d: allow = %v, want %v", i, got, st.ok)
				}
			}
		})
	}
}

func TestRateLimiterForgetsIdleBuckets(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newIPRateLimiter(6, 2)
	for i := 0; i < 100; i++ {
		l.allow(limitKey(netip.AddrFrom4([4]byte{203, 0, 113, byte(i)})), t0)
	}
	if l.size() != 100 {
		t.Fatalf("size %d", l.size())
	}
	l.allow(limitKey(mustAddr("198.51.100.1")), t0.Add(2*time.Minute))
	if l.size() != 1 {
		t.Fatalf("size after sweep %d, want 1", l.size())
	}
}

func TestStreamCounter(t *testing.T) {
	t.Parallel()
	a := limitKey(mustAddr("203.0.113.1"))
	b := limitKey(mustAddr("203.0.113.2"))
	c := newStreamCounter(3, 2)
	steps := []struct {
		key  netip.Prefix
		want string
	}{
		{a, ""}, {a, ""}, {a, "too_many_streams_ip"}, {b, ""}, {b, "too_many_streams"},
	}
	for i, st := range steps {
		if got := c.acquire(st.key); got != st.want {
			t.Fatalf("step %d: %q, want %q", i, got, st.want)
		}
	}
	c.release(a)
	if got := c.acquire(b); got != "" {
		t.Fatalf("after release: %q", got)
	}
	c.release(a)
	c.release(b)
	c.release(b)
	if c.open() != 0 || len(c.perIP) != 0 {
		t.Fatalf("open %d, perIP %v", c.open(), c.perIP)
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if len(c.AllowedOrigins) != 1 || c.AllowedOrigins[0] != DefaultAllowedOrigin || c.StandInIP != DefaultStandInIP ||
		c.FirstMessageTimeout != 10*time.Second || c.MaxStreamsPerIP != DefaultMaxStreamsPerIP {
		t.Fatalf("defaults: %+v", c)
	}
	if _, err := (Config{AllowedOrigins: []string{"localhost:8000"}}).withDefaults(); err == nil {
		t.Fatal("origin without scheme accepted")
	}
	c, _ = Config{AllowedOrigins: ParseOrigins(" https://a.example/ , *")}.withDefaults()
	if c.AllowedOrigins[0] != "https://a.example" || c.AllowedOrigins[1] != "*" {
		t.Fatalf("origins %q", c.AllowedOrigins)
	}
}

func FuzzClientIP(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "[2001:db8::1]:80", "fe80::1%eth0", "unknown", "10.0.0.1, 1.2.3.4", ""} {
		f.Add(s, s)
	}
	p := ipPolicy{trusted: []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0")}, allowOverride: true, standIn: DefaultStandInIP}
	f.Fuzz(func(t *testing.T, xff, override string) {
		src := p.source(mustAddr("10.0.0.1"), []string{xff})
		if !src.IsValid() {
			t.Fatalf("source %v from %q", src, xff)
		}
		got, err := p.placement(src, override)
		if err != nil {
			return
		}
		if !isPublic(got) && got != DefaultStandInIP {
			t.Fatalf("placement %v is not public (xff %q, override %q)", got, xff, override)
		}
		if got.Zone() != "" || got.Is4In6() {
			t.Fatalf("placement %v has a zone or is mapped", got)
		}
	})
}
