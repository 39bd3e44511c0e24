package deploy

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/model/timestamp"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/template"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"
	"go.yaml.in/yaml/v3"
)

// The alerting rules and their unit tests, in promtool's formats: `promtool check rules` and
// `promtool test rules` accept them as they are. The tests below do the same checks with the
// Prometheus library packages (rule parsing and validation, the PromQL engine and the alert
// templates), because building promtool itself (with every service discovery it links) costs
// minutes; see docs/metrics.md.
const (
	alertsFile     = "prometheus/alerts.yml"
	alertsTestFile = "prometheus/alerts_test.yml"
)

// promqlParser parses like Prometheus does by default.
var promqlParser = parser.NewParser(parser.Options{})

// loadAlertRules is `promtool check rules`: it parses and validates the rule file (YAML
// structure, unknown fields, PromQL of every expression, label and annotation templates) and
// returns its rules.
func loadAlertRules(t *testing.T, path string) []rulefmt.Rule {
	t.Helper()
	rgs, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, promqlParser, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("promtool check rules %s: %v", path, err)
	}
	if len(errs) > 0 {
		t.FailNow()
	}
	var out []rulefmt.Rule
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("%s: group %s: only alerting rules are expected, got record %q", path, g.Name, r.Record)
				continue
			}
			out = append(out, r)
		}
	}
	return out
}

func TestAlertRulesCheck(t *testing.T) {
	t.Parallel()
	rules := loadAlertRules(t, alertsFile)
	exported := exportedMetricNames(t)
	seen := map[string]bool{}
	for _, r := range rules {
		if seen[r.Alert] {
			t.Errorf("alert %s defined twice", r.Alert)
		}
		seen[r.Alert] = true
		if r.Labels["severity"] != "warning" && r.Labels["severity"] != "critical" {
			t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, r.Labels["severity"])
		}
		if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("alert %s: needs a summary and a description annotation", r.Alert)
		}
		checkMetricNames(t, "alert "+r.Alert, r.Expr, exported)
	}
	// Every alert is documented in docs/metrics.md, under its own name.
	doc, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	for name := range seen {
		if !strings.Contains(string(doc), "### "+name) {
			t.Errorf("docs/metrics.md has no section ### %s", name)
		}
	}
}

// ruleTestFile is promtool's rule unit-test file format (the part our tests use).
type ruleTestFile struct {
	RuleFiles          []string        `yaml:"rule_files"`
	EvaluationInterval model.Duration  `yaml:"evaluation_interval"`
	Tests              []ruleTestGroup `yaml:"tests"`
}

type ruleTestGroup struct {
	Name        string         `yaml:"name"`
	Interval    model.Duration `yaml:"interval"`
	InputSeries []struct {
		Series string `yaml:"series"`
		Values string `yaml:"values"`
	} `yaml:"input_series"`
	AlertRuleTests []struct {
		EvalTime  model.Duration `yaml:"eval_time"`
		Alertname string         `yaml:"alertname"`
		ExpAlerts []struct {
			ExpLabels      map[string]string `yaml:"exp_labels"`
			ExpAnnotations map[string]string `yaml:"exp_annotations"`
		} `yaml:"exp_alerts"`
	} `yaml:"alert_rule_test"`
}

// TestAlertRulesUnit is `promtool test rules prometheus/alerts_test.yml`: each test group loads
// its input series, evaluates every alerting rule at every evaluation interval from time 0 like
// Prometheus does (pending for the rule's "for", then firing; labels and annotations expanded
// with Prometheus' templates) and compares the firing alerts at each eval_time.
func TestAlertRulesUnit(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile(alertsTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var f ruleTestFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsTestFile, err)
	}
	if f.EvaluationInterval == 0 {
		f.EvaluationInterval = model.Duration(time.Minute)
	}
	var rules []rulefmt.Rule
	for _, rf := range f.RuleFiles {
		rules = append(rules, loadAlertRules(t, filepath.Join(filepath.Dir(alertsTestFile), rf))...)
	}
	tested := map[string]bool{}
	for _, g := range f.Tests {
		for _, at := range g.AlertRuleTests {
			tested[at.Alertname] = true
		}
	}
	for _, r := range rules {
		if !tested[r.Alert] {
			t.Errorf("alert %s has no unit test in %s", r.Alert, alertsTestFile)
		}
	}
	for _, g := range f.Tests {
		t.Run(g.Name, func(t *testing.T) {
			t.Parallel()
			runRuleTestGroup(t, g, rules, time.Duration(f.EvaluationInterval))
		})
	}
}

