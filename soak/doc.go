// Package soak is bevygap's load and chaos driver: it plays many players against a running
// stack (bevygap dev, bevygap cluster up, or a deployment) through its HTTP front doors, fires
// faults on a schedule, watches the Edgegap simulator's session list, and reports what was
// lost. `bevygap soak` runs it; the chaos tests of deploy/ use it against the multi-process
// topology (internal/cluster). See docs/soak.md.
//
// A player requests a session over the WebSocket route or the chunked HTTP route (client
// SDK), connects to the game server with the connect token over netcode, plays for a random
// time and disconnects. Configurable shares of players instead
//
//   - abandon: close the stream right after "Acknowledged", while the session is being made
//     (or, abandon-accepted, right after "SessionRequestAccepted", while its server boots);
//   - never connect: take the token and never use it;
//   - vanish: connect, play, then stop sending without a disconnect (their packets go through
//     a small UDP relay that is shut down), so the game server only notices by its timeout.
//
// Every player asks with its own client IP (from 198.18.0.0/15, the benchmarking range), which
// the matchmaker puts in the Edgegap session's ip_list: that is how each session the simulator
// lists is tied to the player that caused it, including the sessions of abandoned requests,
// which their players never learn the id of.
//
// The [Report] counts requests, grants and refusals by class, the time to ready (p50, p99)
// without faults and during each fault, the sessions alive at the end, leaked sessions (alive
// after the grace period), sessions deleted while their player was still connected, players
// disconnected by the server before they chose to leave, and how long the sessions of
// abandoned requests, unused tokens and vanished players lived.
package soak
