// Package gameserver is the SDK a Go game server uses to take part in bevygap: the Go
// counterpart of the Rust crate bevygap_server_plugin, speaking the same NATS subjects and KV
// buckets, so the same matchmaker serves Rust and Go game servers.
//
// An Agent does, for one game server running in an Edgegap deployment:
//
//	boot      read ARBITRIUM_* (EnvFromEnviron: every missing or malformed variable in one error)
//	          GET ARBITRIUM_CONTEXT_URL, header "Authorization: <ARBITRIUM_CONTEXT_TOKEN>"
//	            (timeouts, retries with backoff; a 4xx rejection is a configuration error)
//	          publish the context on gameserver.contexts (compact JSON, sorted keys)
//	          put cert_digests[<public ip>.<request id>] and cert_digests[<public ip>]
//	            = <WebTransport cert digest>   (WebTransport, or CertDigest set)
//	connect   netcode connection request  -> AuthorizeClient: sessions_ly2eg[<client id>]
//	                                         -> session id, or refuse (ErrUnknownClient)
//	          client connected             -> ClientConnected: active_connections[<session id>] = "<client id>"
//	                                         (a session shared by several players: its first one)
//	          client disconnected          -> ClientDisconnected: delete active_connections[<session id>]
//	                                         (a shared session: once its last player left; the
//	                                         matchmaker then deletes the Edgegap session)
//	backfill  players left a match         -> RequestBackfill: request on matchmaker.backfill.<game>.<version>
//	idle      nobody connected for IdleTimeout -> DELETE ARBITRIUM_DELETE_URL once (optional)
//	renew     WebTransport: before the certificate expires, publish the new digest, then serve it
//	stop      delete cert_digests[<public ip>.<request id>]; release cert_digests[<public ip>]
//
// # Transport and certificate
//
// Config.Transport chooses how the game server's netcode server carries packets: UDP (the
// default) or WebTransport, which bevygap's Rust client plugin requires and browsers use. For
// WebTransport the agent owns the server's certificate: a self-signed ECDSA P-256 certificate
// for the public IP, valid 13 days (browsers pin only certificates valid for at most 14), served
// through [Agent.TLSConfig] and renewed 2 days before it expires. Its digest — the SHA-256 of the
// certificate, written as wtransport's Sha256Digest prints it ("ab:cd:…") — goes into the
// cert_digests bucket under two keys (see protocol.CertDigestIPKey and
// protocol.CertDigestDeploymentKey):
//
//	<public ip>               what bevygap_server_plugin writes and the Rust matchmaker reads;
//	                          the newest deployment on an IP wins it
//	<public ip>.<request id>  this deployment's own key, which the Go matchmaker prefers: several
//	                          deployments can share one IP (they differ by port)
//
// A renewal publishes the new digest before the new certificate is served (the IP key only if
// it still holds one of this deployment's digests). When the agent stops it deletes its
// deployment key and releases the IP key: if the key still holds one of its digests, it hands
// it to another live deployment on the same IP (that deployment's key) or deletes it; every
// write of the shared key is a compare-and-set on its revision. The Rust plugin never removes
// its key (bevygap#6); ours only outlives a game server that is killed without a shutdown, and
// then expires with the bucket's 14-day TTL.
//
// Wiring it into package netcode's server:
//
//	srv, err := netcode.NewServer(netcode.ServerConfig{
//		Transport: agent.Transport(), // from Config.Transport
//		TLSConfig: agent.TLSConfig(), // nil for UDP
//		// … hooks as below
//	})
//
// # NATS trouble
//
// NATS trouble never stops the game. ClientConnected and ClientDisconnected only queue an
// event; one goroutine writes the events in the order they happened, retrying each with
// exponential backoff (RetryMin..RetryMax) until NATS takes it, and waits for the connection to
// come back when it is down. Outages and recoveries are logged (WARN on failure, INFO when a
// write succeeds after retries). The context publish and the cert digest put are retried the
// same way, and so are a renewal's digest and the removal at stop (bounded by FlushTimeout).
// Only configuration errors (ErrConfig: missing or malformed environment, a context API that
// rejects the deployment's token) are reported as fatal, by EnvFromEnviron, New or Run.
//
// # Plugging into a netcode server
//
// Apart from the certificate (package netcode's CertRotator), the agent does not depend on a
// netcode implementation; a server calls three hooks. With package netcode's server:
//
//	srv, err := netcode.NewServer(netcode.ServerConfig{
//		// …
//		OnConnectRequest: func(ctx context.Context, id uint64, _ [netcode.UserDataBytes]byte) error {
//			_, err := agent.AuthorizeClient(ctx, id)
//			switch {
//			case err == nil:
//				return nil
//			case errors.Is(err, gameserver.ErrUnknownClient):
//				return fmt.Errorf("%w (%w)", &netcode.DeniedError{Reason: netcode.DeniedInvalidToken}, err)
//			case errors.Is(err, gameserver.ErrAlreadyConnected):
//				return fmt.Errorf("%w (%w)", &netcode.DeniedError{Reason: netcode.DeniedAlreadyConnected}, err)
//			case errors.Is(err, gameserver.ErrNATSUnavailable): // not checked: the client asks again
//				return fmt.Errorf("%w: %w", netcode.ErrRetryLater, err)
//			default: // ErrClosed
//				return fmt.Errorf("%w (%w)", &netcode.DeniedError{Reason: netcode.DeniedInternalError}, err)
//			}
//		},
//		OnConnect:    func(id uint64, _ netip.AddrPort) { agent.ClientConnected(id) },
//		OnDisconnect: func(id uint64, _ netip.AddrPort) { agent.ClientDisconnected(id) },
//	})
//
// # Shutdown
//
// Run stops when its context ends and then keeps writing pending events for at most
// FlushTimeout. Close stops Run and writes whatever is still queued (for example the
// disconnects of players the game kicked while shutting down) within its context. The agent
// never closes the NATS connection it was given.
package gameserver
