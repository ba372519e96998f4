package watermillobs_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The dependency rules of the module, checked in one place: a program that
// imports only watermillobs links neither the Prometheus nor the Sentry
// client (they live in promobs and sentryobs); domain packages (cqrsbus,
// sagas, outbox, projections) link no backend at all; library code uses the OpenTelemetry API, never
// the SDK; hooks is standard library only (with the module's own
// standard-library-only internal/panics).
func TestDependencyRules(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	deps := func(pkg string) string {
		out, err := exec.Command(goTool, "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		return string(out)
	}
	forbidden := []string{"github.com/prometheus/client_golang", "github.com/getsentry/sentry-go"}

	for _, pkg := range []string{"watermillobs", "cqrsbus", "sagas", "outbox", "projections"} {
		list := deps("github.com/cqrs-ddd/watermill-observability/" + pkg)
		for _, f := range forbidden {
			if strings.Contains(list, f) {
				t.Errorf("%s links %s", pkg, f)
			}
		}
	}
	// The check itself works: the backends do link them.
	backends := deps("github.com/cqrs-ddd/watermill-observability/watermillobs/promobs") +
		deps("github.com/cqrs-ddd/watermill-observability/watermillobs/sentryobs")
	for _, f := range forbidden {
		if !strings.Contains(backends, f) {
			t.Errorf("go list found no %s even in its backend package", f)
		}
	}
	// Library code uses the OpenTelemetry API only; the SDK is for programs
	// and tests.
	for _, pkg := range []string{"watermillobs", "watermillobs/promobs", "watermillobs/sentryobs", "cqrsbus", "sagas", "outbox", "projections"} {
		for _, dep := range strings.Fields(deps("github.com/cqrs-ddd/watermill-observability/" + pkg)) {
			if strings.HasPrefix(dep, "go.opentelemetry.io/otel/sdk") {
				t.Errorf("%s imports the OpenTelemetry SDK (%s)", pkg, dep)
			}
		}
	}
	for _, dep := range strings.Fields(deps("github.com/cqrs-ddd/watermill-observability/hooks")) {
		first, _, _ := strings.Cut(dep, "/")
		// internal/panics and internal/uuidtext are themselves standard
		// library only: the first counts the panics that hooks recovers
		// with those of every other package.
		own := dep == "github.com/cqrs-ddd/watermill-observability/hooks" ||
			dep == "github.com/cqrs-ddd/watermill-observability/internal/panics" ||
			dep == "github.com/cqrs-ddd/watermill-observability/internal/uuidtext"
		if strings.Contains(first, ".") && !own {
			t.Errorf("hooks imports %s; it must stay standard library only", dep)
		}
	}
	// The metadata contract imports nothing but the standard library,
	// hooks, Watermill's message package and the OpenTelemetry API (plus
	// the module's standard-library-only internal/bound).
	out, err := exec.Command(goTool, "list", "-f", "{{range .Imports}}{{.}} {{end}}", "github.com/cqrs-ddd/watermill-observability/contract").CombinedOutput()
	if err != nil {
		t.Fatalf("go list contract: %v\n%s", err, out)
	}
	for _, imp := range strings.Fields(string(out)) {
		first, _, _ := strings.Cut(imp, "/")
		allowed := !strings.Contains(first, ".") ||
			imp == "github.com/cqrs-ddd/watermill-observability/hooks" ||
			imp == "github.com/cqrs-ddd/watermill-observability/internal/bound" ||
			imp == "github.com/ThreeDotsLabs/watermill/message" ||
			imp == "go.opentelemetry.io/otel" ||
			imp == "go.opentelemetry.io/otel/propagation" ||
			strings.HasPrefix(imp, "go.opentelemetry.io/otel/trace") ||
			strings.HasPrefix(imp, "go.opentelemetry.io/otel/attribute")
		if !allowed {
			t.Errorf("contract imports %s", imp)
		}
	}
}
