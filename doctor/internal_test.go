package doctor

import (
	"testing"
	"time"
)

// TestClockResult: the skew is judged with the uncertainty of a Date header (1 s resolution)
// and of the round trip.
func TestClockResult(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	sample := func(localOffset, rtt time.Duration) dateSample {
		// The server's clock reads base at the middle of the request; the local clock reads
		// base+localOffset then. The Date header is truncated to the second.
		mid := base.Add(localOffset)
		return dateSample{sent: mid.Add(-rtt / 2), received: mid.Add(rtt / 2), date: base.Truncate(time.Second)}
	}
	tests := []struct {
		name    string
		samples []dateSample
		want    Status
	}{
		{"none", nil, StatusSkip},
		{"in sync", []dateSample{sample(0, 20*time.Millisecond)}, StatusOK},
		{"2 s ahead", []dateSample{sample(2*time.Second, 20*time.Millisecond)}, StatusOK},
		{"5 s behind warns", []dateSample{sample(-5*time.Second, 20*time.Millisecond)}, StatusWarn},
		{"12 s ahead fails", []dateSample{sample(12*time.Second, 20*time.Millisecond)}, StatusFail},
		{"a slow round trip widens the margin", []dateSample{sample(12*time.Second, 6*time.Second)}, StatusWarn},
		{"the fastest sample counts", []dateSample{sample(12*time.Second, 6*time.Second), sample(12*time.Second, 10*time.Millisecond)}, StatusFail},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := clockResult(tt.samples, 10*time.Second)
			if got.Status != tt.want {
				t.Errorf("%+v, want %s", got, tt.want)
			}
			if got.Status == StatusFail && got.Fix == "" {
				t.Error("a failure without a fix")
			}
		})
	}
}

func TestSubjectMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, subject string
		want             bool
	}{
		{"webhook.*", "webhook.session", true},
		{"webhook.*", "webhook.a.b", false},
		{"webhook.>", "webhook.a.b", true},
		{"webhook.>", "webhook", false},
		{"webhook.session", "webhook.session", true},
		{"hooks.*", "webhook.session", false},
		{">", "anything.at.all", true},
	}
	for _, tt := range tests {
		if got := subjectMatches(tt.pattern, tt.subject); got != tt.want {
			t.Errorf("subjectMatches(%q, %q) = %v, want %v", tt.pattern, tt.subject, got, tt.want)
		}
	}
}

func TestPrivateHost(t *testing.T) {
	t.Parallel()
	for host, want := range map[string]bool{
		"127.0.0.1": true, "localhost": true, "10.1.2.3": true, "192.168.1.5": true, "sink.internal": true,
		"hooks.example.com": false, "203.0.113.7": false,
	} {
		if got := privateHost(host); got != want {
			t.Errorf("privateHost(%q) = %v, want %v", host, got, want)
		}
	}
}
