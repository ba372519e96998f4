package watermillobs

import (
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// DefaultFrameworkTraceOperations is the operation profile that
// [InstallFrameworkHooks] traces unless FrameworkHooksConfig.Operations is
// given. It is
// meant for production: it covers lifecycle boundaries (units of work,
// dispatch, publish, consume, the outbox) and the orchestration control
// plane (sagas, schedulers, projections, replays, locks), and leaves out
// chatty families such as the per-handler "event.handler.*" operations and
// cache operations, which would multiply the spans of every message.
//
// To trace everything for a short diagnostic session, set Operations to
// []string{"*"}. Changing this variable affects only later calls.
var DefaultFrameworkTraceOperations = []string{
	"uow.*",
	"event.dispatch.*",
	"publisher.publish.*",
	"consumer.consume.*",
	"outbox.process_batch",
	"outbox.retry_failed",
	"outbox.save_events",
	// Ours: the forward of a saved message, linked to the context it was
	// saved with, with the time it spent in the outbox.
	"outbox.forward.*",
	"saga.run.*",
	"saga.recovery.*",
	"scheduler.dispatch.batch",
	"scheduler.worker.process",
	"event_sourcing.mediator.*",
	"persistence_orchestrator.orchestrate",
	"projection.process.*",
	"replay.start.*",
	"lock.acquire.*",
	"redis.lock.acquire.*",
	"redis.lock.release.*",
}

// FrameworkHookName is the name under which [InstallFrameworkHooks]
// registers its span hook (see [hooks.Registration.Name]).
const FrameworkHookName = "watermillobs.span"

// FrameworkHooksConfig configures [InstallFrameworkHooks]. The zero value
// installs the default profile on hooks.Default with the global tracer
// provider.
type FrameworkHooksConfig struct {
	// Registry is the registry the span hook is registered with. If not
	// set, hooks.Default is used (not the registry of any context).
	Registry *hooks.Registry

	// TracerProvider creates the tracer of the spans. If not set,
	// otel.GetTracerProvider() at the time of the call is used.
	TracerProvider trace.TracerProvider

	// Logger receives panics recovered in the tracing pipeline. If not set,
	// slog.Default is used.
	Logger *slog.Logger

	// Operations are the traced operation patterns. If not set (or empty),
	// [DefaultFrameworkTraceOperations] is used. Use "*" only for short
	// diagnostic sessions: it traces every operation.
	Operations []string

	// Priority places the span hook in the pipeline: lower runs outside,
	// so a negative priority makes the span enclose the other hooks' work.
	// If not set, 0 is used.
	Priority int

	// Disabled registers the span hook switched off; switch it on at run
	// time with the returned registration's SetEnabled. If not set, the
	// hook starts enabled.
	Disabled bool
}

// InstallFrameworkHooks registers the span hook of [NewSpanHook], so that
// the operations that framework components run through the hook registry
// (units of work, sagas, projections, outbox batches, ...) become
// OpenTelemetry spans. Call it once at startup; each call registers another
// hook.
//
// The returned registration switches the hook on and off at run time
// (SetEnabled) or removes it (Unregister). InstallFrameworkHooks fails only
// for a malformed pattern, or when DefaultFrameworkTraceOperations was
// emptied and config.Operations not given.
func InstallFrameworkHooks(config FrameworkHooksConfig) (*hooks.Registration, error) {
	reg := config.Registry
	if reg == nil {
		reg = hooks.Default()
	}
	ops := slices.Clone(config.Operations)
	if len(ops) == 0 {
		ops = slices.Clone(DefaultFrameworkTraceOperations)
	}
	if len(ops) == 0 {
		// The hooks package reads "no patterns" as "every operation".
		return nil, errors.New("cannot install framework hooks: no operation patterns")
	}
	g, err := reg.Register(NewSpanHook(WithTracerProvider(config.TracerProvider), WithLogger(config.Logger)),
		hooks.WithOperations(ops...),
		hooks.WithPriority(config.Priority),
		hooks.WithEnabled(!config.Disabled),
		hooks.WithName(FrameworkHookName),
	)
	if err != nil {
		return nil, fmt.Errorf("cannot install framework hooks: %w", err)
	}
	return g, nil
}
