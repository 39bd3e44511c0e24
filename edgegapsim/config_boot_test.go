package edgegapsim

import (
	"testing"
	"time"
)

// TestBootTimeDefaults: 0 means the default boot time, negative means instant.
func TestBootTimeDefaults(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		in   Duration
		want time.Duration
	}{{0, DefaultBootTime}, {-1, 0}, {Duration(2 * time.Second), 2 * time.Second}} {
		got, err := Config{BootTime: c.in, APIKeys: []string{"k"}}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		if got.BootTime.D() != c.want {
			t.Errorf("BootTime %v → %v, want %v", c.in.D(), got.BootTime.D(), c.want)
		}
	}
}
