// Package gameserver is the SDK a Go game server uses to take part in bevygap: the Go
// counterpart of the Rust crate bevygap_server_plugin, speaking the same NATS subjects and KV
// buckets, so the same matchmaker serves Rust and Go game servers.
//
// An Agent does, for one game server running in an Edgegap deployment:
//
//	boot      read ARBITRIUM_* (EnvFromEnviron: every missing or malformed variable in one error)
//	          GET ARBITRIUM_CONTEXT_URL, header "Authorization: <ARBITRIUM_CONTEXT_TOKEN>"
//	            (timeouts, retries with backoff; a 4xx rejection is a configuration error)
//	          publish the context on gameserver.contexts (ContextJSON: compact, sorted keys)
//	          put cert_digests[<public ip>] = <WebTransport cert digest>   (if CertDigest is set)
//	connect   netcode connection request  -> AuthorizeClient: sessions_ly2eg[<client id>]
//	                                         -> session id, or refuse (ErrUnknownClient)
//	          client connected             -> ClientConnected: active_connections[<session id>] = "<client id>"
//	          client disconnected          -> ClientDisconnected: delete active_connections[<session id>]
//	                                         (the matchmaker then deletes the Edgegap session)
//	idle      nobody connected for IdleTimeout -> DELETE ARBITRIUM_DELETE_URL once (optional)
//
// # NATS trouble
//
// NATS trouble never stops the game. ClientConnected and ClientDisconnected only queue an
// event; one goroutine writes the events in the order they happened, retrying each with
// exponential backoff (RetryMin..RetryMax) until NATS takes it, and waits for the connection to
// come back when it is down. Outages and recoveries are logged (WARN on failure, INFO when a
// write succeeds after retries). The context publish and the cert digest put are retried the
// same way. Only configuration errors (ErrConfig: missing or malformed environment, a context
// API that rejects the deployment's token) are reported as fatal, by EnvFromEnviron, New or Run.
//
// # Plugging into a netcode server
//
// The agent does not depend on any netcode implementation; a server calls three hooks. With
// package netcode's server:
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
//			default: // ErrNATSUnavailable, ErrClosed
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
