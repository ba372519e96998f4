package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashboardPanel struct {
	ID         int              `json:"id"`
	Type       string           `json:"type"`
	Title      string           `json:"title"`
	Datasource *datasourceRef   `json:"datasource"`
	Targets    []panelTarget    `json:"targets"`
	Panels     []dashboardPanel `json:"panels"`
}

type panelTarget struct {
	RefID      string         `json:"refId"`
	Datasource *datasourceRef `json:"datasource"`
	Expr       string         `json:"expr"`
}

type dashboard struct {
	UID    string           `json:"uid"`
	Title  string           `json:"title"`
	Panels []dashboardPanel `json:"panels"`
}

type provisionedDatasources struct {
	Datasources []struct {
		Name     string         `yaml:"name"`
		UID      string         `yaml:"uid"`
		Type     string         `yaml:"type"`
		URL      string         `yaml:"url"`
		JSONData map[string]any `yaml:"jsonData"`
	} `yaml:"datasources"`
}

// datasources returns the provisioned datasources' types by UID.
func datasources(t *testing.T) (types map[string]string, all provisionedDatasources) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(datasourcesDir, "*.yml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no datasource files in %s (%v)", datasourcesDir, err)
	}
	types = make(map[string]string)
	for _, f := range files {
		var p provisionedDatasources
		readYAML(t, f, &p)
		for _, ds := range p.Datasources {
			if ds.UID == "" {
				t.Errorf("%s: datasource %q has no fixed uid", f, ds.Name)
			}
			if _, dup := types[ds.UID]; dup {
				t.Errorf("%s: datasource uid %q is provisioned twice", f, ds.UID)
			}
			types[ds.UID] = ds.Type
		}
		all.Datasources = append(all.Datasources, p.Datasources...)
	}
	return types, all
}

// panels returns every panel of the dashboard, those inside rows included.
func panels(t *testing.T) []dashboardPanel {
	t.Helper()
	var d dashboard
	readJSON(t, dashboardFile, &d)
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard needs a fixed uid and a title: uid %q, title %q", d.UID, d.Title)
	}
	var out []dashboardPanel
	var walk func([]dashboardPanel)
	walk = func(ps []dashboardPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	if len(out) == 0 {
		t.Fatal("the dashboard has no panels")
	}
	return out
}

// TestDashboardDatasources checks that every panel and every query of the
// dashboard names, by UID, a datasource that the provisioning files create
// with the same type, and that the dashboard covers all three.
func TestDashboardDatasources(t *testing.T) {
	types, _ := datasources(t)
	used := make(map[string]bool)
	ids := make(map[int]bool)
	check := func(where string, ref *datasourceRef) {
		if ref == nil || ref.UID == "" {
			t.Errorf("%s has no datasource UID", where)
			return
		}
		typ, ok := types[ref.UID]
		if !ok {
			t.Errorf("%s uses datasource UID %q, which is not provisioned", where, ref.UID)
			return
		}
		if ref.Type != typ {
			t.Errorf("%s names datasource %q as type %q; it is %q", where, ref.UID, ref.Type, typ)
		}
		used[ref.UID] = true
	}
	for _, p := range panels(t) {
		if ids[p.ID] {
			t.Errorf("panel id %d is used twice", p.ID)
		}
		ids[p.ID] = true
		if p.Type == "row" {
			continue
		}
		where := fmt.Sprintf("panel %q", p.Title)
		check(where, p.Datasource)
		if len(p.Targets) == 0 {
			t.Errorf("%s has no query", where)
		}
		for _, tg := range p.Targets {
			check(fmt.Sprintf("%s, query %s", where, tg.RefID), tg.Datasource)
		}
	}
	for uid := range types {
		if !used[uid] {
			t.Errorf("no panel uses datasource %q", uid)
		}
	}
}

