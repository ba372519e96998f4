package promobs_test

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cqrs-ddd/watermill-observability"

// The saga metrics are read from hook operations and a small interface, so
// that promobs links neither the saga runtime nor a Redis client, and the
// saga runtime links no Prometheus (DESIGN.md, "Metrics for the runtime
// packages").
func TestSagaMetrics_dependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	deps := func(pkg string) []string {
		out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		return strings.Fields(string(out))
	}
	hasPrefix := func(list []string, prefix string) string {
		for _, dep := range list {
			if dep == prefix || strings.HasPrefix(dep, prefix+"/") {
				return dep
			}
		}
		return ""
	}

	promobs := deps(module + "/watermillobs/promobs")
	if hasPrefix(promobs, module+"/watermillobs/promobs") == "" {
		t.Fatalf("go list -deps promobs does not list promobs itself: %q", promobs)
	}
	for _, forbidden := range []string{
		module + "/sagas",
		module + "/outbox",
		module + "/projections",
		"github.com/redis/go-redis",
		"github.com/ThreeDotsLabs/watermill-redisstream",
		"github.com/ThreeDotsLabs/watermill-sql",
	} {
		if dep := hasPrefix(promobs, forbidden); dep != "" {
			t.Errorf("promobs links %s", dep)
		}
	}

	sagas := deps(module + "/sagas")
	if hasPrefix(sagas, module+"/sagas") == "" {
		t.Fatalf("go list -deps sagas does not list sagas itself: %q", sagas)
	}
	for _, forbidden := range []string{
		module + "/watermillobs/promobs",
		module + "/watermillobs/sentryobs",
		"github.com/prometheus/client_golang",
		"github.com/getsentry/sentry-go",
	} {
		if dep := hasPrefix(sagas, forbidden); dep != "" {
			t.Errorf("sagas links %s", dep)
		}
	}
}
