package deploy

import (
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// metricKind tells whether a metric family has _bucket, _sum and _count
// series.
type metricKind int

const (
	plainMetric metricKind = iota
	histogramMetric
)

// prometheusBuiltins are series that Prometheus itself records for every
// target, which the rules may use besides promobs' metrics.
var prometheusBuiltins = map[string]metricKind{"up": plainMetric}

// pendingProjectionMetrics are the projection metrics of promobs that the
// rules and the dashboard use, as named on the branch that adds them. They
// count as exported only while promobs on this branch has no projection_*
// metric at all; once it has, every one of them must be among promobs' own
// names, so that a rename cannot go unnoticed.
var pendingProjectionMetrics = map[string]metricKind{
	"projection_lag_seconds":              plainMetric,
	"projection_lag_events":               plainMetric,
	"projection_lag_collect_errors_total": plainMetric,
	"projection_events_processed_total":   plainMetric,
	"projection_batch_duration_seconds":   histogramMetric,
}

// exportedMetrics returns the metric names that package promobs defines,
// read from its source: the Name of prometheus.*Opts literals, the first
// argument of its small constructors (counter, counterVec, histogram,
// histogramVec, desc) and the name argument of prometheus.BuildFQName.
// Reading the source rather than a copied list keeps the test true when a
// metric is renamed or added.
func exportedMetrics(t *testing.T) map[string]metricKind {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(promobsDir, "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no Go files in %s (%v)", promobsDir, err)
	}
	names := make(map[string]metricKind)
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("cannot parse %s: %v", path, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				typ := typeName(n.Type)
				if !strings.HasSuffix(typ, "Opts") {
					return true
				}
				for _, e := range n.Elts {
					kv, ok := e.(*ast.KeyValueExpr)
					if !ok || typeName(kv.Key) != "Name" {
						continue
					}
					if s, ok := stringLit(kv.Value); ok {
						add(names, s, typ == "HistogramOpts")
					}
				}
			case *ast.CallExpr:
				switch fn := typeName(n.Fun); fn {
				case "counter", "counterVec", "histogram", "histogramVec", "desc":
					if len(n.Args) > 0 {
						if s, ok := stringLit(n.Args[0]); ok {
							add(names, s, strings.HasPrefix(fn, "histogram"))
						}
					}
				case "BuildFQName":
					if len(n.Args) == 3 {
						if s, ok := stringLit(n.Args[2]); ok {
							add(names, s, false)
						}
					}
				}
			}
			return true
		})
	}
	// promobs checks bucket layouts on a throwaway histogram of this name;
	// it is never registered.
	delete(names, "promobs_check")
	return names
}

var metricNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]*$`)

func add(names map[string]metricKind, s string, histogram bool) {
	if !metricNameRE.MatchString(s) {
		return
	}
	if histogram {
		names[s] = histogramMetric
	} else if _, ok := names[s]; !ok {
		names[s] = plainMetric
	}
}

// typeName is the last identifier of an expression: Name for Name,
// prometheus.CounterOpts for CounterOpts.
func typeName(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return e.Sel.Name
	}
	return ""
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// knownMetrics is exportedMetrics plus Prometheus' own series and, until
// promobs has them, the pending projection metrics.
func knownMetrics(t *testing.T) map[string]metricKind {
	t.Helper()
	known := exportedMetrics(t)
	for _, anchor := range []string{"cqrs_message_total", "saga_instances_finished_total", "outbox_oldest_message_age_seconds"} {
		if _, ok := known[anchor]; !ok {
			t.Fatalf("reading promobs' metric names found no %s: the source layout changed; found %v", anchor, slices.Sorted(maps.Keys(known)))
		}
	}
	hasProjections := false
	for name := range known {
		if strings.HasPrefix(name, "projection_") {
			hasProjections = true
		}
	}
	for name, kind := range pendingProjectionMetrics {
		if !hasProjections {
			known[name] = kind
			continue
		}
		if got, ok := known[name]; !ok || got != kind {
			t.Errorf("promobs exports projection metrics, but not %s as expected: update the rules, the dashboard and pendingProjectionMetrics", name)
		}
	}
	maps.Copy(known, prometheusBuiltins)
	return known
}

var (
	promqlStringRE = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	// Grouping and matching clauses name labels, not series.
	promqlClauseRE = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promqlIdentRE  = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promqlKeywords = map[string]bool{
		"and": true, "or": true, "unless": true, "bool": true, "offset": true,
		"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
		"inf": true, "nan": true, "Inf": true, "NaN": true,
	}
)

// promqlMetrics returns the metric names that a PromQL expression selects.
// It is a small lexer rather than a parser (promtool validates the syntax):
// strings, label matchers, ranges and grouping clauses are removed, and an
// identifier left that is not followed by "(" (a function or an
// aggregation) and is not a keyword is a metric name.
func promqlMetrics(expr string) []string {
	s := promqlStringRE.ReplaceAllString(expr, `""`)
	s = removeBracketed(s, '{', '}')
	s = removeBracketed(s, '[', ']')
	s = promqlClauseRE.ReplaceAllString(s, " ")
	var names []string
	for _, loc := range promqlIdentRE.FindAllStringIndex(s, -1) {
		word := s[loc[0]:loc[1]]
		if loc[0] > 0 && (isDigit(s[loc[0]-1]) || s[loc[0]-1] == '.') {
			continue // the unit of a duration (10m) or an exponent
		}
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || promqlKeywords[word] {
			continue
		}
		if !slices.Contains(names, word) {
			names = append(names, word)
		}
	}
	return names
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// removeBracketed drops everything between open and close (not nested).
func removeBracketed(s string, open, close byte) string {
	var b strings.Builder
	depth := 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == open:
			depth++
		case s[i] == close && depth > 0:
			depth--
		case depth == 0:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// checkMetric reports a series name that is not exported: a histogram
// family may be used through its _bucket, _sum and _count series only.
func checkMetric(t *testing.T, known map[string]metricKind, where, name string) {
	t.Helper()
	if _, ok := known[name]; ok {
		return
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if kind, exists := known[base]; exists && kind == histogramMetric {
				return
			}
		}
	}
	t.Errorf("%s uses %s, which watermill-observability does not export", where, name)
}

func TestPromQLMetricsLexer(t *testing.T) {
	cases := []struct {
		expr string
		want []string
	}{
		{`up{job="orderflow"} == 0`, []string{"up"}},
		{`sum by (kind, le) (rate(cqrs_message_duration_seconds_bucket{outcome="x"}[5m]))`, []string{"cqrs_message_duration_seconds_bucket"}},
		{`sum(rate(a_total[1m])) by (kind) / on(kind) group_left(x) sum(b)`, []string{"a_total", "b"}},
		{"(x unless x offset 10m) or increase(y[10m]) > 1e3", []string{"x", "y"}},
		{`histogram_quantile(0.99, sum without (le) (rate(h_bucket{a=~"b|c"}[$__rate_interval])))`, []string{"h_bucket"}},
	}
	for _, c := range cases {
		if got := promqlMetrics(c.expr); !slices.Equal(got, c.want) {
			t.Errorf("promqlMetrics(%q) = %v, want %v", c.expr, got, c.want)
		}
	}
}

// TestAlertsUseExportedMetrics checks that every series an alert selects is
// one that watermill-observability exports: a misspelt name would make an
// alert that never fires, and promtool cannot tell.
func TestAlertsUseExportedMetrics(t *testing.T) {
	known := knownMetrics(t)
	for name, expr := range alerts(t) {
		used := promqlMetrics(expr)
		if len(used) == 0 {
			t.Errorf("alert %s selects no series: %s", name, expr)
		}
		for _, m := range used {
			checkMetric(t, known, "alert "+name, m)
		}
	}
}

// TestDashboardUsesExportedMetrics does the same for the dashboard's
// Prometheus queries.
func TestDashboardUsesExportedMetrics(t *testing.T) {
	known := knownMetrics(t)
	queries := dashboardPromQL(t)
	if len(queries) == 0 {
		t.Fatal("the dashboard has no Prometheus query")
	}
	for _, q := range queries {
		used := promqlMetrics(q.expr)
		if len(used) == 0 {
			t.Errorf("panel %q selects no series: %s", q.panel, q.expr)
		}
		for _, m := range used {
			checkMetric(t, known, "panel "+strconv.Quote(q.panel), m)
		}
	}
}

// TestExportedMetricsFound guards the source reading itself: the metric
// families of each area are found, histograms told apart.
func TestExportedMetricsFound(t *testing.T) {
	known := exportedMetrics(t)
	for _, want := range []string{
		"cqrs_message_duration_seconds", "watermill_messages_consumed_total", "watermill_publish_duration_seconds",
		"saga_oldest_active_age_seconds", "saga_timeouts_dropped_total", "saga_active_collect_errors_total",
		"outbox_backlog_messages", "outbox_time_in_outbox_seconds", "outbox_backlog_query_errors_total",
		"watermill_observability_recovered_panics_total",
	} {
		if _, ok := known[want]; !ok {
			t.Errorf("%s was not found in promobs' source", want)
		}
	}
	if known["cqrs_message_duration_seconds"] != histogramMetric || known["cqrs_message_total"] != plainMetric {
		t.Errorf("histograms are not told from other metrics: %v", known)
	}
}
