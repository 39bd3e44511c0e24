// Package match holds the match queues of bevygap-go's play-together extension: their
// configuration (sizes, a widening numeric window, properties that must be equal, relaxation
// and wait limits, session kind, backfill) and the matching algorithm, [Form].
//
// The package is pure: no NATS, no clock, no goroutines. The matchmaker keeps the waiting
// tickets (in JetStream) and calls [Form] with the tickets of one queue and the current time;
// Form answers which tickets make a match, which waited too long and which no longer fit the
// queue. The same input always gives the same output.
//
// A queue file:
//
//	{"queues": [
//	  {"name": "duo",  "min": 2, "max": 2, "kind": "match", "wait_limit": "2m"},
//	  {"name": "room", "min": 2, "max": 4, "relax_after": "10s", "relaxed_min": 1, "backfill": true},
//	  {"name": "ranked", "min": 4, "max": 8, "multiple": 2,
//	   "window": {"prop": "skill", "initial": 100, "widen_per_sec": 20, "max": 800, "lo": 0, "hi": 5000},
//	   "equal": ["mode"], "wait_limit": "3m"}
//	]}
//
// See docs/match-queues.md for every field and the algorithm.
package match
