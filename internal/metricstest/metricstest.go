// Package metricstest checks Prometheus expositions in tests the way `promtool check metrics`
// does (promtool runs the same linter, client_golang's promlint).
package metricstest

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// Lint fails t for every problem promlint (`promtool check metrics`) finds in exposition, a
// /metrics body in the Prometheus text format; what names it in the failures.
func Lint(t testing.TB, what, exposition string) {
	t.Helper()
	problems, err := promlint.New(strings.NewReader(exposition)).Lint()
	if err != nil {
		t.Fatalf("%s: cannot parse the exposition: %v", what, err)
	}
	for _, p := range problems {
		t.Errorf("%s: promtool check metrics: %s: %s", what, p.Metric, p.Text)
	}
}

// Scrape GETs url (a /metrics endpoint) and returns the body; a failure or a status other than
// 200 fails t.
func Scrape(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}