// alertState is one alert of one rule: a label set active since activeAt.
type alertState struct {
	labels      labels.Labels
	annotations labels.Labels
	activeAt    time.Time
}

func runRuleTestGroup(t *testing.T, g ruleTestGroup, rules []rulefmt.Rule, evalInterval time.Duration) {
	interval := time.Duration(g.Interval)
	if interval == 0 {
		interval = time.Minute
	}
	store := &memSeries{}
	for _, s := range g.InputSeries {
		lset, vals, err := promqlParser.ParseSeriesDesc(s.Series + " " + s.Values)
		if err != nil {
			t.Fatalf("input series %s %s: %v", s.Series, s.Values, err)
		}
		var samples []chunks.Sample
		for i, v := range vals {
			if v.Omitted {
				continue
			}
			if v.Histogram != nil {
				t.Fatalf("input series %s: histogram samples are not supported here", s.Series)
			}
			samples = append(samples, fSample{t: int64(i) * interval.Milliseconds(), f: v.Value})
		}
		store.series = append(store.series, storage.NewListSeries(lset, samples))
	}
	sort.Slice(store.series, func(i, j int) bool {
		return labels.Compare(store.series[i].Labels(), store.series[j].Labels()) < 0
	})
	engine := promql.NewEngine(promql.EngineOpts{
		MaxSamples: 1_000_000, Timeout: 10 * time.Second, LookbackDelta: 5 * time.Minute,
		EnableAtModifier: true, EnableNegativeOffset: true, Parser: promqlParser,
	})
	queryable := &storage.MockQueryable{MockQuerier: &storage.MockQuerier{SelectMockFunction: store.selectSeries}}
	ctx := t.Context()
	query := func(ctx context.Context, q string, ts time.Time) (promql.Vector, error) {
		qry, err := engine.NewInstantQuery(ctx, queryable, nil, q, ts)
		if err != nil {
			return nil, err
		}
		defer qry.Close()
		res := qry.Exec(ctx)
		if res.Err != nil {
			return nil, res.Err
		}
		switch v := res.Value.(type) {
		case promql.Vector:
			return v, nil
		case promql.Scalar:
			return promql.Vector{{T: v.T, F: v.V, Metric: labels.EmptyLabels()}}, nil
		}
		return nil, fmt.Errorf("rule result is a %s, not a vector", res.Value.Type())
	}

	var maxEval time.Duration
	checks := map[time.Duration][]int{} // eval step -> indexes into AlertRuleTests
	for i, at := range g.AlertRuleTests {
		e := time.Duration(at.EvalTime)
		maxEval = max(maxEval, e)
		step := e / evalInterval * evalInterval // the last evaluation at or before eval_time
		checks[step] = append(checks[step], i)
	}
	active := make([]map[uint64]*alertState, len(rules))
	for i := range active {
		active[i] = map[uint64]*alertState{}
	}
	start := time.Unix(0, 0).UTC()
	for off := time.Duration(0); off <= maxEval; off += evalInterval {
		ts := start.Add(off)
		for i, r := range rules {
			evalAlertRule(t, ctx, r, ts, query, active[i])
		}
		for _, idx := range checks[off] {
			at := g.AlertRuleTests[idx]
			var got, want []string
			for i, r := range rules {
				if r.Alert != at.Alertname {
					continue
				}
				for _, a := range active[i] {
					if ts.Sub(a.activeAt) >= time.Duration(r.For) {
						got = append(got, a.labels.String()+" "+a.annotations.String())
					}
				}
			}
			for _, e := range at.ExpAlerts {
				l := map[string]string{labels.AlertName: at.Alertname}
				for k, v := range e.ExpLabels {
					l[k] = v
				}
				want = append(want, labels.FromMap(l).String()+" "+labels.FromMap(e.ExpAnnotations).String())
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("%s at %v:\n got firing: %s\nwant firing: %s", at.Alertname, time.Duration(at.EvalTime),
					strings.Join(got, "\n             "), strings.Join(want, "\n             "))
			}
		}
	}
}

