package cqrsbus_test

import (
	"os/exec"
	"strings"
	"testing"
)

// cqrsbus is a domain package: it must not link a telemetry backend.
func TestDependencies_no_backends(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/cqrs-ddd/watermill-observability/cqrsbus").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, f := range []string{"github.com/prometheus/client_golang", "github.com/getsentry/sentry-go", "go.opentelemetry.io/otel/sdk"} {
		if strings.Contains(string(out), f) {
			t.Errorf("cqrsbus links %s", f)
		}
	}
	if !strings.Contains(string(out), "github.com/ThreeDotsLabs/watermill/components/cqrs") {
		t.Error("go list found no components/cqrs: the check does not work")
	}
}
