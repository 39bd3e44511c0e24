package deploy

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/bevygap-go/bevygap/bus"
	"github.com/bevygap-go/bevygap/edgegap"
	"github.com/bevygap-go/bevygap/edgegapsim"
	"github.com/bevygap-go/bevygap/httpd"
	"github.com/bevygap-go/bevygap/internal/bustest"
	"github.com/bevygap-go/bevygap/internal/natsembed"
	"github.com/bevygap-go/bevygap/internal/svcmetrics"
	"github.com/bevygap-go/bevygap/matchmaker"
	"github.com/bevygap-go/bevygap/netcode"
	"github.com/bevygap-go/bevygap/webhooksink"
)

const dashboardFile = "grafana/bevygap.json"

// grafanaVars are the Grafana variables the dashboard's queries may use, and what they stand
// for when the query is parsed.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h")

// descRecorder is a Registerer that remembers the name of every series registered through it.
type descRecorder struct {
	prometheus.Registerer
	mu    sync.Mutex
	names map[string]bool
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *descRecorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqNameRE.FindStringSubmatch(d.String()); m != nil {
			r.mu.Lock()
			r.names[m[1]] = true
			r.mu.Unlock()
		}
	}
	return r.Registerer.Register(c)
}

func (r *descRecorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

var exportedNames = sync.OnceValues(collectExportedNames)

// exportedMetricNames returns every series name our services export: the matchmaker (with its
// Edgegap client's observer), the front door, the webhook sink and the simulator, built with
// their real constructors on one recording registry, plus what that registry gathers (Go
// runtime and process). A histogram or summary name stands for its _bucket, _sum and _count
// series too.
func exportedMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	names, err := exportedNames()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func collectExportedNames() (map[string]bool, error) {
	srv, err := natsembed.Start(natsembed.Config{})
	if err != nil {
		return nil, err
	}
	defer srv.Shutdown()
	nc, err := bus.Connect(context.Background(), bustest.Config(srv, "metric-names"), slog.New(slog.DiscardHandler))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	reg := svcmetrics.NewRegistry()
	rec := &descRecorder{Registerer: reg, names: map[string]bool{}}

	key, err := netcode.GenerateKey()
	if err != nil {
		return nil, err
	}
	mc := matchmaker.DefaultConfig()
	mc.AppName, mc.AppVersion, mc.PrivateKey = testApp, testVersion, key
	api := edgegap.NewClient("http://127.0.0.1:1", testAPIKey, edgegap.WithObserver(matchmaker.EdgegapObserver(rec)))
	if _, err := matchmaker.New(mc, matchmaker.Deps{NATS: nc, Edgegap: api, Registry: rec}); err != nil {
		return nil, err
	}
	if _, err := httpd.New(httpd.Config{}, nc, slog.New(slog.DiscardHandler), rec); err != nil {
		return nil, err
	}
	if _, err := webhooksink.New(webhooksink.Config{}, nc, slog.New(slog.DiscardHandler), rec); err != nil {
		return nil, err
	}
	sim, err := edgegapsim.New(edgegapsim.Config{APIKeys: []string{testAPIKey},
		Apps: []edgegapsim.AppConfig{{Name: testApp, Versions: []edgegapsim.VersionConfig{{Name: testVersion}}}}})
	if err != nil {
		return nil, err
	}
	defer func() { _ = sim.Close(context.Background()) }()
	rec.MustRegister(sim.Collector())

	mfs, err := reg.Gather()
	if err != nil {
		return nil, err
	}
	names := rec.names
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	for n := range names {
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			names[n+suffix] = true
		}
	}
	return names, nil
}

// checkMetricNames fails t unless expr parses as PromQL and every series it selects is one our
// services export (selected by its literal name, never by a __name__ regexp).
func checkMetricNames(t *testing.T, what, expr string, exported map[string]bool) {
	t.Helper()
	e, err := promqlParser.ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		t.Errorf("%s: %q does not parse: %v", what, expr, err)
		return
	}
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		vs, ok := n.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		name := vs.Name
		for _, m := range vs.LabelMatchers {
			if m.Name == model.MetricNameLabel && m.Type == labels.MatchEqual {
				name = m.Value
			}
		}
		if !exported[name] {
			t.Errorf("%s: %q selects %q, which no bevygap service exports", what, expr, vs.String())
		}
		return nil
	})
}

// grafanaPanel is the part of a Grafana panel the test looks at.
type grafanaPanel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	GridPos    map[string]int `json:"gridPos"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's
}

// TestGrafanaDashboard: the dashboard is valid JSON, every panel has a unique id and a place,
// uses the datasource variable, and every query parses as PromQL and selects only series our
// services export.
func TestGrafanaDashboard(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title         string         `json:"title"`
		UID           string         `json:"uid"`
		SchemaVersion int            `json:"schemaVersion"`
		Panels        []grafanaPanel `json:"panels"`
		Templating    struct {
			List []struct {
				Name, Type, Query string
			} `json:"list"`
		} `json:"templating"`
	}
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if dash.Title == "" || dash.UID == "" || dash.SchemaVersion == 0 {
		t.Errorf("dashboard title %q, uid %q, schemaVersion %d: all are needed", dash.Title, dash.UID, dash.SchemaVersion)
	}
	if len(dash.Templating.List) != 1 || dash.Templating.List[0].Name != "datasource" || dash.Templating.List[0].Type != "datasource" ||
		dash.Templating.List[0].Query != "prometheus" {
		t.Errorf("templating: want exactly the Prometheus datasource variable, got %+v", dash.Templating.List)
	}
	exported := exportedMetricNames(t)
	ids := map[int]bool{}
	queries := 0
	var check func(p grafanaPanel)
	check = func(p grafanaPanel) {
		if p.ID == 0 || ids[p.ID] {
			t.Errorf("panel %q: id %d missing or not unique", p.Title, p.ID)
		}
		ids[p.ID] = true
		if p.Title == "" || p.GridPos["w"] == 0 || p.GridPos["h"] == 0 {
			t.Errorf("panel %d: needs a title and a gridPos with w and h", p.ID)
		}
		for _, c := range p.Panels {
			check(c)
		}
		if p.Type == "row" {
			return
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource must be the ${datasource} variable", p.Title)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		refs := map[string]bool{}
		for _, q := range p.Targets {
			if q.RefID == "" || refs[q.RefID] {
				t.Errorf("panel %q: refId %q missing or repeated", p.Title, q.RefID)
			}
			refs[q.RefID] = true
			checkMetricNames(t, "panel "+p.Title, q.Expr, exported)
			queries++
		}
	}
	for _, p := range dash.Panels {
		check(p)
	}
	if queries < 20 {
		t.Errorf("only %d queries: the dashboard lost its panels?", queries)
	}
}
