package edgegap

import (
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"strings"
)

// AppendJSON appends the JSON encoding of v to dst exactly as json.Marshal encodes it (the
// same bytes, or json.Marshal's error). The session models the simulator serves on every grant
// (Session, SessionCreated, SessionSummary, by value or pointer) and the create the client
// sends (SessionCreateRequest) are written without
// reflection; anything else — and a model holding a value the fast writer leaves to
// encoding/json (a selector list, a NaN) — is encoded by json.Marshal. FuzzAppendJSON compares
// the two.
func AppendJSON(dst []byte, v any) ([]byte, error) {
	var w jsonWriter
	w.b = dst
	switch m := v.(type) {
	case *Session:
		writeOrNull(&w, m, w.session)
	case Session:
		w.session(&m)
	case *SessionCreated:
		writeOrNull(&w, m, w.sessionCreated)
	case SessionCreated:
		w.sessionCreated(&m)
	case *SessionSummary:
		writeOrNull(&w, m, w.sessionSummary)
	case SessionSummary:
		w.sessionSummary(&m)
	case SessionCreateRequest:
		w.sessionCreateRequest(&m)
	default:
		w.bad = true
	}
	if !w.bad {
		return w.b, nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return dst, err
	}
	return append(dst, data...), nil
}

// writeOrNull writes m with write, or null for a nil pointer (as json.Marshal does).
func writeOrNull[T any](w *jsonWriter, m *T, write func(*T)) {
	if m == nil {
		w.b = append(w.b, "null"...)
		return
	}
	write(m)
}

// jsonWriter appends JSON to b; bad reports a value it leaves to encoding/json.
type jsonWriter struct {
	b   []byte
	bad bool
}

// str appends s as json.Marshal does: printable ASCII other than '"', '\', '<', '>' and '&'
// as it is, anything else through json.Marshal itself.
func (w *jsonWriter) str(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x80 || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			data, _ := json.Marshal(s) // a string always encodes
			w.b = append(w.b, data...)
			return
		}
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, s...)
	w.b = append(w.b, '"')
}

// key appends a member name (a literal of the models: no escaping needed) and its colon,
// after a comma unless first.
func (w *jsonWriter) key(first bool, name string) {
	if !first {
		w.b = append(w.b, ',')
	}
	w.b = append(w.b, '"')
	w.b = append(w.b, name...)
	w.b = append(w.b, '"', ':')
}

func (w *jsonWriter) boolean(v bool) { w.b = strconv.AppendBool(w.b, v) }

func (w *jsonWriter) integer(v int) { w.b = strconv.AppendInt(w.b, int64(v), 10) }

// float appends f as encoding/json writes a float64; NaN and infinities (which json.Marshal
// refuses) are left to it.
func (w *jsonWriter) float(f float64) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		w.bad = true
		return
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	w.b = strconv.AppendFloat(w.b, f, format, -1, 64)
	if format == 'e' { // e-09 → e-9, as encoding/json does
		n := len(w.b)
		if n >= 4 && w.b[n-4] == 'e' && w.b[n-3] == '-' && w.b[n-2] == '0' {
			w.b[n-2] = w.b[n-1]
			w.b = w.b[:n-1]
		}
	}
}

// Optional members (omitempty pointers): written only when set.

func (w *jsonWriter) optStr(name string, v *string) {
	if v != nil {
		w.key(false, name)
		w.str(*v)
	}
}

func (w *jsonWriter) optInt(first *bool, name string, v *int) {
	if v != nil {
		w.key(*first, name)
		*first = false
		w.integer(*v)
	}
}

// sessionHead opens the object of a session or a session summary (the webhook) with the
// members both start with, in their declared order.
func (w *jsonWriter) sessionHead(id string, customID *string, status string, ready, linked bool, kind string, userCount int) {
	w.b = append(w.b, `{"session_id":`...)
	w.str(id)
	w.optStr("custom_id", customID)
	w.key(false, "status")
	w.str(status)
	w.key(false, "ready")
	w.boolean(ready)
	w.key(false, "linked")
	w.boolean(linked)
	w.key(false, "kind")
	w.str(kind)
	w.key(false, "user_count")
	w.integer(userCount)
}

func (w *jsonWriter) session(s *Session) {
	w.sessionHead(s.SessionID, s.CustomID, s.Status, s.Ready, s.Linked, s.Kind, s.UserCount)
	w.key(false, "app_version")
	w.integer(s.AppVersion)
	w.key(false, "create_time")
	w.str(s.CreateTime)
	w.key(false, "elapsed")
	w.integer(s.Elapsed)
	w.optStr("error", s.Error)
	w.users("session_users", s.SessionUsers)
	w.users("session_ips", s.SessionIPs)
	if s.Deployment != nil {
		w.key(false, "deployment")
		w.deployment(s.Deployment)
	}
	w.optStr("webhook_url", s.WebhookURL)
	w.b = append(w.b, '}')
}

func (w *jsonWriter) users(name string, users []SessionUser) {
	if len(users) == 0 {
		return
	}
	w.key(false, name)
	w.b = append(w.b, '[')
	for i := range users {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		u := &users[i]
		w.b = append(w.b, `{"ip":`...)
		w.str(u.IP)
		if u.Latitude != nil {
			w.key(false, "latitude")
			w.float(*u.Latitude)
		}
		if u.Longitude != nil {
			w.key(false, "longitude")
			w.float(*u.Longitude)
		}
		w.b = append(w.b, '}')
	}
	w.b = append(w.b, ']')
}

