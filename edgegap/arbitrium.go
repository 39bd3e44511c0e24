package edgegap

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// The ARBITRIUM_* environment variables Edgegap injects into every deployment's container. The
// first eight are mandatory for the Rust bevygap server plugin (it panics without them).
const (
	EnvRequestID          = "ARBITRIUM_REQUEST_ID"
	EnvDeleteURL          = "ARBITRIUM_DELETE_URL"
	EnvDeleteToken        = "ARBITRIUM_DELETE_TOKEN"
	EnvDeploymentLocation = "ARBITRIUM_DEPLOYMENT_LOCATION"
	EnvContextURL         = "ARBITRIUM_CONTEXT_URL"
	EnvContextToken       = "ARBITRIUM_CONTEXT_TOKEN"
	EnvPublicIP           = "ARBITRIUM_PUBLIC_IP"
	EnvPortsMapping       = "ARBITRIUM_PORTS_MAPPING"

	// Optional variables (not read by bevygap, injected by Edgegap).
	EnvHostID             = "ARBITRIUM_HOST_ID"
	EnvDeploymentTags     = "ARBITRIUM_DEPLOYMENT_TAGS"
	EnvDeploymentVCPU     = "ARBITRIUM_DEPLOYMENT_VCPU_UNITS"
	EnvDeploymentMemoryMB = "ARBITRIUM_DEPLOYMENT_MEMORY_MB"
)

// EnvPortPrefix starts the per-port convenience variables ARBITRIUM_PORT_<NAME>_INTERNAL,
// _EXTERNAL and _PROTOCOL, where NAME is the upper-cased port name.
const EnvPortPrefix = "ARBITRIUM_PORT_"

// PortEnvName returns the name of a per-port variable, e.g. PortEnvName("server", "EXTERNAL") =
// "ARBITRIUM_PORT_SERVER_EXTERNAL". Characters other than letters, digits and '_' become '_'.
func PortEnvName(port, suffix string) string {
	name := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			return r
		}
		return '_'
	}, port)
	return EnvPortPrefix + name + "_" + suffix
}

// ArbitriumEnv is the raw ARBITRIUM_* environment of a deployment, as the simulator writes it
// ([ArbitriumEnv.Vars]). A game server reads and checks it with [ArbitriumFromEnv].
type ArbitriumEnv struct {
	RequestID   string
	DeleteURL   string
	DeleteToken string
	// DeploymentLocation is the raw JSON of ARBITRIUM_DEPLOYMENT_LOCATION; see Location.
	DeploymentLocation string
	ContextURL         string
	ContextToken       string
	PublicIP           string
	// PortsMapping is the raw JSON of ARBITRIUM_PORTS_MAPPING; see Ports.
	PortsMapping string
}

// EnvPort is one port of ARBITRIUM_PORTS_MAPPING.
type EnvPort struct {
	Name     string `json:"name"`
	Internal int    `json:"internal"`
	External int    `json:"external"`
	Protocol string `json:"protocol"`
}

// PortsMappingJSON is the shape of ARBITRIUM_PORTS_MAPPING: {"ports": {"<name>": {...}}}.
type PortsMappingJSON struct {
	Ports map[string]EnvPort `json:"ports"`
}

// Vars returns the eight mandatory variables as a map, ready to be added to a process
// environment (the simulator uses it to start game servers).
func (e ArbitriumEnv) Vars() map[string]string {
	return map[string]string{
		EnvRequestID: e.RequestID, EnvDeleteURL: e.DeleteURL, EnvDeleteToken: e.DeleteToken,
		EnvDeploymentLocation: e.DeploymentLocation, EnvContextURL: e.ContextURL,
		EnvContextToken: e.ContextToken, EnvPublicIP: e.PublicIP, EnvPortsMapping: e.PortsMapping,
	}
}

// String describes the environment without its tokens.
func (e ArbitriumEnv) String() string {
	return fmt.Sprintf("ArbitriumEnv{request_id=%s public_ip=%s context_url=%s}",
		e.RequestID, e.PublicIP, e.ContextURL)
}

// GoString describes the environment without its tokens.
func (e ArbitriumEnv) GoString() string { return e.String() }

// Location decodes ARBITRIUM_DEPLOYMENT_LOCATION.
func (e ArbitriumEnv) Location() (DeploymentLocation, error) {
	var l DeploymentLocation
	if err := json.Unmarshal([]byte(e.DeploymentLocation), &l); err != nil {
		return DeploymentLocation{}, fmt.Errorf("edgegap: decode %s: %w", EnvDeploymentLocation, err)
	}
	return l, nil
}

// Ports decodes ARBITRIUM_PORTS_MAPPING into its port map (keyed by port name).
func (e ArbitriumEnv) Ports() (map[string]EnvPort, error) {
	var p PortsMappingJSON
	if err := json.Unmarshal([]byte(e.PortsMapping), &p); err != nil {
		return nil, fmt.Errorf("edgegap: decode %s: %w", EnvPortsMapping, err)
	}
	return p.Ports, nil
}

// ContextParts splits the context URL .../v1/context/{request_id}/{security_number} into its
// request id and security number, like the Rust plugin does.
func (e ArbitriumEnv) ContextParts() (requestID string, securityNumber int, err error) {
	u, err := url.Parse(e.ContextURL)
	if err != nil {
		return "", 0, fmt.Errorf("edgegap: parse %s: %w", EnvContextURL, err)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if len(parts) < 2 {
		return "", 0, errors.New("edgegap: " + EnvContextURL + " has no request id and security number")
	}
	n, err := strconv.Atoi(parts[len(parts)-1])
	if err != nil {
		return "", 0, fmt.Errorf("edgegap: %s security number: %w", EnvContextURL, err)
	}
	return parts[len(parts)-2], n, nil
}
