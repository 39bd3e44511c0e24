package edgegapsim

import (
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"github.com/bevygap-go/bevygap/edgegap"
)

// TestWriteAPI: the pooled encoder answers exactly what writeJSON answers (status, header,
// bytes), a body that does not encode included, and its buffers are reused.
func TestWriteAPI(t *testing.T) {
	s := &Simulator{}
	bodies := []any{
		edgegap.SessionCreated{SessionID: "a-S", App: "<game>", Version: "v&1", WebhookURL: edgegap.Ptr("http://h/hook?x=1&y=2")},
		&edgegap.Session{SessionID: "a-S", Status: "Status.READY", Deployment: &edgegap.Deployment{
			Ports: map[string]edgegap.PortMapping{"b": {External: edgegap.Ptr(1)}, "a": {}}, Tags: []string{}}},
		edgegap.ErrorBody{Message: "line\nbreak \u2028 é"},
		nil,
		math.Inf(1), // does not encode: 500
		edgegap.ErrorBody{Message: "after a failure"},
	}
	for i, body := range bodies {
		want, got := httptest.NewRecorder(), httptest.NewRecorder()
		writeJSON(want, http.StatusCreated, body)
		s.writeAPI(got, http.StatusCreated, body)
		if got.Code != want.Code || !reflect.DeepEqual(got.Header(), want.Header()) || got.Body.String() != want.Body.String() {
			t.Errorf("body %d: writeAPI %d %v %q, writeJSON %d %v %q", i, got.Code, got.Header(), got.Body,
				want.Code, want.Header(), want.Body)
		}
	}
}
