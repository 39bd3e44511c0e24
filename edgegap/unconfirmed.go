package edgegap

import "strings"

// This file gathers every Edgegap behaviour that is a best guess rather than a confirmed fact
// (see "UNCONFIRMED" in /work/shared/edgegap-api.md). The client and the simulator both take
// these values from here, so a correction after checking the live API is a one-file change.

// Session status strings as returned by GET /v1/session/{id}.
//
// Confirmed: "Status.READY". UNCONFIRMED: the others (Edgegap's docs only name the concepts
// "Linked", "Unprocessable" and "Error").
const (
	SessionStatusSeeking       = "Status.SEEKING"
	SessionStatusLinked        = "Status.LINKED"
	SessionStatusReady         = "Status.READY"
	SessionStatusUnprocessable = "Status.UNPROCESSABLE"
	SessionStatusError         = "Status.ERROR"
)

// Deployment status strings (Deployment.Status). Confirmed in Edgegap docs: SEEKING, DEPLOYING,
// READY; UNCONFIRMED (third-party client): INITIALIZING, SEEKED, SCANNING, TERMINATED, ERROR.
const (
	DeploymentStatusInitializing = "Status.INITIALIZING"
	DeploymentStatusSeeking      = "Status.SEEKING"
	DeploymentStatusSeeked       = "Status.SEEKED"
	DeploymentStatusScanning     = "Status.SCANNING"
	DeploymentStatusDeploying    = "Status.DEPLOYING"
	DeploymentStatusReady        = "Status.READY"
	DeploymentStatusTerminated   = "Status.TERMINATED"
	DeploymentStatusError        = "Status.ERROR"
)

// WebhookStatus converts a GET-style session status ("Status.READY") into the form seen in the
// captured webhook body ("Ready"). Confirmed: "Ready". UNCONFIRMED: "Linked", "Error",
// "Unprocessable", "Seeking" (same rule applied).
func WebhookStatus(getStatus string) string {
	s := normalizeStatus(getStatus)
	if s == "" {
		return ""
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// TimestampLayout is the layout of Edgegap's create_time / last_updated strings.
// UNCONFIRMED: taken from documentation examples ("2026-02-23 20:01:36.893859", UTC).
const TimestampLayout = "2006-01-02 15:04:05.000000"

// Error messages the simulator answers with. Wording UNCONFIRMED except "instance already
// terminated" (the text bevygap logs for a 410).
const (
	MessageUnauthorized       = "Invalid token"
	MessageSessionNotFound    = "Session not found"
	MessageTerminated         = "instance already terminated"
	MessageAppNotFound        = "App not found"
	MessageVersionNotFound    = "App version not found"
	MessageVersionInactive    = "App version is not active"
	MessageAppInactive        = "App is not active"
	MessageNoCapacity         = "Couldn't Allocate Server"
	MessageRateLimited        = "Too Many Requests"
	MessageDeploymentNotFound = "Deployment not found"
	MessageSessionDeleted     = "Instance deleted"
	MessageSelfStopped        = "Self Stop Deployment Requested"
)

// HTTP status codes for the cases whose code is not confirmed.
const (
	// StatusCreated is the success code of POST /v1/session. UNCONFIRMED: 200 or 201; the
	// client accepts any 2xx.
	StatusCreated = 200
	// StatusUnknownAppOnCreate answers a session create for an unknown app or version.
	// UNCONFIRMED: 400 (typed errors of session create are 400/401/409 only).
	StatusUnknownAppOnCreate = 400
	// StatusNoCapacity answers a session create when no deployment can be allocated (free tier
	// limit reached). UNCONFIRMED: 409.
	StatusNoCapacity = 409
	// StatusSessionGone answers GET/DELETE of a session whose deployment was terminated.
	// Confirmed for DELETE (410); UNCONFIRMED for GET.
	StatusSessionGone = 410
)

// SessionListPath is the path of the session list. Confirmed by the generated client; its
// pagination parameters (page, limit) are UNCONFIRMED for this route.
const SessionListPath = "/v1/sessions"

// Behavioural guesses of the simulator (package edgegapsim), listed here so that all
// UNCONFIRMED points are found in one file:
//
//   - A session create without version_name uses the app's most recently added active version
//     (Edgegap's deploy endpoint documents "the last version created"; sessions: UNCONFIRMED).
//   - A session linked to a still-booting deployment reports SessionStatusLinked with
//     linked=true, ready=false and the deployment embedded (ports already known).
//   - Webhooks: one POST when linked to a booting deployment ("Linked"), one when ready
//     ("Ready"; only this one when linked to a ready deployment), one on error ("Error"); body
//     SessionWebhook, Content-Type application/json, no signature, no retry.
//   - Seat sessions take one socket per user (len(ip_list), at least 1); Match sessions one
//     socket per session.
//   - GET of a session whose deployment was terminated answers StatusSessionGone (410), like
//     DELETE does; a deleted session answers 404.
//   - Session list pagination: page/limit query parameters, limit default 20, maximum 100.

// Session ownership in GET /v1/sessions: the entries are the SessionContext model, whose
// optional webhook_url field (also seen in a captured webhook body) is taken to echo the
// webhook_url given at POST /v1/session. UNCONFIRMED for the list endpoint on the live API. The
// matchmaker's reconciliation relies on it to recognise its own sessions; should the live list
// omit it, reconciliation deletes nothing (the safe failure), and the simulator echoes it.
