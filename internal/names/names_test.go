package names

import "testing"

func TestValid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		s     string
		max   int
		extra string
		want  bool
	}{
		{"dotroom", 64, "_-", true},
		{"v0-1_x", 64, "_-", true},
		{"", 64, "_-", false},
		{"a b", 64, "_-", false},
		{"a.b", 64, "_-", false},
		{"a.b", 64, "_-.", true},
		{"héllo", 64, "_-", false},
		{"abcd", 3, "", false},
		{"abc", 3, "", true},
		{"abc", 0, "", true},
		{"a\x00", 0, "", false},
		{"a*", 0, "_-", false},
		{"a>", 0, "_-", false},
	}
	for _, c := range cases {
		if got := Valid(c.s, c.max, c.extra); got != c.want {
			t.Errorf("Valid(%q, %d, %q) = %v, want %v", c.s, c.max, c.extra, got, c.want)
		}
	}
}
