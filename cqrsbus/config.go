package cqrsbus

import (
	"context"
	"log/slog"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
	"github.com/cqrs-ddd/watermill-observability/internal/spans"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// ScopeName is the instrumentation scope of the spans this package starts.
const ScopeName = "github.com/cqrs-ddd/watermill-observability/cqrsbus"

// Config configures an [Instrumentation]. A zero Config uses the
// OpenTelemetry globals and the hook registry of each call's context.
type Config struct {
	// TracerProvider creates the tracer of the cqrs.{MessageType} handling
	// spans. If not set, otel.GetTracerProvider() is used.
	TracerProvider trace.TracerProvider

	// Propagator writes the trace context into message metadata on send and
	// reads it back on handle. If not set, the global propagator is looked
	// up per message, as watermillobs does without WithPropagators (W3C
	// TraceContext and Baggage while none was ever set). Give the same
	// propagator to watermillobs (WithPropagators).
	Propagator propagation.TextMapPropagator

	// Registry runs the hook operations of the handling side
	// (command.handle.*, event.dispatch.*, event.handler.*). If not set,
	// the registry carried by the message's context is used
	// (hooks.FromContext), which falls back to hooks.Default.
	Registry *hooks.Registry

	// Logger receives this package's own diagnostics: panics recovered in
	// the instrumentation and hooks that panicked. If not set, slog.Default
	// is used.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.TracerProvider == nil {
		c.TracerProvider = otel.GetTracerProvider()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Instrumentation chains observability into the hooks of Watermill's
// components/cqrs configurations: OnSend, OnPublish, the processors'
// OnHandle, and requestreply's ModifyNotificationMessage. Build it once with
// [New] and apply it to every configuration of a service. It is safe for
// concurrent use.
//
// On the sending side it stamps the metadata contract onto each message; on
// the handling side it restores the conversation into the handler's
// context, runs the hook operations and opens the cqrs.{MessageType} span.
// Transport spans, metrics, logs and Sentry capture come from
// watermillobs.Instrument on the router the processors use and
// watermillobs.NewPublisher on the buses' publishers: this package does not
// repeat them.
type Instrumentation struct {
	tracer    trace.Tracer
	registry  *hooks.Registry // nil: from the message's context
	logger    *slog.Logger
	prop      *contract.Propagation
	startOpts []trace.SpanStartOption
	names     spans.Names
}

// New returns an Instrumentation configured by config. Defaults are
// resolved once, here.
func New(config Config) *Instrumentation {
	config.setDefaults()
	return &Instrumentation{
		tracer:    spans.NewTracer(config.TracerProvider, ScopeName, trace.WithInstrumentationVersion(watermillobs.Version)),
		registry:  config.Registry,
		logger:    config.Logger,
		prop:      contract.NewPropagation(contract.PropagationConfig{Propagator: config.Propagator, Logger: config.Logger}),
		startOpts: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindInternal)},
		names:     spans.Names{Build: func(typ string) string { return "cqrs." + typ }},
	}
}

// registryFor returns the configured registry, else the one of ctx.
func registryFor(r *hooks.Registry, ctx context.Context) *hooks.Registry {
	if r != nil {
		return r
	}
	return hooks.FromContext(ctx)
}

// recovered logs and counts a panic recovered inside this package's own
// code.
func (i *Instrumentation) recovered(ctx context.Context, during string, v any) {
	panics.Report(ctx, i.logger, "cqrsbus: recovered panic in instrumentation", v, slog.String("during", during))
}
