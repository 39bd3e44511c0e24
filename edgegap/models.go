package edgegap

import (
	"encoding/json"
	"errors"
	"fmt"
)

// The models below mirror Edgegap's v1 OpenAPI schemas (as generated into the Rust crate
// edgegap_async, which bevygap uses). A field that Edgegap's schema marks required is a plain
// value without omitempty — the simulator always emits it, because the strict Rust client fails
// to decode a response that lacks one. A field that may be absent is a pointer, slice or map
// with omitempty.

// Application is the body of GET /v1/app/{app_name}.
type Application struct {
	Name                   string  `json:"name"`
	IsActive               bool    `json:"is_active"`
	IsTelemetryAgentActive *bool   `json:"is_telemetry_agent_active,omitempty"`
	Image                  *string `json:"image,omitempty"`
	CreateTime             string  `json:"create_time"`
	LastUpdated            string  `json:"last_updated"`
}

// AppVersion is the body of GET /v1/app/{app_name}/version/{version_name} (Edgegap's
// AppVersionPayload). Only the fields bevygap and the simulator care about are typed beyond the
// required set; unknown fields are ignored when decoding.
type AppVersion struct {
	Name             string            `json:"name"`
	DockerRepository string            `json:"docker_repository"`
	DockerImage      string            `json:"docker_image"`
	DockerTag        string            `json:"docker_tag"`
	ReqCPU           int               `json:"req_cpu"`
	ReqMemory        int               `json:"req_memory"`
	IsActive         *bool             `json:"is_active,omitempty"`
	MaxDuration      *int              `json:"max_duration,omitempty"`
	TimeToDeploy     *int              `json:"time_to_deploy,omitempty"`
	SessionConfig    *AppSessionConfig `json:"session_config,omitempty"`
	Ports            []AppVersionPort  `json:"ports,omitempty"`
	Envs             []AppVersionEnv   `json:"envs,omitempty"`
	Command          *string           `json:"command,omitempty"`
	Arguments        *string           `json:"arguments,omitempty"`
}

// Active reports whether the version is active; an absent is_active counts as inactive, as in
// bevygap (`is_active.unwrap_or(false)`).
func (v *AppVersion) Active() bool { return v.IsActive != nil && *v.IsActive }

// AppSessionConfig is an app version's session configuration
// (Edgegap's AppVersionCreateSessionConfig).
type AppSessionConfig struct {
	// Kind is "Default", "Seat" or "Match" (see the SessionKind constants).
	Kind string `json:"kind"`
	// Sockets is how many sockets (seats or matches) one deployment offers.
	Sockets int `json:"sockets"`
	// Autodeploy lets a session create start a new deployment when none has a free socket.
	Autodeploy *bool `json:"autodeploy,omitempty"`
	// EmptyTTL is how many minutes a deployment without sessions lives on.
	EmptyTTL *int `json:"empty_ttl,omitempty"`
	// SessionMaxDuration is the maximum session duration in minutes.
	SessionMaxDuration *int `json:"session_max_duration,omitempty"`
}

// Session kinds of AppSessionConfig.Kind and Session.Kind.
const (
	SessionKindDefault = "Default"
	SessionKindSeat    = "Seat"
	SessionKindMatch   = "Match"
)

// AppVersionPort is one port of an app version.
type AppVersionPort struct {
	Port       int     `json:"port"`
	Protocol   string  `json:"protocol"`
	ToCheck    *bool   `json:"to_check,omitempty"`
	TLSUpgrade *bool   `json:"tls_upgrade,omitempty"`
	Name       *string `json:"name,omitempty"`
}

// AppVersionEnv is one environment variable injected into an app version's containers.
type AppVersionEnv struct {
	Key      string `json:"key"`
	Value    string `json:"value"`
	IsHidden *bool  `json:"is_hidden,omitempty"`
}

