package netcode

import (
	"fmt"
	"net/netip"
)

// Address type bytes of the netcode address encoding.
const (
	addressTypeIPv4 = 1 // then 4 IP octets and a u16 port: 7 bytes
	addressTypeIPv6 = 2 // then 16 IP octets and a u16 port: 19 bytes

	addressIPv4Bytes = 1 + 4 + 2
	addressIPv6Bytes = 1 + 16 + 2
)

// checkAddress reports whether a can be encoded: a valid IP without an IPv6 zone (the format
// has no room for one). An IPv4-mapped IPv6 address is encoded as IPv6, as Rust's SocketAddrV6
// would be.
func checkAddress(a netip.AddrPort) error {
	if !a.IsValid() {
		return fmt.Errorf("%w: invalid address", ErrAddress)
	}
	if a.Addr().Zone() != "" {
		return fmt.Errorf("%w: %s has an IPv6 zone, which a connect token cannot carry", ErrAddress, a)
	}
	return nil
}

// checkAddressList checks the count (1..MaxServersPerConnect) and every entry of list.
func checkAddressList(what string, list []netip.AddrPort) error {
	if len(list) == 0 || len(list) > MaxServersPerConnect {
		return fmt.Errorf("%w: %d %s addresses (want 1..%d)", ErrAddress, len(list), what, MaxServersPerConnect)
	}
	for _, a := range list {
		if err := checkAddress(a); err != nil {
			return err
		}
	}
	return nil
}

// addressSize is the encoded size of a: 7 bytes for IPv4, 19 for IPv6.
func addressSize(a netip.AddrPort) int {
	if a.Addr().Is4() {
		return addressIPv4Bytes
	}
	return addressIPv6Bytes
}

// appendAddress appends the netcode encoding of a to b: the type byte (1 = IPv4, 2 = IPv6),
// the IP's octets in network order (4 or 16, as Lightyear writes them; the netcode C reference
// byte-swaps IPv6 groups, Lightyear does not), then the port as a u16 in f's byte order.
// The caller must have checked a with checkAddress.
func appendAddress(b []byte, a netip.AddrPort, f Format) []byte {
	ip := a.Addr()
	if ip.Is4() {
		o := ip.As4()
		b = append(b, addressTypeIPv4)
		b = append(b, o[:]...)
	} else {
		o := ip.As16()
		b = append(b, addressTypeIPv6)
		b = append(b, o[:]...)
	}
	return f.byteOrder().AppendUint16(b, a.Port())
}

// putAddress writes the encoding of a at the start of b and returns the bytes written.
// b must have room for addressSize(a) bytes.
func putAddress(b []byte, a netip.AddrPort, f Format) int {
	ip := a.Addr()
	var n int
	if ip.Is4() {
		o := ip.As4()
		b[0] = addressTypeIPv4
		n = 1 + copy(b[1:], o[:])
	} else {
		o := ip.As16()
		b[0] = addressTypeIPv6
		n = 1 + copy(b[1:], o[:])
	}
	f.byteOrder().PutUint16(b[n:], a.Port())
	return n + 2
}

// readAddress decodes one address from the start of b and returns it with the number of
// bytes consumed. An unknown type byte or a short buffer is an error wrapping ErrAddress.
func readAddress(b []byte, f Format) (netip.AddrPort, int, error) {
	if len(b) == 0 {
		return netip.AddrPort{}, 0, fmt.Errorf("%w: truncated address", ErrAddress)
	}
	switch b[0] {
	case addressTypeIPv4:
		if len(b) < addressIPv4Bytes {
			return netip.AddrPort{}, 0, fmt.Errorf("%w: truncated IPv4 address", ErrAddress)
		}
		ip := netip.AddrFrom4([4]byte(b[1:5]))
		return netip.AddrPortFrom(ip, f.byteOrder().Uint16(b[5:7])), addressIPv4Bytes, nil
	case addressTypeIPv6:
		if len(b) < addressIPv6Bytes {
			return netip.AddrPort{}, 0, fmt.Errorf("%w: truncated IPv6 address", ErrAddress)
		}
		ip := netip.AddrFrom16([16]byte(b[1:17]))
		return netip.AddrPortFrom(ip, f.byteOrder().Uint16(b[17:19])), addressIPv6Bytes, nil
	}
	return netip.AddrPort{}, 0, fmt.Errorf("%w: unknown address type %d", ErrAddress, b[0])
}

// readAddressList decodes a u32 count (1..MaxServersPerConnect) followed by that many
// addresses, and returns them with the number of bytes consumed.
func readAddressList(b []byte, f Format) ([]netip.AddrPort, int, error) {
	if len(b) < 4 {
		return nil, 0, fmt.Errorf("%w: truncated address count", ErrAddress)
	}
	count := f.byteOrder().Uint32(b)
	if count == 0 || count > MaxServersPerConnect {
		return nil, 0, fmt.Errorf("%w: %d server addresses (want 1..%d)", ErrAddress, count, MaxServersPerConnect)
	}
	n := 4
	list := make([]netip.AddrPort, count)
	for i := range list {
		a, m, err := readAddress(b[n:], f)
		if err != nil {
			return nil, 0, err
		}
		list[i] = a
		n += m
	}
	return list, n, nil
}
