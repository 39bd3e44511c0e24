package edgegap

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"sort"
	"strings"
)

// envVars lists the eight required ARBITRIUM_* variables in the order the reference reads them.
func envVars() []string {
	return []string{
		EnvRequestID, EnvDeleteURL, EnvDeleteToken, EnvDeploymentLocation,
		EnvContextURL, EnvContextToken, EnvPublicIP, EnvPortsMapping,
	}
}

// ErrEnvironment is matched (errors.Is) by the [*EnvError] of [ArbitriumFromEnv]: the ARBITRIUM_*
// environment is missing or malformed (retrying cannot fix it).
var ErrEnvironment = errors.New("edgegap: bad ARBITRIUM_* environment")

// EnvError reports everything wrong with the ARBITRIUM_* environment at once.
type EnvError struct {
	// Missing lists the required variables that are unset or empty, in the reference's order.
	Missing []string
	// Invalid maps a variable name to why its value was rejected. The value itself is never
	// included (two of the variables are tokens).
	Invalid map[string]string
}

// Error lists every missing and every invalid variable.
func (e *EnvError) Error() string {
	var b strings.Builder
	b.WriteString("edgegap: ARBITRIUM_* environment")
	if len(e.Missing) > 0 {
		b.WriteString(": missing ")
		b.WriteString(strings.Join(e.Missing, ", "))
	}
	if len(e.Invalid) > 0 {
		names := make([]string, 0, len(e.Invalid))
		for n := range e.Invalid {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(e.Missing) > 0 {
			b.WriteString(";")
		}
		b.WriteString(" invalid ")
		for i, n := range names {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(n)
			b.WriteString(" (")
			b.WriteString(e.Invalid[n])
			b.WriteString(")")
		}
	}
	b.WriteString(" (is this process running in an Edgegap deployment?)")
	return b.String()
}

// Is makes errors.Is(err, ErrEnvironment) true for an *EnvError.
func (e *EnvError) Is(target error) bool { return target == ErrEnvironment }

// Port is one entry of ARBITRIUM_PORTS_MAPPING as [ArbitriumFromEnv] decodes and checks it: a
// port of the app version and the public port Edgegap mapped it to. ([EnvPort] is the same JSON
// shape as the simulator writes it.)
type Port struct {
	// Name is the port's name in the app version (also its key in [Arbitrium.Ports]).
	Name string `json:"name"`
	// Internal is the port the game server listens on inside the container.
	Internal uint16 `json:"internal"`
	// External is the port clients reach at the deployment's public IP.
	External uint16 `json:"external"`
	// Protocol is Edgegap's protocol name, e.g. "UDP", "TCP/UDP", "HTTP".
	Protocol string `json:"protocol"`
}

// Arbitrium is the deployment's view of itself, read from the ARBITRIUM_* environment by
// [ArbitriumFromEnv] (decoded and checked; [ArbitriumEnv] is the raw form the simulator writes).
// Its String, GoString and LogValue methods never print the two tokens.
type Arbitrium struct {
	// RequestID is ARBITRIUM_REQUEST_ID, the deployment's id.
	RequestID string
	// DeleteURL and DeleteToken are ARBITRIUM_DELETE_URL and ARBITRIUM_DELETE_TOKEN: DELETE that
	// URL with the token as authorization to stop this deployment from inside.
	DeleteURL   string
	DeleteToken string
	// Location is ARBITRIUM_DEPLOYMENT_LOCATION, decoded.
	Location DeploymentLocation
	// ContextURL and ContextToken are ARBITRIUM_CONTEXT_URL and ARBITRIUM_CONTEXT_TOKEN: GET that
	// URL with the token as authorization for the deployment's context.
	ContextURL   string
	ContextToken string
	// PublicIP is ARBITRIUM_PUBLIC_IP.
	PublicIP netip.Addr
	// Ports is ARBITRIUM_PORTS_MAPPING, decoded: port name -> mapping.
	Ports map[string]Port
}

// ArbitriumFromEnv reads the ARBITRIUM_* variables with getenv (usually os.Getenv), as a game
// server does inside its deployment. It checks all of them and returns one *EnvError (matching
// ErrEnvironment) that lists every missing variable and every malformed one: URLs must be
// absolute http(s) URLs, the public IP an IP literal, and the location and ports mapping JSON
// objects of the documented shape.
func ArbitriumFromEnv(getenv func(string) string) (Arbitrium, error) {
	vals := make(map[string]string, 8)
	envErr := &EnvError{Invalid: map[string]string{}}
	for _, name := range envVars() {
		v := strings.TrimSpace(getenv(name))
		if v == "" {
			envErr.Missing = append(envErr.Missing, name)
			continue
		}
		vals[name] = v
	}
	a := Arbitrium{
		RequestID:    vals[EnvRequestID],
		DeleteURL:    vals[EnvDeleteURL],
		DeleteToken:  vals[EnvDeleteToken],
		ContextURL:   vals[EnvContextURL],
		ContextToken: vals[EnvContextToken],
	}
	for _, name := range []string{EnvDeleteURL, EnvContextURL} {
		if v, ok := vals[name]; ok {
			if err := checkURL(v); err != nil {
				envErr.Invalid[name] = err.Error()
			}
		}
	}
	if v, ok := vals[EnvPublicIP]; ok {
		ip, err := netip.ParseAddr(v)
		if err != nil {
			envErr.Invalid[EnvPublicIP] = "not an IP address"
		} else {
			a.PublicIP = ip.Unmap()
		}
	}
	if v, ok := vals[EnvDeploymentLocation]; ok {
		loc, err := parseLocation(v)
		if err != nil {
			envErr.Invalid[EnvDeploymentLocation] = err.Error()
		} else {
			a.Location = loc
		}
	}
	if v, ok := vals[EnvPortsMapping]; ok {
		ports, err := parsePorts(v)
		if err != nil {
			envErr.Invalid[EnvPortsMapping] = err.Error()
		} else {
			a.Ports = ports
		}
	}
	if len(envErr.Missing) > 0 || len(envErr.Invalid) > 0 {
		return Arbitrium{}, envErr
	}
	return a, nil
}

// checkURL accepts absolute http and https URLs with a host.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return errors.New("want an http or https URL")
	}
	if u.Host == "" {
		return errors.New("URL has no host")
	}
	return nil
}

