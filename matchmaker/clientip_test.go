package matchmaker

import (
	"encoding/json"
	"testing"
)

// checkPlainClientIP fails when plainClientIP takes a body and reads another client_ip than
// encoding/json (decodeClientIP's slow path) does.
func checkPlainClientIP(t *testing.T, data []byte) bool {
	t.Helper()
	got, ok := plainClientIP(data)
	if !ok {
		return false
	}
	var obj map[string]json.RawMessage
	var want string
	if err := json.Unmarshal(data, &obj); err != nil {
		t.Fatalf("plainClientIP took %q, encoding/json fails: %v", data, err)
	}
	if err := json.Unmarshal(obj["client_ip"], &want); err != nil || got != want {
		t.Fatalf("plainClientIP(%q) = %q; encoding/json %q, %v", data, got, want, err)
	}
	return true
}

func TestPlainClientIP(t *testing.T) {
	for _, s := range []string{`{"client_ip":"127.0.0.1"}`, " {\"client_ip\" : \"::1\" ,\"game\":\"g\",\"version\":\"1\"}\n",
		`{"client_ip":"a","client_ip":"b"}`, `{"client_ip":""}`} {
		if !checkPlainClientIP(t, []byte(s)) {
			t.Errorf("plainClientIP did not take %s", s)
		}
	}
	for _, s := range []string{``, `{}`, `{"client_ip":null}`, `{"client_ip":1}`, `{"client_ip":"a\u0062"}`,
		`{"client\u005fip":"a"}`, `{"Client_IP":"a"}`, `{"client_ip":"a"} x`, `{"client_ip":"a",}`, `{"x":[1],"client_ip":"a"}`,
		`{"client_ip":"é"}`, `[]`, `{"client_ip":"a"`, `{"client_ip" "a"}`} {
		if checkPlainClientIP(t, []byte(s)) {
			t.Errorf("plainClientIP took %s", s)
		}
	}
}

func FuzzPlainClientIP(f *testing.F) {
	for _, s := range []string{`{"client_ip":"1.2.3.4"}`, `{"client_ip":"::1","game":"g"}`, `{"a":"b","client_ip":"c","client_ip":"d"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkPlainClientIP(t, data) })
}