// SessionCreateRequest is the body of POST /v1/session (Edgegap's SessionModel). Only AppName
// is required; everything else is omitted from the JSON when unset, never sent as null.
type SessionCreateRequest struct {
	AppName                string          `json:"app_name"`
	VersionName            string          `json:"version_name,omitempty"`
	IPList                 []string        `json:"ip_list,omitempty"`
	GeoIPList              []GeoIP         `json:"geo_ip_list,omitempty"`
	DeploymentRequestID    string          `json:"deployment_request_id,omitempty"`
	Location               *LatLon         `json:"location,omitempty"`
	City                   string          `json:"city,omitempty"`
	Country                string          `json:"country,omitempty"`
	Continent              string          `json:"continent,omitempty"`
	AdministrativeDivision string          `json:"administrative_division,omitempty"`
	Region                 string          `json:"region,omitempty"`
	Selectors              []Selector      `json:"selectors,omitempty"`
	WebhookURL             string          `json:"webhook_url,omitempty"`
	Filters                []SessionFilter `json:"filters,omitempty"`
	SkipTelemetry          *bool           `json:"skip_telemetry,omitempty"`
}

// GeoIP is a user IP with its known coordinates.
type GeoIP struct {
	IP        string  `json:"ip"`
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// LatLon is a location given by coordinates.
type LatLon struct {
	Latitude  float64 `json:"latitude"`
	Longitude float64 `json:"longitude"`
}

// Selector picks deployments by tag (and optionally injects an env var).
type Selector struct {
	Tag     string       `json:"tag"`
	TagOnly *bool        `json:"tag_only,omitempty"`
	Env     *SelectorEnv `json:"env,omitempty"`
}

// SelectorEnv is the env part of a Selector.
type SelectorEnv struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// SessionFilter restricts placement; FilterType is "any", "all" or "not".
type SessionFilter struct {
	Field      string   `json:"field"`
	Values     []string `json:"values"`
	FilterType string   `json:"filter_type"`
}

// SessionCreated is the success body of POST /v1/session (Edgegap's SessionRequest).
type SessionCreated struct {
	SessionID           string     `json:"session_id"`
	CustomID            *string    `json:"custom_id,omitempty"`
	App                 string     `json:"app"`
	Version             string     `json:"version"`
	DeploymentRequestID *string    `json:"deployment_request_id,omitempty"`
	Selectors           []Selector `json:"selectors,omitempty"`
	WebhookURL          *string    `json:"webhook_url,omitempty"`
}

// Session is the body of GET /v1/session/{session_id} (Edgegap's SessionGet).
type Session struct {
	SessionID string  `json:"session_id"`
	CustomID  *string `json:"custom_id,omitempty"`
	// Status is e.g. "Status.READY"; compare it with StatusIs, never with ==.
	Status string `json:"status"`
	// Ready is true once the session is linked to a ready deployment.
	Ready bool `json:"ready"`
	// Linked is true once a deployment was chosen for the session.
	Linked    bool   `json:"linked"`
	Kind      string `json:"kind"`
	UserCount int    `json:"user_count"`
	// AppVersion is Edgegap's numeric id of the app version, not its name.
	AppVersion   int           `json:"app_version"`
	CreateTime   string        `json:"create_time"`
	Elapsed      int           `json:"elapsed"`
	Error        *string       `json:"error,omitempty"`
	SessionUsers []SessionUser `json:"session_users,omitempty"`
	SessionIPs   []SessionUser `json:"session_ips,omitempty"`
	// Deployment is nil until the session is linked.
	Deployment *Deployment `json:"deployment,omitempty"`
	WebhookURL *string     `json:"webhook_url,omitempty"`
}

// SessionUser is one user (IP) of a session.
type SessionUser struct {
	IP        string   `json:"ip"`
	Latitude  *float64 `json:"latitude,omitempty"`
	Longitude *float64 `json:"longitude,omitempty"`
}

// Deployment describes a running (or starting) game server. It is embedded in Session and is
// also the body of the in-container context API.
type Deployment struct {
	RequestID string `json:"request_id"`
	// PublicIP is an IP literal (bevygap parses it as an IP address).
	PublicIP            string                 `json:"public_ip"`
	Status              string                 `json:"status"`
	Ready               bool                   `json:"ready"`
	WhitelistingActive  bool                   `json:"whitelisting_active"`
	FQDN                string                 `json:"fqdn"`
	Ports               map[string]PortMapping `json:"ports,omitempty"`
	Location            *DeploymentLocation    `json:"location,omitempty"`
	Tags                []string               `json:"tags,omitempty"`
	Sockets             *int                   `json:"sockets,omitempty"`
	SocketsUsage        *int                   `json:"sockets_usage,omitempty"`
	IsJoinableBySession *bool                  `json:"is_joinable_by_session,omitempty"`
}

// PortMapping is one port of a deployment, keyed by port name in Deployment.Ports. Every field
// is optional in Edgegap's schema.
type PortMapping struct {
	External   *int    `json:"external,omitempty"`
	Internal   *int    `json:"internal,omitempty"`
	Protocol   *string `json:"protocol,omitempty"`
	Name       *string `json:"name,omitempty"`
	TLSUpgrade *bool   `json:"tls_upgrade,omitempty"`
	Link       *string `json:"link,omitempty"`
	Proxy      *int    `json:"proxy,omitempty"`
}

// DeploymentLocation is where a deployment runs. All fields are required.
type DeploymentLocation struct {
	City                   string  `json:"city"`
	Country                string  `json:"country"`
	Continent              string  `json:"continent"`
	AdministrativeDivision string  `json:"administrative_division"`
	Timezone               string  `json:"timezone"`
	Latitude               float64 `json:"latitude"`
	Longitude              float64 `json:"longitude"`
}

// SessionDeleted is the success body of DELETE /v1/session/{session_id}.
type SessionDeleted struct {
	Message   string  `json:"message"`
	SessionID string  `json:"session_id"`
	CustomID  *string `json:"custom_id,omitempty"`
}

// SessionSummary is one session in a list or a webhook (Edgegap's SessionContext).
type SessionSummary struct {
	SessionID           string  `json:"session_id"`
	CustomID            *string `json:"custom_id,omitempty"`
	Status              string  `json:"status"`
	Ready               bool    `json:"ready"`
	Linked              bool    `json:"linked"`
	Kind                string  `json:"kind"`
	UserCount           int     `json:"user_count"`
	DeploymentRequestID *string `json:"deployment_request_id,omitempty"`
	WebhookURL          *string `json:"webhook_url,omitempty"`
}

// SessionWebhook is the JSON body Edgegap POSTs to a session's webhook_url when the session is
// linked/ready, unprocessable or in error. Its Status uses the short form ("Ready"); compare it
// with StatusIs.
type SessionWebhook = SessionSummary

// SessionList is the body of GET /v1/sessions.
type SessionList struct {
	Data       []SessionSummary `json:"data,omitempty"`
	TotalCount *int             `json:"total_count,omitempty"`
	Pagination *Pagination      `json:"pagination,omitempty"`
}

// Pagination is Edgegap's page description on list endpoints.
type Pagination struct {
	Number             int       `json:"number"`
	NextPageNumber     *int      `json:"next_page_number"`
	PreviousPageNumber *int      `json:"previous_page_number"`
	Paginator          Paginator `json:"paginator"`
	HasNext            bool      `json:"has_next"`
	HasPrevious        bool      `json:"has_previous"`
}

// Paginator holds the page count of a Pagination.
type Paginator struct {
	NumPages int `json:"num_pages"`
}

// StopResponse is the body of a deployment stop, including the in-container self-stop
// (Edgegap's Delete model).
type StopResponse struct {
	Message           string          `json:"message"`
	DeploymentSummary json.RawMessage `json:"deployment_summary,omitempty"`
}

// ErrorBody is the JSON body of every Edgegap error response.
type ErrorBody struct {
	Message string `json:"message"`
}

// ParseSessionWebhook decodes a session webhook body. It fails if the JSON is malformed or lacks
// session_id.
func ParseSessionWebhook(body []byte) (SessionWebhook, error) {
	var w SessionWebhook
	if err := decodeJSON(body, &w); err != nil {
		return SessionWebhook{}, fmt.Errorf("edgegap: decode session webhook: %w", err)
	}
	if w.SessionID == "" {
		return SessionWebhook{}, errors.New("edgegap: session webhook without session_id")
	}
	return w, nil
}

// Ptr returns a pointer to v; handy for the optional fields of the models.
func Ptr[T any](v T) *T { return &v }
