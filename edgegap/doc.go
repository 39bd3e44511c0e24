// Package edgegap is a typed client of the Edgegap REST API (v1) as used by bevygap, plus the
// in-container side of an Edgegap deployment (the ARBITRIUM_* environment, the context API and
// self-stop).
//
// The same types describe the JSON of the real API and of the local simulator in package
// edgegapsim, so everything tested against the simulator holds for the real service as far as
// the documented contract goes. Behaviour that is a best guess (status strings, error wording,
// some status codes) lives in unconfirmed.go.
//
// Typical use by a matchmaker:
//
//	c := edgegap.NewClient(os.Getenv(edgegap.EnvAPIURL), os.Getenv(edgegap.EnvAPIKey))
//	created, err := c.CreateSession(ctx, edgegap.SessionCreateRequest{
//		AppName: "spacepit_server", IPList: []string{clientIP}, WebhookURL: hook})
//	...
//	s, err := c.GetSession(ctx, created.SessionID)
//	if s.Ready { addr, err := s.Endpoint("") ... } // netip.AddrPort of the game server
//	...
//	if _, err := c.DeleteSession(ctx, id); err != nil && !errors.Is(err, edgegap.ErrNotFound) { ... }
//
// Inside a deployment, ArbitriumFromEnv reads and checks the ARBITRIUM_* environment (one
// *EnvError naming every missing or malformed variable); package gameserver builds on it.
//
// Errors from the API are *APIError values carrying the HTTP status and Edgegap's message; use
// errors.Is with ErrNotFound (404/410), ErrUnauthorized, ErrConflict, ErrRateLimited,
// ErrServer, ErrBadRequest, and errors.As for the *APIError itself.
//
// Every HTTP attempt is reported to the hook of WithObserver as a CallEvent (endpoint, status,
// Outcome, attempt number); the matchmaker feeds its Prometheus counter from it.
package edgegap
