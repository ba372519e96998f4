package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"go.yaml.in/yaml/v3"
)

// The files of the stack, relative to this directory (the tests' working
// directory).
const (
	composeFile       = "docker-compose.yml"
	prometheusConfig  = "prometheus/prometheus.yml"
	alertRules        = "prometheus/alerts.yml"
	alertTests        = "prometheus/alerts_test.yml"
	collectorFile     = "otel-collector/config.yaml"
	alloyConfig       = "alloy/config.alloy"
	datasourcesDir    = "grafana/provisioning/datasources"
	dashboardProvider = "grafana/provisioning/dashboards/dashboards.yml"
	dashboardFile     = "grafana/dashboards/watermill-observability.json"
	promobsDir        = "../watermillobs/promobs"
)

// readYAML decodes a YAML file into v, failing the test on any error.
// Unknown keys are allowed: the structs below name only what is checked.
func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("cannot read %s: %v", path, err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s is not valid YAML: %v", path, err)
	}
}

// readJSON decodes a JSON file into v, failing the test on any error.
func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("cannot read %s: %v", path, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("%s is not valid JSON: %v", path, err)
	}
}

// mustExist fails the test when path is missing.
func mustExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("%s: %v", filepath.ToSlash(path), err)
	}
}
