package edgegapsim

import (
	"encoding/json"
	"net/netip"
	"sort"
	"strconv"
	"time"

	"github.com/bevygap-go/bevygap/edgegap"
)

func netipParse(s string) (netip.Addr, error) { return netip.ParseAddr(s) }

// timestamp formats t like Edgegap's create_time.
func timestamp(t time.Time) string { return t.UTC().Format(edgegap.TimestampLayout) }

// elapsedSeconds returns whole seconds between t and now, never negative.
func elapsedSeconds(t, now time.Time) int {
	if e := now.Sub(t); e > 0 {
		return int(e / time.Second)
	}
	return 0
}

// deploymentView renders d as Edgegap's Deployment model. Caller holds s.mu.
func (s *Simulator) deploymentView(d *deployment) *edgegap.Deployment {
	ports := make(map[string]edgegap.PortMapping, len(d.ports))
	for name, p := range d.ports {
		ports[name] = edgegap.PortMapping{
			External:   edgegap.Ptr(p.External),
			Internal:   edgegap.Ptr(p.Internal),
			Protocol:   edgegap.Ptr(p.Protocol),
			Name:       edgegap.Ptr(p.Name),
			TLSUpgrade: edgegap.Ptr(false),
			Link:       edgegap.Ptr(s.cfg.FQDN + ":" + strconv.Itoa(p.External)),
		}
	}
	loc := *s.cfg.Location
	return &edgegap.Deployment{
		RequestID:           d.id,
		PublicIP:            s.cfg.PublicIP,
		Status:              d.status,
		Ready:               d.status == edgegap.DeploymentStatusReady,
		WhitelistingActive:  false,
		FQDN:                s.cfg.FQDN,
		Ports:               ports,
		Location:            &loc,
		Tags:                []string{},
		Sockets:             edgegap.Ptr(d.version.cfg.Sockets),
		SocketsUsage:        edgegap.Ptr(d.usage),
		IsJoinableBySession: edgegap.Ptr(joinable(d) && d.usage < d.version.cfg.Sockets),
	}
}

// sessionView renders sess as Edgegap's SessionGet model. Caller holds s.mu.
func (s *Simulator) sessionView(sess *session) *edgegap.Session {
	status, ready, errMsg := sessionStatus(sess)
	users := make([]edgegap.SessionUser, 0, len(sess.users))
	for _, ip := range sess.users {
		users = append(users, edgegap.SessionUser{IP: ip})
	}
	out := &edgegap.Session{
		SessionID:    sess.id,
		Status:       status,
		Ready:        ready,
		Linked:       true,
		Kind:         sess.version.cfg.Kind,
		UserCount:    len(sess.users),
		AppVersion:   sess.version.id,
		CreateTime:   timestamp(sess.created),
		Elapsed:      elapsedSeconds(sess.created, s.clock.Now()),
		Error:        errMsg,
		SessionUsers: users,
		SessionIPs:   users,
		Deployment:   s.deploymentView(sess.dep),
	}
	if sess.webhookURL != "" {
		out.WebhookURL = edgegap.Ptr(sess.webhookURL)
	}
	return out
}

// summaryView renders sess as Edgegap's SessionContext model (list entries, webhooks), with
// status in the given form. Caller holds s.mu.
func (s *Simulator) summaryView(sess *session, webhookForm bool) edgegap.SessionSummary {
	status, ready, _ := sessionStatus(sess)
	if webhookForm {
		status = edgegap.WebhookStatus(status)
	}
	out := edgegap.SessionSummary{
		SessionID:           sess.id,
		Status:              status,
		Ready:               ready,
		Linked:              true,
		Kind:                sess.version.cfg.Kind,
		UserCount:           len(sess.users),
		DeploymentRequestID: edgegap.Ptr(sess.dep.id),
	}
	if sess.webhookURL != "" {
		out.WebhookURL = edgegap.Ptr(sess.webhookURL)
	}
	return out
}

