// Package matchmaker is bevygap's session service: it turns "client at IP x wants to play" into a
// ready Edgegap session plus a netcode connect token, and makes sure no Edgegap session leaks.
// It is wire-compatible with the Rust bevygap_matchmaker (subjects, buckets, JSON).
//
// # Requests
//
// Two NATS entry points share one flow:
//
//	session.gensession                     NATS micro service "gensession", group "session",
//	  {"client_ip":"1.2.3.4"}  ──►         queue group "session_queue": one reply, or the service
//	                                       error headers Nats-Service-Error / -Code (400, 401, 403,
//	                                       409, 429, 502, 503, 504)
//	matchmaker.request.<app>.<version>     queue group "matchmaker_request_queue.<app>.<version>"
//	  {"client_ip":"…"}  ──►               (only this matchmaker's own game): the reply inbox
//	                                       gets "Acknowledged", {"SessionRequestAccepted":id},
//	                                       {"ProgressReport":"…"}…, {"SessionReady":{…}} or
//	                                       {"Error":[code,"msg"]}, then an empty message.
//
// Requests for games nobody serves get NATS "no responders". Config.AnswerUnknownGames adds a
// matchmaker.request.*.* subscription (own queue group) answering other games with 404.
//
// # Flow of one request
//
//	admission (≤ MaxConcurrentCreates setups at once; FIFO queue, position as ProgressReport)
//	  │
//	  ▼
//	POST /v1/session {app_name, ip_list:[client ip], webhook_url?}
//	  │ session id
//	  ▼
//	unclaimed_sessions[id] = id      ◄── before anything else can fail: from here on a crash
//	  │                                  leaves an entry that every reaper can find
//	  ▼
//	wait for readiness ◄── webhook.* (Edgegap → webhook sink → NATS; every matchmaker hears it
//	  │                    and routes it to the waiter that owns the session)
//	  │                ◄── fallback GET /v1/session/{id}: with healthy webhooks an early check at
//	  │                    min(5 s, 10 %) only if no webhook (not even "Linked") came, then 60/80/95 %
//	  │                    of ReadinessLimit; without webhooks immediately, then 0.5 s doubling to 3 s
//	  │ ready (or: timeout → 504, session queued for deletion)
//	  ▼
//	port (PortName or first by name), cert digest: cert_digests[<public ip>.<request id>]
//	  (Go game servers' own key), else cert_digests[<public ip>] (the Rust plugin's key); a
//	  fresh deployment's are briefly watched if missing
//	  ▼
//	mint token (random u64 client id, server address = public ip:port)
//	  ▼
//	sessions_ly2eg[client id] = id, sessions_eg2ly[id] = client id  ──►  reply
//
// With a session webhook and a 30 s boot, a granted session costs 3 Edgegap calls in total:
// create, one GET after the "Ready" webhook, and the final DELETE (the Rust matchmaker polled
// every 200 ms: ~150 GETs).
//
// # Session lifecycle (zero leaks)
//
//   - Active-connection watcher: a put in active_connections (game server: player connected)
//     claims the session (removed from unclaimed_sessions); a delete or purge (player left)
//     queues the session's deletion.
//   - Unclaimed reaper: a watch on unclaimed_sessions feeds an in-memory deadline heap; an
//     entry not rewritten for ReadinessLimit + ClaimGrace is queued for deletion (unless an
//     active connection exists after all). No periodic key listing.
//   - Delete worker: the durable pull consumer api-deleter-1 of DELETE_SESSION_STREAM calls
//     DELETE /v1/session/{id}; 2xx, 404 and 410 ack; anything else is redelivered with
//     exponential backoff, forever (reported as stuck after DeleteStuckAfter attempts).
//     Enqueues carry a message id naming the session's incarnation (the delete marker or
//     unclaimed entry revision), so reapers on several matchmakers queue a session once while
//     a reused session id is queued again; a deletion queued before the id was reused is not
//     executed. Once a session is gone, the active_connections delete marker that called for
//     it is purged, so a restarted matchmaker replays only deletions not done yet.
//   - Reconciliation: every ReconcileInterval the account's sessions are listed; one of ours
//     (webhook_url equal to SessionWebhookURL; without one, reconciliation is off) that no
//     bucket knows for longer than ReadinessLimit + ClaimGrace is queued for deletion (covers
//     a crash between Edgegap's create and the unclaimed_sessions write, and a create that
//     failed on our side although Edgegap created the session).
//   - Dead game servers (liveness.go): a claimed session whose game server died without
//     removing its active_connections key is deleted on Edgegap's "Error" webhook (confirmed
//     with a GET) or when reconciliation finds it in error or gone; the stale key is purged.
//   - Delete queue per Edgegap account: the consumer records the account's fingerprint, and a
//     matchmaker of another account refuses to start on it (bus.Buckets.DeleteConsumerFor).
//   - KV watches start again as soon as the NATS connection reconnects.
//   - Shutdown: subscriptions stop first, in-flight requests get ShutdownTimeout to finish and
//     are then failed with 503; their sessions are queued for deletion (or left to the
//     reapers of the surviving matchmakers).
//
// Several matchmakers on one NATS share the load through the queue groups and the shared
// durable consumer; nothing is done twice.
package matchmaker
