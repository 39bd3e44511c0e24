package httpd

import (
	"time"

	"github.com/nats-io/nats.go"
)

// natsReconnectWait is how long a request waits for the front door's NATS connection to come
// back before it is answered "Matchmaker unavailable": when the NATS node it is connected to
// dies, the client reconnects to another node of the cluster within a few seconds, and a
// player who asked in that moment should wait for it rather than lose the request.
const natsReconnectWait = 3 * time.Second

// natsUp reports whether the NATS connection is up, waiting up to natsReconnectWait while it
// reconnects, or until done is closed (the request was given up).
func (s *Server) natsUp(done <-chan struct{}) bool {
	if s.nc.Status() == nats.CONNECTED {
		return true
	}
	limit := time.NewTimer(natsReconnectWait)
	defer limit.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		switch s.nc.Status() {
		case nats.CONNECTED:
			return true
		case nats.CLOSED:
			return false
		}
		select {
		case <-done:
			return false
		case <-limit.C:
			return s.nc.Status() == nats.CONNECTED
		case <-tick.C:
		}
	}
}
