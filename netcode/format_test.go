package netcode

import (
	"encoding/binary"
	"errors"
	"testing"
)

func TestFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    Format
		order   binary.ByteOrder
		wantErr bool
	}{
		{"", FormatLightyear017, binary.LittleEndian, false},
		{"lightyear-0.17", FormatLightyear017, binary.LittleEndian, false},
		{"lightyear-0.20", FormatLightyear020, binary.BigEndian, false},
		{"lightyear-0.18", 0, nil, true},
		{"LIGHTYEAR-0.17", 0, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseFormat(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("got %v, want ErrFormat", err)
				}
				return
			}
			if err != nil || got != tt.want || got.byteOrder() != tt.order {
				t.Fatalf("ParseFormat = %v, %v", got, err)
			}
			if tt.in != "" && got.String() != tt.in {
				t.Fatalf("String = %q", got.String())
			}
			var f Format
			if err := f.UnmarshalText([]byte(tt.in)); err != nil || f != tt.want {
				t.Fatalf("UnmarshalText = %v, %v", f, err)
			}
			if b, err := got.MarshalText(); err != nil || (tt.in != "" && string(b) != tt.in) {
				t.Fatalf("MarshalText = %q, %v", b, err)
			}
		})
	}
	if s := Format(5).String(); s != "Format(5)" {
		t.Fatalf("String of undefined = %q", s)
	}
	if _, err := Format(5).MarshalText(); !errors.Is(err, ErrFormat) {
		t.Fatalf("MarshalText of undefined: %v", err)
	}
}
