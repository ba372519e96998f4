package projections_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The projection runtime emits hook operations and never links a telemetry
// backend (DESIGN.md, "Metrics for the runtime packages").
func TestDependencies_no_telemetry_backend(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/cqrs-ddd/watermill-observability/projections").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	for _, dep := range deps {
		for _, forbidden := range []string{
			"github.com/prometheus/",
			"github.com/getsentry/",
			"github.com/cqrs-ddd/watermill-observability/watermillobs",
			"go.opentelemetry.io/otel/sdk",
			"github.com/ThreeDotsLabs/watermill-redisstream",
		} {
			if strings.HasPrefix(dep, forbidden) {
				t.Errorf("projections links %s", dep)
			}
		}
	}
}
