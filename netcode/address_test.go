package netcode

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"testing"
)

func TestAddressEncoding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		addr   string
		format Format
		want   string // hex
	}{
		{"203.0.113.7:31500", FormatLightyear017, "01cb0071070c7b"},
		{"203.0.113.7:31500", FormatLightyear020, "01cb0071077b0c"},
		// IPv6 octets in network order (Lightyear), not byte-swapped groups (netcode C).
		{"[2001:db8::42]:7777", FormatLightyear017, "0220010db8000000000000000000000042611e"},
		{"[2001:db8::42]:7777", FormatLightyear020, "0220010db80000000000000000000000421e61"},
	}
	for _, tt := range tests {
		t.Run(tt.addr+"/"+tt.format.String(), func(t *testing.T) {
			a := netip.MustParseAddrPort(tt.addr)
			got := appendAddress([]byte{0xff}, a, tt.format)
			want, _ := hex.DecodeString("ff" + tt.want)
			if !bytes.Equal(got, want) {
				t.Fatalf("appendAddress = %x, want %x", got, want)
			}
			put := make([]byte, addressSize(a))
			if n := putAddress(put, a, tt.format); n != len(put) || !bytes.Equal(put, want[1:]) {
				t.Fatalf("putAddress = %x (%d)", put, n)
			}
			back, n, err := readAddress(append(got[1:], 0xaa), tt.format)
			if err != nil || n != len(want)-1 || back != a {
				t.Fatalf("readAddress = %v, %d, %v", back, n, err)
			}
		})
	}
}

func TestReadAddressErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"type 0", []byte{0, 1, 2, 3, 4, 5, 6}},
		{"type 3", []byte{3, 1, 2, 3, 4, 5, 6}},
		{"short IPv4", []byte{1, 1, 2, 3, 4, 5}},
		{"short IPv6", append([]byte{2}, make([]byte, 17)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := readAddress(tt.in, FormatLightyear017); !errors.Is(err, ErrAddress) {
				t.Fatalf("got %v, want ErrAddress", err)
			}
		})
	}
}
