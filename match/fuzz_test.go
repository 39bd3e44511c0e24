package match_test

import (
	"encoding/json"
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/bevygap-go/bevygap/match"
)

// FuzzParseConfig: any input either fails with ErrInvalidConfig or gives a valid config that
// encodes and decodes to itself.
func FuzzParseConfig(f *testing.F) {
	if data, err := os.ReadFile("testdata/queues.json"); err == nil {
		f.Add(data)
	}
	f.Add([]byte(`{"queues":[{"name":"a","min":1,"max":2,"relax_after":"1s"}]}`))
	f.Add([]byte(`{"queues":[{"name":"a","min":2,"max":4,"relax_after":"5s","relaxed_min":1,"wait_limit":"4s"}]}`))
	f.Add([]byte(`{"queues":null}`))
	f.Add([]byte(`{"queues":[{"name":"a","min":1,"max":2,"equal":[],"window":{"prop":"s","initial":3,"lo":0,"hi":1}}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := match.ParseConfig(data)
		if err != nil {
			if !errors.Is(err, match.ErrInvalidConfig) {
				t.Fatalf("error without ErrInvalidConfig: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		out, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := match.ParseConfig(out)
		if err != nil || !reflect.DeepEqual(back, c) {
			t.Fatalf("round trip: %v\n%s", err, out)
		}
	})
}
