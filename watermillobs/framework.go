package watermillobs

import (
	"errors"
	"fmt"
	"slices"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// DefaultFrameworkTraceOperations is the operation profile that
// [InstallFrameworkHooks] traces unless [WithOperations] is given. It is
// meant for production: it covers lifecycle boundaries (units of work,
// dispatch, publish, consume, the outbox) and the orchestration control
// plane (sagas, schedulers, projections, replays, locks), and leaves out
// chatty families such as the per-handler "event.handler.*" operations and
// cache operations, which would multiply the spans of every message.
//
// To trace everything for a short diagnostic session, pass
// WithOperations("*"). Changing this variable affects only later calls.
var DefaultFrameworkTraceOperations = []string{
	"uow.*",
	"event.dispatch.*",
	"publisher.publish.*",
	"consumer.consume.*",
	"outbox.process_batch",
	"outbox.retry_failed",
	"outbox.save_events",
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

// InstallFrameworkHooks registers the span hook of [NewSpanHook], so that
// the operations that framework components run through the hook registry
// (publishing, consuming, units of work, sagas, projections, ...) become
// OpenTelemetry spans. Call it once at startup; each call registers another
// hook.
//
// Options:
//   - [WithRegistry] chooses the registry; if not set, [hooks.Default] is
//     used (not the registry of any context).
//   - [WithOperations] chooses the traced operation patterns; if not set
//     (or set to no patterns), [DefaultFrameworkTraceOperations] is used.
//   - [WithPriority] places the hook in the pipeline; lower runs outside, so
//     a negative priority makes the span enclose the other hooks' work.
//   - [WithEnabled](false) registers the hook switched off.
//   - [WithTracerProvider] chooses the tracer provider.
//
// The returned registration switches the hook on and off at run time
// (SetEnabled) or removes it (Unregister). InstallFrameworkHooks fails only
// for a malformed pattern, or when DefaultFrameworkTraceOperations was
// emptied and WithOperations not given.
func InstallFrameworkHooks(opts ...Option) (*hooks.Registration, error) {
	c := newConfig(opts)
	reg := c.Registry
	if reg == nil {
		reg = hooks.Default()
	}
	ops := c.Operations
	if len(ops) == 0 {
		ops = slices.Clone(DefaultFrameworkTraceOperations)
	}
	if len(ops) == 0 {
		// The hooks package reads "no patterns" as "every operation".
		return nil, errors.New("cannot install framework hooks: no operation patterns")
	}
	g, err := reg.Register(NewSpanHook(opts...),
		hooks.WithOperations(ops...),
		hooks.WithPriority(c.Priority),
		hooks.WithEnabled(!c.Disabled),
		hooks.WithName(FrameworkHookName),
	)
	if err != nil {
		return nil, fmt.Errorf("cannot install framework hooks: %w", err)
	}
	return g, nil
}
