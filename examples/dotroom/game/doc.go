// Package game is dotroom, bevygap's example game: players share a room and move dots around
// it. It is small on purpose — copy it to start a Go game on bevygap.
//
// The pieces, each in its own file:
//
//	message.go  the wire format: one byte of kind, then a fixed little-endian body
//	room.go     State: the room (a dot per player), no networking
//	server.go   RunServer: the game server (gameserver SDK + netcode UDP server + tick loop)
//	player.go   Join / Connect / Player: the client side (client SDK + netcode UDP client)
//
// The flow of one player:
//
//	player ── client.Request (WebSocket) ──► httpd ──► matchmaker ──► Edgegap: session on a
//	   │                                                              deployment running RunServer
//	   │◄─────────── connect token + ip:port ─────────────────────────────┘
//	   │
//	   ├── netcode connection request ──► RunServer: agent.AuthorizeClient (sessions_ly2eg)
//	   │◄── Welcome{you, room size}        agent.ClientConnected → active_connections
//	   ├── Move / Say ──────────────────►  room.Move / broadcast Chat
//	   │◄── Room{tick, dots} every tick
//	   └── disconnect ──────────────────►  agent.ClientDisconnected → the matchmaker deletes
//	                                       the Edgegap session
//
// Messages (client → server kinds below 0x80, server → client from 0x80):
//
//	0x01 Move     dx i8 ‖ dy i8                       move my dot (each clamped to ±MaxStep)
//	0x02 Say      UTF-8 text (1..200 bytes)          chat to the room
//	0x81 Welcome  you u64 ‖ width u16 ‖ height u16    first message after connecting
//	0x82 Room     tick u32 ‖ n u16 ‖ n × (id u64 ‖ x i16 ‖ y i16)   every tick
//	0x83 Chat     from u64 ‖ UTF-8 text               a relayed Say
//
// Any other payload a client sends is echoed back unchanged, so `bevygap play` (and any
// round-trip probe) works against dotroom.
//
// Configuration comes from the environment (ServerConfigFromEnv): the ARBITRIUM_* variables
// Edgegap sets, NATS_* (package bus), and BEVYGAP_LIGHTYEAR_PRIVATE_KEY (the matchmaker's
// key; required), BEVYGAP_LIGHTYEAR_PROTOCOL_ID, BEVYGAP_TOKEN_FORMAT, BEVYGAP_BUCKET_PREFIX,
// DOTROOM_LISTEN_HOST, DOTROOM_PORT_NAME, DOTROOM_TICK, DOTROOM_IDLE_TIMEOUT,
// DOTROOM_MAX_CLIENTS.
package game
