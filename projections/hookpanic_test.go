package projections_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

// A hook that panics never changes what the worker does: every event is
// applied once, and the panic is logged.
func TestWorker_a_panicking_hook_leaves_the_projection_unchanged(t *testing.T) {
	t.Parallel()
	reg := hooks.NewRegistry()
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		if err := next(ctx); err != nil {
			return err
		}
		panic("broken hook after " + op.Name)
	}), hooks.WithOperations("projection.process.*", "checkpoint.save.*"))
	logger, logs := newLogger()
	log := projections.NewMemoryLog()
	for i := range 30 {
		log.Append("events", eventMessage(i, 4))
	}
	w, err := projections.NewWorker(projections.Config{
		Projection: sumProjection("panicky"), Streams: []string{"events"}, Source: log,
		Store: projections.NewMemoryStore(), Hooks: reg, Logger: logger, BatchSize: 7, Block: 5 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, w)
	waitCaughtUp(t, w, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	compareModels(t, readModel(t, w), expectedModel(0, 30, 4))
	if !strings.Contains(logs.String(), "a hook panicked; the operation ran unobserved") {
		t.Fatalf("log = %s, want the hook panic record", logs.String())
	}
}
