package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

func TestStatOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		xs   []float64
		want Stat
	}{
		{"none", nil, Stat{}},
		{"odd", []float64{3, 1, 2}, Stat{1, 2, 3}},
		{"even", []float64{4, 1, 2, 3}, Stat{1, 2.5, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := statOf(tc.xs); got != tc.want {
				t.Errorf("statOf(%v) = %v, want %v", tc.xs, got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	if err := (Options{Only: []string{P1, P7}}).Validate(); err != nil {
		t.Error(err)
	}
	if err := (Options{Only: []string{"P2"}}).Validate(); err == nil {
		t.Error("P2 accepted")
	}
}

// TestServeP4BadInput: P4's server process answers a measurement it cannot take with an error
// line, never a number.
func TestServeP4BadInput(t *testing.T) {
	t.Parallel()
	o := Options{ClientCmd: func() *exec.Cmd { return exec.Command("false") }}
	for _, tt := range []struct{ name, in, want string }{
		{"not JSON", "not json\n", "bad measurement"},
		{"unknown kind", `{"kind":"nope","n":10}` + "\n", `kind "nope"`},
		{"no connections", `{"kind":"echo","n":0}` + "\n", "0 connections"},
	} {
		var out bytes.Buffer
		if err := ServeP4(t.Context(), o, strings.NewReader(tt.in), &out); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		var res p4Result
		if err := json.Unmarshal(out.Bytes(), &res); err != nil || !strings.Contains(res.Err, tt.want) || res.KiB != 0 {
			t.Errorf("%s: answer %q (%v), want an error with %q", tt.name, out.String(), err, tt.want)
		}
	}
	if err := ServeP4(t.Context(), o, strings.NewReader(""), io.Discard); err == nil {
		t.Error("no measurement at all: no error")
	}
}

// TestP4ServerProcess: the parent reads the server process's last line; a process that fails,
// says nothing usable or reports an error is an error.
func TestP4ServerProcess(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name, script string
		want         float64
		wantErr      string
	}{
		{"result", `read spec; echo progress; echo '{"kib":12.5}'`, 12.5, ""},
		{"error", `read spec; echo '{"kib":0,"err":"boom"}'`, 0, "boom"},
		{"garbage", `read spec; echo garbage`, 0, "no result"},
		{"dies", `exit 3`, 0, "no result"},
	} {
		o := Options{ServerCmd: func() *exec.Cmd { return exec.Command("sh", "-c", tt.script) }}
		got, err := p4KiB(t.Context(), o, p4Echo, 10, "P4-test")
		if tt.wantErr == "" {
			if err != nil || got != tt.want {
				t.Errorf("%s: %v, %v; want %v", tt.name, got, err, tt.want)
			}
			continue
		}
		if !errors.Is(err, errP4Server) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: %v, want an errP4Server with %q", tt.name, err, tt.wantErr)
		}
	}
}
