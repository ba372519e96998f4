package watermillobs_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// hookSpanNames runs each operation through reg and returns the names of the
// spans recorded meanwhile.
func hookSpanNames(t *testing.T, reg *hooks.Registry, sr *tracetest.SpanRecorder, ops ...string) []string {
	t.Helper()
	before := len(sr.Ended())
	for _, op := range ops {
		if err := reg.Run(context.Background(), op, nil, func(context.Context) error { return nil }); err != nil {
			t.Fatalf("%s: %v", op, err)
		}
	}
	var names []string
	for _, s := range sr.Ended()[before:] {
		names = append(names, s.Name())
	}
	return names
}

func TestDefaultFrameworkTraceOperations(t *testing.T) {
	// The reference's production profile, plus outbox.forward.*: the span
	// of the hop out of the outbox.
	want := []string{
		"uow.*", "event.dispatch.*", "publisher.publish.*", "consumer.consume.*",
		"outbox.process_batch", "outbox.retry_failed", "outbox.save_events", "outbox.forward.*",
		"saga.run.*", "saga.recovery.*",
		"scheduler.dispatch.batch", "scheduler.worker.process",
		"event_sourcing.mediator.*", "persistence_orchestrator.orchestrate",
		"projection.process.*", "replay.start.*",
		"lock.acquire.*", "redis.lock.acquire.*", "redis.lock.release.*",
	}
	if !slices.Equal(watermillobs.DefaultFrameworkTraceOperations, want) {
		t.Errorf("DefaultFrameworkTraceOperations = %q, want %q", watermillobs.DefaultFrameworkTraceOperations, want)
	}
}

func TestInstallFrameworkHooks_operations(t *testing.T) {
	tests := []struct {
		name   string
		ops    []string
		traced []string
		silent []string
	}{
		{
			name: "default profile",
			traced: []string{
				"publisher.publish.orders", "uow.commit", "uow.rollback", "consumer.consume.OrderPlaced",
				"event.dispatch.OrderPlaced", "outbox.process_batch", "saga.run.OrderSaga",
				"saga.recovery.pending", "projection.process.orders", "redis.lock.release.order",
			},
			silent: []string{
				"event.handler.OrderPlaced.SendMail", "cache.get", "outbox.buffered.publish",
				"saga.handle_event.OrderPlaced", "event_store.append.Order",
			},
		},
		{
			name:   "override",
			ops:    []string{"event.handler.*"},
			traced: []string{"event.handler.OrderPlaced.SendMail"},
			silent: []string{"uow.commit", "publisher.publish.orders"},
		},
		{
			name:   "everything",
			ops:    []string{"*"},
			traced: []string{"uow.commit", "cache.get", "event.handler.X.Y"},
		},
		{
			name:   "empty override keeps the default",
			ops:    []string{},
			traced: []string{"uow.commit"},
			silent: []string{"cache.get"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr, tp := newHookTracer(t)
			reg := hooks.NewRegistry()
			g, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg, TracerProvider: tp, Operations: tt.ops})
			if err != nil {
				t.Fatal(err)
			}
			if g.Name() != "watermillobs.span" || g.Name() != watermillobs.FrameworkHookName {
				t.Errorf("registration name = %q", g.Name())
			}
			if got := hookSpanNames(t, reg, sr, tt.traced...); !slices.Equal(got, tt.traced) {
				t.Errorf("traced %q, want %q", got, tt.traced)
			}
			if got := hookSpanNames(t, reg, sr, tt.silent...); len(got) != 0 {
				t.Errorf("traced %q, want nothing", got)
			}
		})
	}
}

func TestInstallFrameworkHooks_enabled(t *testing.T) {
	sr, tp := newHookTracer(t)
	reg := hooks.NewRegistry()
	g, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg, TracerProvider: tp, Disabled: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := hookSpanNames(t, reg, sr, "uow.commit"); len(got) != 0 {
		t.Errorf("disabled hook traced %q", got)
	}
	if reg.Enabled("uow.commit") {
		t.Error("registry reports a disabled hook as enabled")
	}
	g.SetEnabled(true)
	if got := hookSpanNames(t, reg, sr, "uow.commit"); !slices.Equal(got, []string{"uow.commit"}) {
		t.Errorf("enabled hook traced %q, want uow.commit", got)
	}
	g.Unregister()
	if got := hookSpanNames(t, reg, sr, "uow.commit"); len(got) != 0 {
		t.Errorf("unregistered hook traced %q", got)
	}
}

func TestInstallFrameworkHooks_badPattern(t *testing.T) {
	reg := hooks.NewRegistry()
	g, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg, Operations: []string{"uow.*", "saga.[run"}})
	if err == nil {
		t.Fatal("want an error for a malformed pattern")
	}
	if g != nil {
		t.Error("want no registration on error")
	}
	if !errors.Is(err, hooks.ErrBadPattern) || !strings.HasPrefix(err.Error(), "cannot install framework hooks: ") {
		t.Errorf("error = %v, want a wrapped hooks.ErrBadPattern", err)
	}
	if n := len(reg.Registrations()); n != 0 {
		t.Errorf("registry has %d registrations after a failed install", n)
	}
}

func TestInstallFrameworkHooks_priority(t *testing.T) {
	tests := []struct {
		name       string
		priority   int
		wantInSpan bool
	}{
		{name: "outside other hooks", priority: -10, wantInSpan: true},
		{name: "inside other hooks", priority: 10, wantInSpan: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sr, tp := newHookTracer(t)
			reg := hooks.NewRegistry()
			var sawSpan bool
			reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
				sawSpan = trace.SpanContextFromContext(ctx).IsValid()
				return next(ctx)
			}))
			g, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg, TracerProvider: tp, Priority: tt.priority})
			if err != nil {
				t.Fatal(err)
			}
			if g.Priority() != tt.priority {
				t.Errorf("Priority() = %d, want %d", g.Priority(), tt.priority)
			}
			if got := hookSpanNames(t, reg, sr, "uow.commit"); len(got) != 1 {
				t.Fatalf("traced %q, want one span", got)
			}
			if sawSpan != tt.wantInSpan {
				t.Errorf("other hook saw a span = %v, want %v", sawSpan, tt.wantInSpan)
			}
		})
	}
}
