package deploy

import (
	"os"
	"strings"
	"testing"
)

// readmeFile is the top-level README, whose "PromQL" section lists the
// queries the dashboard uses.
const readmeFile = "../README.md"

// readmeWindow is the range README writes where the dashboard writes
// Grafana's $__rate_interval.
const readmeWindow = "5m"

// readmePromQL returns the expressions of README's ```promql blocks: one
// per line, "#" lines being comments.
func readmePromQL(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(readmeFile)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "```promql":
			in = true
		case in && trimmed == "```":
			in = false
		case in && trimmed != "" && !strings.HasPrefix(trimmed, "#"):
			out = append(out, trimmed)
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no ```promql block", readmeFile)
	}
	return out
}

// normalizePromQL makes two spellings of one query compare equal: the
// dashboard's $__rate_interval as README's window, runs of white space as
// one space.
func normalizePromQL(expr string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(expr, "$__rate_interval", readmeWindow)), " ")
}

// TestDashboardQueriesInREADME: every Prometheus query of the dashboard is
// in README's PromQL section, and README lists no query the dashboard
// lacks, so what users copy from README is what the dashboard shows.
func TestDashboardQueriesInREADME(t *testing.T) {
	documented := map[string]bool{}
	for _, e := range readmePromQL(t) {
		documented[normalizePromQL(e)] = true
	}
	used := map[string]bool{}
	for _, q := range dashboardQueries(t) {
		e := normalizePromQL(q.expr)
		used[e] = true
		if !documented[e] {
			t.Errorf("panel %q, query %s is not in README's PromQL section:\n  %s", q.panel, q.refID, e)
		}
	}
	for e := range documented {
		if !used[e] {
			t.Errorf("README's PromQL section has a query no dashboard panel uses:\n  %s", e)
		}
	}
}
