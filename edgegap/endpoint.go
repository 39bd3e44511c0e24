package edgegap

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Endpoint returns the public IP and external port at which players reach the deployment.
// portName selects a port of Ports; with "" the deployment's only port is used, or, if it has
// several, the one whose name sorts first (bevygap took an arbitrary one). It fails when the
// public IP is not an IP literal or the port has no external number.
func (d *Deployment) Endpoint(portName string) (netip.AddrPort, error) {
	ip, err := netip.ParseAddr(d.PublicIP)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("edgegap: deployment %s: public_ip: %w", d.RequestID, err)
	}
	if len(d.Ports) == 0 {
		return netip.AddrPort{}, fmt.Errorf("edgegap: deployment %s has no ports", d.RequestID)
	}
	if portName == "" {
		names := make([]string, 0, len(d.Ports))
		for n := range d.Ports {
			names = append(names, n)
		}
		slices.Sort(names)
		portName = names[0]
	}
	p, ok := d.Ports[portName]
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("edgegap: deployment %s has no port %q", d.RequestID, portName)
	}
	if p.External == nil || *p.External <= 0 || *p.External > 65535 {
		return netip.AddrPort{}, fmt.Errorf("edgegap: deployment %s port %q has no external port", d.RequestID, portName)
	}
	return netip.AddrPortFrom(ip, uint16(*p.External)), nil
}

// Endpoint returns the game server address of a ready session (see Deployment.Endpoint).
func (s *Session) Endpoint(portName string) (netip.AddrPort, error) {
	if s.Deployment == nil {
		return netip.AddrPort{}, errors.New("edgegap: session " + s.SessionID + " has no deployment")
	}
	return s.Deployment.Endpoint(portName)
}