func (w *jsonWriter) deployment(d *Deployment) {
	w.b = append(w.b, `{"request_id":`...)
	w.str(d.RequestID)
	w.key(false, "public_ip")
	w.str(d.PublicIP)
	w.key(false, "status")
	w.str(d.Status)
	w.key(false, "ready")
	w.boolean(d.Ready)
	w.key(false, "whitelisting_active")
	w.boolean(d.WhitelistingActive)
	w.key(false, "fqdn")
	w.str(d.FQDN)
	if len(d.Ports) > 0 {
		w.key(false, "ports")
		w.ports(d.Ports)
	}
	if l := d.Location; l != nil {
		w.key(false, "location")
		w.b = append(w.b, `{"city":`...)
		w.str(l.City)
		w.key(false, "country")
		w.str(l.Country)
		w.key(false, "continent")
		w.str(l.Continent)
		w.key(false, "administrative_division")
		w.str(l.AdministrativeDivision)
		w.key(false, "timezone")
		w.str(l.Timezone)
		w.key(false, "latitude")
		w.float(l.Latitude)
		w.key(false, "longitude")
		w.float(l.Longitude)
		w.b = append(w.b, '}')
	}
	if len(d.Tags) > 0 {
		w.key(false, "tags")
		w.b = append(w.b, '[')
		for i, t := range d.Tags {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.str(t)
		}
		w.b = append(w.b, ']')
	}
	first := false
	w.optInt(&first, "sockets", d.Sockets)
	w.optInt(&first, "sockets_usage", d.SocketsUsage)
	if d.IsJoinableBySession != nil {
		w.key(false, "is_joinable_by_session")
		w.boolean(*d.IsJoinableBySession)
	}
	w.b = append(w.b, '}')
}

// ports appends the port map with its names sorted, as encoding/json orders map keys.
func (w *jsonWriter) ports(ports map[string]PortMapping) {
	var buf [8]string
	names := buf[:0]
	for name := range ports {
		names = append(names, name)
	}
	slices.SortFunc(names, strings.Compare)
	w.b = append(w.b, '{')
	for i, name := range names {
		if i > 0 {
			w.b = append(w.b, ',')
		}
		w.str(name)
		w.b = append(w.b, ':')
		p := ports[name]
		first := true
		w.b = append(w.b, '{')
		w.optInt(&first, "external", p.External)
		w.optInt(&first, "internal", p.Internal)
		if p.Protocol != nil {
			w.key(first, "protocol")
			first = false
			w.str(*p.Protocol)
		}
		if p.Name != nil {
			w.key(first, "name")
			first = false
			w.str(*p.Name)
		}
		if p.TLSUpgrade != nil {
			w.key(first, "tls_upgrade")
			first = false
			w.boolean(*p.TLSUpgrade)
		}
		if p.Link != nil {
			w.key(first, "link")
			first = false
			w.str(*p.Link)
		}
		w.optInt(&first, "proxy", p.Proxy)
		w.b = append(w.b, '}')
	}
	w.b = append(w.b, '}')
}

func (w *jsonWriter) sessionCreated(s *SessionCreated) {
	if len(s.Selectors) > 0 {
		w.bad = true // encoding/json's business
		return
	}
	w.b = append(w.b, `{"session_id":`...)
	w.str(s.SessionID)
	w.optStr("custom_id", s.CustomID)
	w.key(false, "app")
	w.str(s.App)
	w.key(false, "version")
	w.str(s.Version)
	w.optStr("deployment_request_id", s.DeploymentRequestID)
	w.optStr("webhook_url", s.WebhookURL)
	w.b = append(w.b, '}')
}

func (w *jsonWriter) sessionSummary(s *SessionSummary) {
	w.sessionHead(s.SessionID, s.CustomID, s.Status, s.Ready, s.Linked, s.Kind, s.UserCount)
	w.optStr("deployment_request_id", s.DeploymentRequestID)
	w.optStr("webhook_url", s.WebhookURL)
	w.b = append(w.b, '}')
}

// optStrValue appends an omitempty string member when it is not empty.
func (w *jsonWriter) optStrValue(name, v string) {
	if v != "" {
		w.key(false, name)
		w.str(v)
	}
}

// sessionCreateRequest writes a create with the members the matchmaker sets; geo IPs, a
// location, selectors or filters are left to encoding/json.
func (w *jsonWriter) sessionCreateRequest(r *SessionCreateRequest) {
	if len(r.GeoIPList) > 0 || r.Location != nil || len(r.Selectors) > 0 || len(r.Filters) > 0 {
		w.bad = true
		return
	}
	w.b = append(w.b, `{"app_name":`...)
	w.str(r.AppName)
	w.optStrValue("version_name", r.VersionName)
	if len(r.IPList) > 0 {
		w.key(false, "ip_list")
		w.b = append(w.b, '[')
		for i, ip := range r.IPList {
			if i > 0 {
				w.b = append(w.b, ',')
			}
			w.str(ip)
		}
		w.b = append(w.b, ']')
	}
	w.optStrValue("deployment_request_id", r.DeploymentRequestID)
	w.optStrValue("city", r.City)
	w.optStrValue("country", r.Country)
	w.optStrValue("continent", r.Continent)
	w.optStrValue("administrative_division", r.AdministrativeDivision)
	w.optStrValue("region", r.Region)
	w.optStrValue("webhook_url", r.WebhookURL)
	if r.SkipTelemetry != nil {
		w.key(false, "skip_telemetry")
		w.boolean(*r.SkipTelemetry)
	}
	w.b = append(w.b, '}')
}
