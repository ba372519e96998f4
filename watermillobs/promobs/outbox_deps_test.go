package promobs_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The outbox metrics live in promobs without linking the outbox's
// database stack: promobs defines OutboxBacklogSource with plain Go types.
func TestOutboxMetricsDoNotLinkTheOutbox(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	out, err := exec.Command(goTool, "list", "-deps", "github.com/cqrs-ddd/watermill-observability/watermillobs/promobs").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, f := range []string{"github.com/ThreeDotsLabs/watermill-sql", "github.com/jackc/pgx", "github.com/lib/pq", "watermill-observability/outbox"} {
		if strings.Contains(string(out), f) {
			t.Errorf("promobs links %s", f)
		}
	}
}
