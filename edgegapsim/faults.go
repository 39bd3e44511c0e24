package edgegapsim

import "github.com/bevygap-go/bevygap/edgegap"

// AllEndpoints is the key of Faults.Endpoints that applies to every endpoint without an entry
// of its own.
const AllEndpoints edgegap.Endpoint = "*"

// Faults is the fault injection setting. It can be set in Config, replaced at run time with
// Simulator.SetFaults, or through the admin API (PUT /admin/faults with this JSON).
type Faults struct {
	// Endpoints holds faults per API endpoint (edgegap.Endpoint names such as
	// "session_create"); the key "*" applies to endpoints without an entry of their own.
	Endpoints map[edgegap.Endpoint]EndpointFaults `json:"endpoints,omitempty"`
	// BootFailureRate is the probability that a new deployment ends in Status.ERROR instead of
	// becoming ready.
	BootFailureRate float64 `json:"boot_failure_rate,omitempty"`
	// NeverReadyRate is the probability that a new deployment stays in Status.DEPLOYING forever.
	NeverReadyRate float64 `json:"never_ready_rate,omitempty"`
	// WebhookLossRate is the probability that a session webhook is silently not sent.
	WebhookLossRate float64 `json:"webhook_loss_rate,omitempty"`
}

// EndpointFaults are the faults of one endpoint.
type EndpointFaults struct {
	// ErrorRate is the probability of answering with Status instead of handling the call.
	ErrorRate float64 `json:"error_rate,omitempty"`
	// FailNext makes the next FailNext calls fail with Status (deterministic; counts down).
	FailNext int `json:"fail_next,omitempty"`
	// Status is the injected HTTP status (default 503): e.g. 500, 503, 409, 429.
	Status int `json:"status,omitempty"`
	// RetryAfterSeconds, if > 0, is sent as Retry-After with the injected error (429 gets 1 s
	// when unset).
	RetryAfterSeconds int `json:"retry_after_seconds,omitempty"`
	// Latency is added (in real time) before the call is answered.
	Latency Duration `json:"latency,omitempty"`
}

// clone returns a deep copy of f.
func (f Faults) clone() Faults {
	out := f
	if f.Endpoints != nil {
		out.Endpoints = make(map[edgegap.Endpoint]EndpointFaults, len(f.Endpoints))
		for k, v := range f.Endpoints {
			out.Endpoints[k] = v
		}
	}
	return out
}

// forEndpoint returns the faults that apply to e and the key they are stored under.
func (f Faults) forEndpoint(e edgegap.Endpoint) (EndpointFaults, edgegap.Endpoint, bool) {
	if ef, ok := f.Endpoints[e]; ok {
		return ef, e, true
	}
	if ef, ok := f.Endpoints[AllEndpoints]; ok {
		return ef, AllEndpoints, true
	}
	return EndpointFaults{}, "", false
}
