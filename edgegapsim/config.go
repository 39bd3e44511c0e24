package edgegapsim

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
)

// Defaults of Config.
const (
	DefaultBootTime       = 3 * time.Second
	DefaultBootJitter     = 500 * time.Millisecond
	DefaultEmptyTTL       = 10 * time.Minute
	DefaultSockets        = 6
	DefaultPortName       = "server"
	DefaultPortProtocol   = "UDP"
	DefaultPort           = 6420
	DefaultPublicIP       = "127.0.0.1"
	DefaultFQDN           = "localhost"
	DefaultWebhookTimeout = 10 * time.Second
)

// Config configures a Simulator. Apps, APIKeys and the timing fields can come from a JSON file
// (LoadConfigFile); Clock, Launcher, Logger and HTTPClient are set in code.
type Config struct {
	// Apps are the applications (with their versions) the simulator knows. More can be added
	// later with Simulator.AddApp.
	Apps []AppConfig `json:"apps"`
	// APIKeys are the accepted authorization header values, verbatim (e.g. "token abc").
	// At least one is required; any other value gets 401.
	APIKeys []string `json:"api_keys"`
	// BaseURL is the simulator's URL as seen by game servers, used to build
	// ARBITRIUM_CONTEXT_URL and ARBITRIUM_DELETE_URL. Serve fills it in from the listener when
	// empty; with httptest call SetBaseURL(srv.URL).
	BaseURL string `json:"base_url,omitempty"`
	// PublicIP is every deployment's public_ip (default 127.0.0.1). It must be an IP literal.
	PublicIP string `json:"public_ip,omitempty"`
	// FQDN is every deployment's fqdn (default "localhost").
	FQDN string `json:"fqdn,omitempty"`
	// Location is every deployment's location (default: Montreal, as in Edgegap's examples).
	Location *edgegap.DeploymentLocation `json:"location,omitempty"`
	// BootTime is how long a new deployment takes to become ready (0: default 3 s; negative:
	// instant), plus a
	// random share of BootJitter (default 0.5 s). Set BootJitter negative for none.
	BootTime   Duration `json:"boot_time,omitempty"`
	BootJitter Duration `json:"boot_jitter,omitempty"`
	// MaxDeployments limits concurrent deployments (0 = unlimited); beyond it a session create
	// that needs a new deployment is refused (edgegap.StatusNoCapacity), like Edgegap's free
	// tier with its one deployment.
	MaxDeployments int `json:"max_deployments,omitempty"`
	// Seed seeds all randomness (ids, tokens, jitter, faults); 0 picks a random seed.
	Seed uint64 `json:"seed,omitempty"`
	// Faults is the initial fault injection setting.
	Faults Faults `json:"faults,omitempty"`
	// WebhookTimeout bounds each webhook POST (default 10 s, as Edgegap documents).
	WebhookTimeout Duration `json:"webhook_timeout,omitempty"`

	// Clock drives simulated time (default: the wall clock). Use NewFakeClock for deterministic
	// tests or ScaledClock to run long boot times fast.
	Clock Clock `json:"-"`
	// Launcher starts the game server of each deployment; nil means no game server (the
	// deployment still becomes ready after its boot time).
	Launcher Launcher `json:"-"`
	// Logger receives the simulator's logs (default slog.Default()).
	Logger *slog.Logger `json:"-"`
	// HTTPClient posts webhooks (default: a plain client that keeps a keep-alive connection
	// per webhook worker; WebhookTimeout applies per POST).
	HTTPClient *http.Client `json:"-"`
	// AllocatePort picks the loopback port of a new deployment's port with the given protocol
	// ("UDP", "TCP", "TCP/UDP", ...). Default: a port that is free right now (bind and close).
	// Tests that need fixed ports (golden files) set it.
	AllocatePort func(protocol string) (int, error) `json:"-"`
}

// AppConfig is one application.
type AppConfig struct {
	Name string `json:"name"`
	// Active defaults to true.
	Active *bool `json:"active,omitempty"`
	// Versions of the app; a session create without version_name uses the last active one.
	Versions []VersionConfig `json:"versions"`
}

// VersionConfig is one app version.
type VersionConfig struct {
	Name string `json:"name"`
	// Active defaults to true.
	Active *bool `json:"active,omitempty"`
	// Kind is "Seat" (default: one socket per user of a session) or "Match" (one socket per
	// session). A Match session created without deployment_request_id always starts a fresh
	// deployment of its own — the simulator's choice: one match per game server, as bevygap's
	// match-kind queues expect (Edgegap packs Match sessions onto a deployment with a free
	// socket; give the version one socket there for the same effect). A session with
	// deployment_request_id joins that deployment in both kinds.
	Kind string `json:"kind,omitempty"`
	// Sockets per deployment (default 6).
	Sockets int `json:"sockets,omitempty"`
	// EmptyTTL is how long a deployment without sessions lives (default 10 min).
	EmptyTTL Duration `json:"empty_ttl,omitempty"`
	// BootTime, if set, overrides Config.BootTime for this version.
	BootTime *Duration `json:"boot_time,omitempty"`
	// Ports of the game server (default one UDP port named "server"). The simulator gives each
	// deployment a free loopback port per entry and uses it as both internal and external
	// port; Port is only reported in the app version.
	Ports []PortConfig `json:"ports,omitempty"`
	// Envs are extra environment variables for the game server.
	Envs map[string]string `json:"envs,omitempty"`
	// ReqCPU (1024 = 1 vCPU) and ReqMemory (MB) are reported in the app version and the
	// environment (defaults 256 and 256).
	ReqCPU    int `json:"req_cpu,omitempty"`
	ReqMemory int `json:"req_memory,omitempty"`
}

