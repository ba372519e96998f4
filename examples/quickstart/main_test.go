package main

import (
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
)

// TestMain fails the tests if a goroutine outlives them; TestDemo runs the
// demo in this process, so that covers the demo's own goroutines.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestDemo runs make demo-hooks's program and checks each step's effect.
func TestDemo(t *testing.T) {
	text := testsvc.Stdout(t, main)
	for _, want := range []string{
		"correlation ID: true\n",
		// The slow step is reported with its correlation ID.
		`level=WARN msg="slow operation" operation=saga.run.OrderSaga`,
		// The rate limiter refuses before the work runs, then is switched off.
		"  <- publisher.publish.noisy (error: publisher.publish.noisy: rate limited)\n",
		"  published\n",
		// The audit hook sees only its operations, with their outcome.
		"audit trail:\n  uow.commit -> success\n  outbox.process_batch -> error\n",
		// Notify runs the pipeline too, once flushed.
		"  -> message_registry.register\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output has no %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "(never printed)") {
		t.Errorf("the refused publish ran its work:\n%s", text)
	}
	if strings.Count(text, "correlation_id=") != 1 {
		t.Errorf("want the slow-operation line with a correlation_id:\n%s", text)
	}
}
