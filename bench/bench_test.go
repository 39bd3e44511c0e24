package bench

import "testing"

func TestStatOf(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		xs   []float64
		want Stat
	}{
		{"none", nil, Stat{}},
		{"odd", []float64{3, 1, 2}, Stat{1, 2, 3}},
		{"even", []float64{4, 1, 2, 3}, Stat{1, 2.5, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := statOf(tc.xs); got != tc.want {
				t.Errorf("statOf(%v) = %v, want %v", tc.xs, got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	if err := (Options{Only: []string{P1, P7}}).Validate(); err != nil {
		t.Error(err)
	}
	if err := (Options{Only: []string{"P2"}}).Validate(); err == nil {
		t.Error("P2 accepted")
	}
}