// parseLocation decodes ARBITRIUM_DEPLOYMENT_LOCATION. Unknown fields are allowed; the value must
// be a JSON object.
func parseLocation(s string) (DeploymentLocation, error) {
	var loc DeploymentLocation
	if !strings.HasPrefix(s, "{") {
		return loc, errors.New("not a JSON object")
	}
	if err := json.Unmarshal([]byte(s), &loc); err != nil {
		return loc, fmt.Errorf("bad JSON: %s", jsonProblem(err))
	}
	return loc, nil
}

// parsePorts decodes ARBITRIUM_PORTS_MAPPING: {"ports": {"<name>": {"name", "internal",
// "external", "protocol"}}}. Every port needs an external port; an empty name is filled from
// the map key.
func parsePorts(s string) (map[string]Port, error) {
	var pm struct {
		Ports map[string]Port `json:"ports"`
	}
	if !strings.HasPrefix(s, "{") {
		return nil, errors.New("not a JSON object")
	}
	if err := json.Unmarshal([]byte(s), &pm); err != nil {
		return nil, fmt.Errorf("bad JSON: %s", jsonProblem(err))
	}
	if pm.Ports == nil {
		return nil, errors.New(`no "ports" object`)
	}
	for key, p := range pm.Ports {
		if key == "" {
			return nil, errors.New("a port has an empty name")
		}
		if p.External == 0 {
			return nil, fmt.Errorf("port %q has no external port", key)
		}
		if p.Name == "" {
			p.Name = key
			pm.Ports[key] = p
		}
	}
	return pm.Ports, nil
}

// jsonProblem describes a JSON error without quoting the input.
func jsonProblem(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q: want %s", te.Field, te.Type)
		}
		return fmt.Sprintf("want %s", te.Type)
	}
	return "malformed"
}

// Port returns the mapping of the port called name, and whether there is one.
func (a Arbitrium) Port(name string) (Port, bool) {
	p, ok := a.Ports[name]
	return p, ok
}

// String describes a without its tokens.
func (a Arbitrium) String() string {
	return fmt.Sprintf("edgegap.Arbitrium{RequestID:%q PublicIP:%s Location:%q ContextURL:%q DeleteURL:%q Ports:%d ContextToken:%s DeleteToken:%s}",
		a.RequestID, a.PublicIP, a.locationText(), a.ContextURL, a.DeleteURL, len(a.Ports),
		redacted(a.ContextToken), redacted(a.DeleteToken))
}

// GoString is String, so that %#v does not print the tokens either.
func (a Arbitrium) GoString() string { return a.String() }

// LogValue makes slog print a without its tokens.
func (a Arbitrium) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("request_id", a.RequestID),
		slog.String("public_ip", a.PublicIP.String()),
		slog.String("location", a.locationText()),
		slog.Int("ports", len(a.Ports)),
	)
}

func (a Arbitrium) locationText() string {
	switch {
	case a.Location.City != "" && a.Location.Country != "":
		return a.Location.City + ", " + a.Location.Country
	case a.Location.Country != "":
		return a.Location.Country
	}
	return a.Location.City
}

func redacted(s string) string {
	if s == "" {
		return `""`
	}
	return "[REDACTED]"
}
