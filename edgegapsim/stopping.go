package edgegapsim

// stopServing ends the injected-latency waits of calls in flight (they answer 503) and of
// calls to come; Serve calls it when its context ends, before the HTTP shutdown waits for
// in-flight requests, and Close calls it too.
func (s *Simulator) stopServing() {
	s.stopOnce.Do(func() { close(s.stopping) })
}
