package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/edgegapsim"
)

// simAdmin talks to the Edgegap simulator's admin API (no authentication; loopback).
type simAdmin struct {
	base   string
	client *http.Client
}

func newSimAdmin(base string) *simAdmin {
	return &simAdmin{base: strings.TrimRight(base, "/"), client: &http.Client{Timeout: 10 * time.Second}}
}

func (a *simAdmin) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("soak: simulator %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("soak: simulator %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(msg))
	}
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("soak: simulator %s %s: %w", method, path, err)
	}
	return nil
}

func (a *simAdmin) state(ctx context.Context) (edgegapsim.State, error) {
	var st edgegapsim.State
	err := a.do(ctx, http.MethodGet, "/admin/state", nil, &st)
	return st, err
}

func (a *simAdmin) faults(ctx context.Context) (edgegapsim.Faults, error) {
	var f edgegapsim.Faults
	err := a.do(ctx, http.MethodGet, "/admin/faults", nil, &f)
	return f, err
}

func (a *simAdmin) setFaults(ctx context.Context, f edgegapsim.Faults) error {
	return a.do(ctx, http.MethodPut, "/admin/faults", f, nil)
}

func (a *simAdmin) failDeployment(ctx context.Context, id string) error {
	return a.do(ctx, http.MethodPost, "/admin/deployments/"+url.PathEscape(id)+"/fail",
		map[string]string{"message": "crashed by bevygap soak"}, nil)
}