// appView renders an application. Caller holds s.mu.
func (s *Simulator) appView(a *appState) *edgegap.Application {
	return &edgegap.Application{
		Name:                   a.cfg.Name,
		IsActive:               *a.cfg.Active,
		IsTelemetryAgentActive: edgegap.Ptr(false),
		Image:                  edgegap.Ptr(""),
		CreateTime:             timestamp(a.created),
		LastUpdated:            timestamp(a.created),
	}
}

// versionView renders an app version. Caller holds s.mu.
func (s *Simulator) versionView(v *versionState) *edgegap.AppVersion {
	ports := make([]edgegap.AppVersionPort, 0, len(v.cfg.Ports))
	for _, p := range v.cfg.Ports {
		ports = append(ports, edgegap.AppVersionPort{Port: p.Port, Protocol: p.Protocol,
			ToCheck: edgegap.Ptr(false), TLSUpgrade: edgegap.Ptr(false), Name: edgegap.Ptr(p.Name)})
	}
	envs := make([]edgegap.AppVersionEnv, 0, len(v.cfg.Envs))
	for _, k := range sortedKeys(v.cfg.Envs) {
		envs = append(envs, edgegap.AppVersionEnv{Key: k, Value: v.cfg.Envs[k], IsHidden: edgegap.Ptr(false)})
	}
	ttlMin := int(v.cfg.EmptyTTL.D().Minutes())
	return &edgegap.AppVersion{
		Name:             v.cfg.Name,
		DockerRepository: "registry.edgegap.local",
		DockerImage:      "edgegap-sim",
		DockerTag:        v.cfg.Name,
		ReqCPU:           v.cfg.ReqCPU,
		ReqMemory:        v.cfg.ReqMemory,
		IsActive:         edgegap.Ptr(*v.cfg.Active),
		MaxDuration:      edgegap.Ptr(0),
		TimeToDeploy:     edgegap.Ptr(int(s.cfg.BootTime.D().Seconds() + 0.5)),
		SessionConfig: &edgegap.AppSessionConfig{Kind: v.cfg.Kind, Sockets: v.cfg.Sockets,
			Autodeploy: edgegap.Ptr(true), EmptyTTL: edgegap.Ptr(ttlMin)},
		Ports: ports,
		Envs:  envs,
	}
}

// launchSpecLocked builds the environment of d's game server. Caller holds s.mu.
func (s *Simulator) launchSpecLocked(d *deployment) LaunchSpec {
	loc, _ := json.Marshal(s.cfg.Location)
	pm, _ := json.Marshal(edgegap.PortsMappingJSON{Ports: d.ports})
	arb := edgegap.ArbitriumEnv{
		RequestID:          d.id,
		DeleteURL:          s.baseURL + "/v1/self/stop/" + d.id + "/" + strconv.Itoa(d.accessPoint),
		DeleteToken:        d.deleteTok,
		DeploymentLocation: string(loc),
		ContextURL:         s.baseURL + "/v1/context/" + d.id + "/" + strconv.Itoa(d.securityNum),
		ContextToken:       d.contextTok,
		PublicIP:           s.cfg.PublicIP,
		PortsMapping:       string(pm),
	}
	env := map[string]string{}
	for k, v := range d.version.cfg.Envs {
		env[k] = v
	}
	for k, v := range arb.Vars() {
		env[k] = v
	}
	for name, p := range d.ports {
		env[edgegap.PortEnvName(name, "INTERNAL")] = strconv.Itoa(p.Internal)
		env[edgegap.PortEnvName(name, "EXTERNAL")] = strconv.Itoa(p.External)
		env[edgegap.PortEnvName(name, "PROTOCOL")] = p.Protocol
	}
	env[edgegap.EnvHostID] = "edgegap-sim"
	env[edgegap.EnvDeploymentTags] = ""
	env[edgegap.EnvDeploymentVCPU] = strconv.Itoa(d.version.cfg.ReqCPU)
	env[edgegap.EnvDeploymentMemoryMB] = strconv.Itoa(d.version.cfg.ReqMemory)
	ports := make(map[string]edgegap.EnvPort, len(d.ports))
	for k, v := range d.ports {
		ports[k] = v
	}
	return LaunchSpec{RequestID: d.id, App: d.app, Version: d.versionName, Env: env, Ports: ports}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
