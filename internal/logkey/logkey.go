// Package logkey names the structured-log attributes that more than one service writes, so that
// an operator can search every service's logs with one key (session_id=…, err=…).
package logkey

// Log attribute keys shared by every service.
const (
	Err        = "err"        // the error that made the line (never "error" or "cause")
	SessionID  = "session_id" // an Edgegap session id (never "session")
	RequestID  = "request_id" // an Edgegap deployment request id
	ClientID   = "client_id"  // a netcode client id
	ClientIP   = "client_ip"  // the player's IP address
	Game       = "game"       // a game (Edgegap app) name
	Version    = "version"    // a game (Edgegap app) version name
	Deployment = "deployment" // a deployment (request id) in the simulator
	Component  = "component"  // the part of a process that logs (httpd, matchmaker, …)
	Subject    = "subject"    // a NATS subject
	Endpoint   = "endpoint"   // an Edgegap API endpoint (edgegap.Endpoint)
	Attempt    = "attempt"    // the number of a try (1 for the first)
	RetryIn    = "retry_in"   // the wait before the next try
	Addr       = "addr"       // a network address a service listens on or dials
)