// evalAlertRule evaluates r at ts like Prometheus' AlertingRule.Eval: every sample of the
// expression is an alert (its labels without __name__, plus the rule's labels and alertname;
// annotations expanded with the sample's labels and value), active since the first evaluation
// that returned it; an alert missing from the result is resolved.
func evalAlertRule(t *testing.T, ctx context.Context, r rulefmt.Rule, ts time.Time,
	query func(context.Context, string, time.Time) (promql.Vector, error), active map[uint64]*alertState) {
	t.Helper()
	vec, err := query(ctx, r.Expr, ts)
	if err != nil {
		t.Fatalf("alert %s at %v: %v", r.Alert, ts.Unix(), err)
	}
	defs := "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
	seen := map[uint64]bool{}
	for _, smpl := range vec {
		data := template.AlertTemplateData(smpl.Metric.Map(), nil, "", smpl)
		expand := func(name, text string) string {
			out, err := template.NewTemplateExpander(ctx, defs+text, "__alert_"+r.Alert, data,
				model.Time(timestamp.FromTime(ts)), template.QueryFunc(query), nil, nil).Expand()
			if err != nil {
				t.Errorf("alert %s: %s: template: %v", r.Alert, name, err)
			}
			return out
		}
		lb := labels.NewBuilder(smpl.Metric)
		lb.Del(model.MetricNameLabel)
		for k, v := range r.Labels {
			lb.Set(k, expand("label "+k, v))
		}
		lb.Set(labels.AlertName, r.Alert)
		ann := map[string]string{}
		for k, v := range r.Annotations {
			ann[k] = expand("annotation "+k, v)
		}
		lset := lb.Labels()
		h := lset.Hash()
		if seen[h] {
			t.Fatalf("alert %s at %v: two samples with the labels %s", r.Alert, ts.Unix(), lset)
		}
		seen[h] = true
		if a, ok := active[h]; ok {
			a.annotations = labels.FromMap(ann)
			continue
		}
		active[h] = &alertState{labels: lset, annotations: labels.FromMap(ann), activeAt: ts}
	}
	for h := range active {
		if !seen[h] {
			delete(active, h)
		}
	}
}

// memSeries is an in-memory storage of float series for the PromQL engine.
type memSeries struct{ series []*storage.SeriesEntry }

func (m *memSeries) selectSeries(_ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	var out []storage.Series
	for _, s := range m.series {
		lset := s.Labels()
		if !slices.ContainsFunc(ms, func(mt *labels.Matcher) bool { return !mt.Matches(lset.Get(mt.Name)) }) {
			out = append(out, s)
		}
	}
	return &seriesSlice{series: out, i: -1}
}

type seriesSlice struct {
	series []storage.Series
	i      int
}

func (s *seriesSlice) Next() bool                        { s.i++; return s.i < len(s.series) }
func (s *seriesSlice) At() storage.Series                { return s.series[s.i] }
func (s *seriesSlice) Err() error                        { return nil }
func (s *seriesSlice) Warnings() annotations.Annotations { return nil }

// fSample is a float sample (a StaleNaN value, from "stale" in a series, is a staleness marker).
type fSample struct {
	t int64
	f float64
}

func (s fSample) T() int64                      { return s.t }
func (s fSample) ST() int64                     { return 0 }
func (s fSample) F() float64                    { return s.f }
func (s fSample) H() *histogram.Histogram       { return nil }
func (s fSample) FH() *histogram.FloatHistogram { return nil }
func (s fSample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fSample) Copy() chunks.Sample           { return s }