// TestDatasourceLinks checks the links between the datasources: exemplars
// and log lines lead to traces, spans lead to logs, each by a provisioned
// UID.
func TestDatasourceLinks(t *testing.T) {
	types, all := datasources(t)
	byType := make(map[string]map[string]any)
	for _, ds := range all.Datasources {
		byType[ds.Type] = ds.JSONData
	}
	wantUID := func(where string, v any, typ string) {
		uid, _ := v.(string)
		if types[uid] != typ {
			t.Errorf("%s links to datasource %q, want a provisioned %s datasource", where, uid, typ)
		}
	}
	ex, _ := byType["prometheus"]["exemplarTraceIdDestinations"].([]any)
	if len(ex) == 0 {
		t.Error("the Prometheus datasource has no exemplarTraceIdDestinations")
	}
	for _, e := range ex {
		m, _ := e.(map[string]any)
		if m["name"] != "trace_id" {
			t.Errorf("exemplar destination %v: promobs' exemplar label is trace_id", m)
		}
		wantUID("exemplar destination", m["datasourceUid"], "jaeger")
	}
	fields, _ := byType["loki"]["derivedFields"].([]any)
	found := false
	for _, f := range fields {
		m, _ := f.(map[string]any)
		if re, _ := m["matcherRegex"].(string); strings.Contains(re, "trace_id") {
			found = true
			wantUID("the Loki derived field "+fmt.Sprint(m["name"]), m["datasourceUid"], "jaeger")
		}
	}
	if !found {
		t.Error("the Loki datasource has no derived field on trace_id")
	}
	logs, _ := byType["jaeger"]["tracesToLogsV2"].(map[string]any)
	wantUID("the Jaeger datasource's traces to logs", logs["datasourceUid"], "loki")
}

// dashboardQuery is one Prometheus query of a panel.
type dashboardQuery struct{ panel, refID, expr string }

// grafanaVariables are the built-in variables the dashboard's queries use,
// with values that make plain PromQL of them.
var grafanaVariables = strings.NewReplacer(
	"$__rate_interval", "1m",
	"$__interval", "1m",
	"$__range", "1h",
)

// dashboardPromQL returns the Prometheus queries of the dashboard with
// Grafana's variables replaced, ready for Prometheus.
func dashboardPromQL(t *testing.T) []dashboardQuery {
	t.Helper()
	qs := dashboardQueries(t)
	for i := range qs {
		qs[i].expr = grafanaVariables.Replace(qs[i].expr)
	}
	return qs
}

// dashboardQueries returns the Prometheus queries of the dashboard as
// written, Grafana's variables included.
func dashboardQueries(t *testing.T) []dashboardQuery {
	t.Helper()
	var out []dashboardQuery
	for _, p := range panels(t) {
		for _, tg := range p.Targets {
			ds := tg.Datasource
			if ds == nil {
				ds = p.Datasource
			}
			if ds == nil || ds.Type != "prometheus" {
				continue
			}
			if strings.TrimSpace(tg.Expr) == "" {
				t.Errorf("panel %q, query %s has no expr", p.Title, tg.RefID)
				continue
			}
			out = append(out, dashboardQuery{panel: p.Title, refID: tg.RefID, expr: tg.Expr})
		}
	}
	return out
}

// TestDashboardPromQLParses has promtool parse every Prometheus query of the
// dashboard, written as the recording rules of a temporary rule file.
func TestDashboardPromQLParses(t *testing.T) {
	queries := dashboardPromQL(t)
	if len(queries) == 0 {
		t.Fatal("the dashboard has no Prometheus query")
	}
	type rule struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rule
	for i, q := range queries {
		if strings.Contains(q.expr, "$") {
			t.Errorf("panel %q, query %s uses a variable this test does not know: %s", q.panel, q.refID, q.expr)
		}
		rules = append(rules, rule{Record: fmt.Sprintf("dashboard:query_%d:%s", i, q.refID), Expr: q.expr})
	}
	file := map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}}
	data, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "dashboard.yml"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := promtool(t, dir, "check", "rules", "dashboard.yml")
	if err != nil {
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s\nrules:\n%s", err, out, data)
	}
	if want := fmt.Sprintf("%d rules found", len(rules)); !strings.Contains(out, want) {
		t.Errorf("promtool did not check all %d queries:\n%s", len(rules), out)
	}
}
