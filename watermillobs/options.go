package watermillobs

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/spans"
)

// config holds the resolved options. Constructors resolve it once and copy
// what they need; nothing reads options per message.
type config struct {
	TracerProvider trace.TracerProvider
	// Propagators is nil unless WithPropagators was given: then the global
	// propagator is resolved per use (see propagator).
	Propagators propagation.TextMapPropagator
	Logger      *slog.Logger
	// Registry is nil when the registry should come from each message's
	// context (hooks.FromContext): no WithHookRegistry.
	Registry *hooks.Registry

	MessagingSystem string
	TopicTemplate   contract.TopicTemplateFunc
}

func newConfig(opts []Option) config {
	c := config{
		TracerProvider: otel.GetTracerProvider(),
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// propagation returns the metadata contract writer and reader of c.
func (c *config) propagation() *contract.Propagation {
	return contract.NewPropagation(contract.PropagationConfig{Propagator: c.Propagators, Logger: c.Logger})
}

func (c *config) tracer() trace.Tracer {
	return spans.NewTracer(c.TracerProvider, ScopeName, trace.WithInstrumentationVersion(Version))
}

// messagingSystem returns the WithMessagingSystem value, else the system
// told by the Go type of the wrapped publisher or subscriber (beneath the
// decorators that unwrap, see [transport]) when it is a known transport,
// else "" (decided per message; see systemOf).
func (c *config) messagingSystem(pubsub any) string {
	if c.MessagingSystem != "" {
		return c.MessagingSystem
	}
	return messagingSystem(fmt.Sprintf("%T", transport(pubsub)))
}

// maxUnwrap bounds how many decorators [transport] looks through, so a
// decorator that unwraps to itself cannot loop.
const maxUnwrap = 16

// transport returns the publisher or subscriber beneath the decorators of
// pubsub that tell what they decorate with an Unwrap method (this
// package's Publisher and Subscriber, promobs' publisher decorator), so
// that NewPublisher(metrics.DecoratePublisher(redisPublisher)) still names
// the transport "redis".
func transport(pubsub any) any {
	for range maxUnwrap {
		var next any
		switch u := pubsub.(type) {
		case interface{ Unwrap() message.Publisher }:
			if p := u.Unwrap(); p != nil {
				next = p
			}
		case interface{ Unwrap() message.Subscriber }:
			if s := u.Unwrap(); s != nil {
				next = s
			}
		}
		if next == nil {
			return pubsub
		}
		pubsub = next
	}
	return pubsub
}

func (c *config) logger() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// registryOr returns r, or the registry ctx carries when r is nil (no
// WithHookRegistry option).
func registryOr(r *hooks.Registry, ctx context.Context) *hooks.Registry {
	if r != nil {
		return r
	}
	return hooks.FromContext(ctx)
}

// An Option is a setting shared by the constructors of this package:
// [Instrument], [NewPublisher], [PublisherDecorator], [NewSubscriber],
// [Tracing], [Correlation], [Logging], [ConsumeHooks] and [NewSpanHook].
// Give one slice of them to every constructor of a service; each uses those
// that concern what it does (Logging starts no spans, so it has no use for a
// TracerProvider).
//
// A setting that belongs to one constructor is a field of its config struct
// instead ([InstrumentConfig], [TracingConfig], [FrameworkHooksConfig]), so
// that no constructor can be given a setting it would ignore.
type Option interface{ apply(*config) }

type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithTracerProvider sets the provider of the tracers. A nil provider is
// ignored. If not set, the global provider (otel.GetTracerProvider) is used.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return optionFunc(func(c *config) {
		if tp != nil {
			c.TracerProvider = tp
		}
	})
}

// WithPropagators sets the propagator that writes and reads trace context
// and baggage in message metadata. A nil propagator is ignored. If not set,
// the global propagator (otel.GetTextMapPropagator) is used, looked up per
// message, so that one set after the router was instrumented still
// applies; while no global propagator has been set at all, W3C TraceContext
// and Baggage are used and an Info record says so once. An empty composite
// (propagation.NewCompositeTextMapPropagator(), also what
// OTEL_PROPAGATORS=none gives), here or as the global, turns propagation
// off.
func WithPropagators(p propagation.TextMapPropagator) Option {
	return optionFunc(func(c *config) {
		if p != nil {
			c.Propagators = p
		}
	})
}

// WithLogger sets the logger for log records and for the package's own
// diagnostics. A nil logger is ignored. If not set, slog.Default is used.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(c *config) {
		if l != nil {
			c.Logger = l
		}
	})
}

// WithHookRegistry sets the hook registry that the publish and consume
// operations are run through. A nil registry is ignored. If not set, the
// registry carried by the message's context (hooks.WithRegistry) is used,
// else hooks.Default.
func WithHookRegistry(r *hooks.Registry) Option {
	return optionFunc(func(c *config) {
		if r != nil {
			c.Registry = r
		}
	})
}

// WithMessagingSystem sets the messaging.system span attribute, e.g. "redis"
// or "kafka". If not set, it is derived from the transport: the Go type of
// the publisher or subscriber given to NewPublisher or NewSubscriber, else
// the one given to the router's AddHandler (message.PublisherNameFromCtx,
// message.SubscriberNameFromCtx); when neither names a known transport, the
// attribute is omitted.
func WithMessagingSystem(system string) Option {
	return optionFunc(func(c *config) { c.MessagingSystem = system })
}

// WithTopicTemplate sets the function that maps per-request topics to a
// template (see [contract.TopicTemplateFunc]), so that span names and hook
// operation names stay few when replies or other per-request messages each
// go to a topic of their own. Such spans carry the template as
// messaging.destination.template, messaging.destination.temporary=true, and
// the raw topic only in messaging.destination.name. Give promobs the same
// function (promobs.WithTopicTemplate) so that its topic label agrees.
// Messages of kind reply use [contract.TemporaryDestination] when fn does not map
// their topic. A nil fn is ignored. If not set, only replies are templated.
func WithTopicTemplate(fn contract.TopicTemplateFunc) Option {
	return optionFunc(func(c *config) {
		if fn != nil {
			c.TopicTemplate = fn
		}
	})
}
