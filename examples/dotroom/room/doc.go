// Package room is what the dotroom server and its players share: the wire messages and the
// room itself. dotroom is bevygap's example game: players share a room and move dots around
// it. It is small on purpose — copy it to start a Go game on bevygap.
//
// The example is three packages and two programs:
//
//	room        this package: the wire format (message.go) and the room's State (state.go),
//	            no networking
//	roomserver  Run: the game server (gameserver SDK + netcode UDP server + tick loop)
//	roomclient  Join / Connect / Player: the player side (client SDK + netcode UDP client)
//	server      the game server program (reads the environment, calls roomserver.Run)
//	client      a player program (roomclient.Join, walk, chat, print the room)
//
// The flow of one player:
//
//	player ── client.Request (WebSocket) ──► httpd ──► matchmaker ──► Edgegap: session on a
//	   │                                                              deployment running roomserver.Run
//	   │◄─────────── connect token + ip:port ─────────────────────────────┘
//	   │
//	   ├── netcode connection request ──► roomserver: agent.AuthorizeClient (sessions_ly2eg)
//	   │◄── Welcome{you, room size}        agent.ClientConnected → active_connections
//	   ├── Move / Say ──────────────────►  State.Move / broadcast Chat
//	   │◄── Snapshot{tick, dots} every tick
//	   └── disconnect ──────────────────►  agent.ClientDisconnected → the matchmaker deletes
//	                                       the Edgegap session
//
// Messages (client → server kinds below 0x80, server → client from 0x80):
//
//	0x01 Move      dx i8 ‖ dy i8                       move my dot (each clamped to ±MaxStep)
//	0x02 Say       UTF-8 text (1..200 bytes)          chat to the room
//	0x81 Welcome   you u64 ‖ width u16 ‖ height u16    first message after connecting
//	0x82 Snapshot  tick u32 ‖ n u16 ‖ n × (id u64 ‖ x i16 ‖ y i16)   every tick
//	0x83 Chat      from u64 ‖ UTF-8 text               a relayed Say
//
// Any other payload a client sends is echoed back unchanged, so `bevygap play` (and any
// round-trip probe) works against dotroom.
package room