// PortConfig is one port of an app version.
type PortConfig struct {
	Name string `json:"name"`
	// Port is the nominal internal port (default 6420).
	Port int `json:"port,omitempty"`
	// Protocol is UDP (default), TCP, TCP/UDP, HTTP, HTTPS, WS or WSS.
	Protocol string `json:"protocol,omitempty"`
}

// LoadConfigFile reads a JSON config file. Unknown fields are an error, so typos show.
func LoadConfigFile(path string) (Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("edgegapsim: read config: %w", err)
	}
	return parseConfig(data)
}

// parseConfig decodes a JSON config (the format of LoadConfigFile).
func parseConfig(data []byte) (Config, error) {
	var c Config
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("edgegapsim: parse config: %w", err)
	}
	return c, nil
}

// defaultLocation is the deployment location used when Config.Location is nil.
func defaultLocation() edgegap.DeploymentLocation {
	return edgegap.DeploymentLocation{City: "Montreal", Country: "Canada",
		Continent: "North America", AdministrativeDivision: "Quebec", Timezone: "Eastern Time",
		Latitude: 45.513707, Longitude: -73.619073}
}

// withDefaults returns c with defaults filled in, or an error if c is unusable.
func (c Config) withDefaults() (Config, error) {
	if len(c.APIKeys) == 0 {
		return c, errors.New("edgegapsim: at least one API key is required")
	}
	for _, k := range c.APIKeys {
		if k == "" {
			return c, errors.New("edgegapsim: empty API key")
		}
	}
	if c.PublicIP == "" {
		c.PublicIP = DefaultPublicIP
	}
	if _, err := netip.ParseAddr(c.PublicIP); err != nil {
		return c, fmt.Errorf("edgegapsim: public IP must be an IP literal: %w", err)
	}
	if c.FQDN == "" {
		c.FQDN = DefaultFQDN
	}
	if c.Location == nil {
		l := defaultLocation()
		c.Location = &l
	}
	if c.BootTime == 0 {
		c.BootTime = Duration(DefaultBootTime)
	}
	if c.BootTime < 0 {
		c.BootTime = 0 // negative: instant
	}
	if c.BootJitter == 0 {
		c.BootJitter = Duration(DefaultBootJitter)
	}
	if c.BootJitter < 0 {
		c.BootJitter = 0
	}
	if c.WebhookTimeout <= 0 {
		c.WebhookTimeout = Duration(DefaultWebhookTimeout)
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HTTPClient == nil {
		c.HTTPClient = newWebhookClient()
	}
	c.BaseURL = strings.TrimRight(c.BaseURL, "/")
	apps := make([]AppConfig, 0, len(c.Apps))
	for _, a := range c.Apps {
		a, err := a.withDefaults()
		if err != nil {
			return c, err
		}
		apps = append(apps, a)
	}
	c.Apps = apps
	return c, nil
}

func (a AppConfig) withDefaults() (AppConfig, error) {
	if a.Name == "" {
		return a, errors.New("edgegapsim: app without name")
	}
	if a.Active == nil {
		a.Active = edgegap.Ptr(true)
	}
	vs := make([]VersionConfig, 0, len(a.Versions))
	seen := map[string]bool{}
	for _, v := range a.Versions {
		if v.Name == "" {
			return a, fmt.Errorf("edgegapsim: app %q: version without name", a.Name)
		}
		if seen[v.Name] {
			return a, fmt.Errorf("edgegapsim: app %q: duplicate version %q", a.Name, v.Name)
		}
		seen[v.Name] = true
		if v.Active == nil {
			v.Active = edgegap.Ptr(true)
		}
		switch {
		case v.Kind == "":
			v.Kind = edgegap.SessionKindSeat
		case strings.EqualFold(v.Kind, edgegap.SessionKindSeat):
			v.Kind = edgegap.SessionKindSeat
		case strings.EqualFold(v.Kind, edgegap.SessionKindMatch):
			v.Kind = edgegap.SessionKindMatch
		default:
			return a, fmt.Errorf("edgegapsim: app %q version %q: kind %q is not Seat or Match", a.Name, v.Name, v.Kind)
		}
		if v.Sockets <= 0 {
			v.Sockets = DefaultSockets
		}
		if v.EmptyTTL <= 0 {
			v.EmptyTTL = Duration(DefaultEmptyTTL)
		}
		if v.ReqCPU <= 0 {
			v.ReqCPU = 256
		}
		if v.ReqMemory <= 0 {
			v.ReqMemory = 256
		}
		if len(v.Ports) == 0 {
			v.Ports = []PortConfig{{Name: DefaultPortName, Port: DefaultPort, Protocol: DefaultPortProtocol}}
		}
		ports := make([]PortConfig, 0, len(v.Ports))
		names := map[string]bool{}
		for _, p := range v.Ports {
			if p.Port == 0 {
				p.Port = DefaultPort
			}
			if p.Name == "" {
				p.Name = fmt.Sprint(p.Port)
			}
			if names[p.Name] {
				return a, fmt.Errorf("edgegapsim: app %q version %q: duplicate port name %q", a.Name, v.Name, p.Name)
			}
			names[p.Name] = true
			if p.Protocol == "" {
				p.Protocol = DefaultPortProtocol
			}
			p.Protocol = strings.ToUpper(p.Protocol)
			switch p.Protocol {
			case "UDP", "TCP", "TCP/UDP", "HTTP", "HTTPS", "WS", "WSS":
			default:
				return a, fmt.Errorf("edgegapsim: app %q version %q: unknown protocol %q", a.Name, v.Name, p.Protocol)
			}
			ports = append(ports, p)
		}
		v.Ports = ports
		vs = append(vs, v)
	}
	a.Versions = vs
	return a, nil
}
