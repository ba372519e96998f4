package deploy

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// promtool runs promtool with args in dir and returns its combined output.
// It fails the test, never skips it, when promtool is missing: the
// configuration would go unchecked.
func promtool(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool is not in PATH (%v): run bash scripts/install-prometheus.sh, as make test does", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err = cmd.Run()
	return out.String(), err
}

// TestPromtoolCheckConfig validates prometheus.yml and, through its
// rule_files, the alerting rules it loads.
func TestPromtoolCheckConfig(t *testing.T) {
	out, err := promtool(t, "prometheus", "check", "config", "prometheus.yml")
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	if !strings.Contains(out, "1 rule files found") {
		t.Errorf("prometheus.yml does not load the alerting rules:\n%s", out)
	}
}

// TestPromtoolCheckRules validates alerts.yml: PromQL, templates, names.
func TestPromtoolCheckRules(t *testing.T) {
	out, err := promtool(t, "prometheus", "check", "rules", "alerts.yml")
	if err != nil {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
}

// TestPromtoolTestRules runs the alerts' unit tests (alerts_test.yml): each
// alert fires on the series it is meant for, with its labels and rendered
// annotations, and stays silent on the others.
func TestPromtoolTestRules(t *testing.T) {
	out, err := promtool(t, "prometheus", "test", "rules", "alerts_test.yml")
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool test rules did not report SUCCESS:\n%s", out)
	}
}
