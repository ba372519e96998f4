package deploy

import (
	"slices"
	"testing"
)

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert  string            `yaml:"alert"`
			Record string            `yaml:"record"`
			Expr   string            `yaml:"expr"`
			Labels map[string]string `yaml:"labels"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

type ruleTestFile struct {
	RuleFiles []string `yaml:"rule_files"`
	Tests     []struct {
		Name          string `yaml:"name"`
		AlertRuleTest []struct {
			AlertName string `yaml:"alertname"`
			ExpAlerts []any  `yaml:"exp_alerts"`
		} `yaml:"alert_rule_test"`
	} `yaml:"tests"`
}

// alerts returns the alerting rules of alerts.yml by name, with their
// expressions.
func alerts(t *testing.T) map[string]string {
	t.Helper()
	var rf ruleFile
	readYAML(t, alertRules, &rf)
	out := make(map[string]string)
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if _, dup := out[r.Alert]; dup {
				t.Errorf("alert %s is defined twice", r.Alert)
			}
			out[r.Alert] = r.Expr
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s has no alerting rules", alertRules)
	}
	return out
}

// TestEveryAlertIsTested checks that alerts_test.yml tests every alert of
// alerts.yml both ways: a case where it fires and one where it must not,
// and that every alert has a severity.
func TestEveryAlertIsTested(t *testing.T) {
	defined := alerts(t)
	var tf ruleTestFile
	readYAML(t, alertTests, &tf)
	if !slices.Contains(tf.RuleFiles, "alerts.yml") {
		t.Errorf("%s does not load alerts.yml: rule_files %v", alertTests, tf.RuleFiles)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, a := range tc.AlertRuleTest {
			if _, ok := defined[a.AlertName]; !ok {
				t.Errorf("test %q checks alert %q, which alerts.yml does not define", tc.Name, a.AlertName)
			}
			if len(a.ExpAlerts) > 0 {
				fires[a.AlertName] = true
			} else {
				silent[a.AlertName] = true
			}
		}
	}
	var rf ruleFile
	readYAML(t, alertRules, &rf)
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" && r.Labels["severity"] == "" {
				t.Errorf("alert %s has no severity label", r.Alert)
			}
		}
	}
	for name := range defined {
		if !fires[name] {
			t.Errorf("alert %s has no test where it fires", name)
		}
		if !silent[name] {
			t.Errorf("alert %s has no test where it stays silent", name)
		}
	}
}
