package watermillobs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/spans"
)

// ErrNilPublisher is returned when a nil publisher is decorated.
var ErrNilPublisher = errors.New("watermillobs: nil publisher")

// publishOperationPrefix is the hook operation family of publishing; the
// full name is the prefix plus the topic.
const publishOperationPrefix = "publisher.publish."

// Publisher decorates a Watermill publisher. For every message it starts a
// "send {topic}" span of kind PRODUCER as a child of the message context,
// writes the metadata contract (correlation and causation IDs, trace
// context, published_at; see [InjectMetadata]) without overwriting values
// the message has, and runs the publish through the hook operation
// "publisher.publish.{topic}".
//
// When no hook observes the operation family, the messages go to the
// wrapped publisher in one Publish call, as without the decorator. When a
// hook does, each message is published by its own call inside its own hook
// operation, so that hooks (a rate limiter, an audit trail) see every
// message; publishing stops at the first error.
type Publisher struct {
	pub      message.Publisher
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	registry *hooks.Registry
	// system is the messaging.system attribute when the option or the
	// wrapped publisher's type tells it, else nil (told per message).
	system  []attribute.KeyValue
	now     func() time.Time
	onPanic spans.PanicFunc
}

// NewPublisher returns pub decorated with tracing, metadata propagation and
// hook operations. pub must not be nil.
func NewPublisher(pub message.Publisher, opts ...Option) *Publisher {
	c := newConfig(opts)
	return &Publisher{
		pub:      pub,
		tracer:   c.tracer(),
		prop:     c.propagator(),
		registry: c.Registry,
		system:   c.fixedSystemAttr(pub),
		now:      time.Now,
		onPanic:  pipelinePanics(c.Logger),
	}
}

// PublisherDecorator returns a decorator for message.Router's
// AddPublisherDecorators that applies [NewPublisher].
func PublisherDecorator(opts ...Option) message.PublisherDecorator {
	return func(pub message.Publisher) (message.Publisher, error) {
		if pub == nil {
			return nil, ErrNilPublisher
		}
		return NewPublisher(pub, opts...), nil
	}
}

// Publish publishes msgs to topic through the wrapped publisher.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return p.pub.Publish(topic, msgs...)
	}
	boundedTopic := bound.String(topic, bound.Attribute)
	now := p.now()
	sendSpans := make([]trace.Span, len(msgs))
	for i, m := range msgs {
		if m == nil {
			continue
		}
		ctx, span := spans.Start(m.Context(), p.tracer, p.onPanic, spanName("send", boundedTopic),
			trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(systemAttr(p.system, message.PublisherNameFromCtx(m.Context()))...),
			trace.WithAttributes(
				semconv.MessagingDestinationName(boundedTopic),
				semconv.MessagingOperationName("send"),
				semconv.MessagingOperationTypeSend,
				semconv.MessagingMessageID(bound.String(m.UUID, bound.Attribute)),
				semconv.MessagingMessageBodySize(len(m.Payload)),
			))
		stampMessage(ctx, p.prop, m, now)
		if span.IsRecording() {
			span.SetAttributes(semconv.MessagingMessageConversationID(bound.String(m.Metadata.Get(CorrelationIDKey), bound.Attribute)))
		}
		// Inner decorators (metrics exemplars) and in-process subscribers
		// see the send span.
		m.SetContext(ctx)
		sendSpans[i] = span
	}

	err := p.publish(topic, msgs)

	for i, span := range sendSpans {
		if span == nil {
			continue
		}
		if err != nil {
			setSpanError(span, err)
		}
		spans.End(msgs[i].Context(), span, p.onPanic)
	}
	return err
}

func (p *Publisher) publish(topic string, msgs []*message.Message) error {
	reg := registryOr(p.registry, firstContext(msgs))
	if !reg.EnabledPrefix(publishOperationPrefix) {
		return p.pub.Publish(topic, msgs...)
	}
	name := publishOperationPrefix + topic
	for _, m := range msgs {
		if m == nil {
			continue
		}
		attrs := []slog.Attr{
			slog.String("topic", bound.String(topic, bound.Attribute)),
			slog.String("correlation_id", m.Metadata.Get(CorrelationIDKey)),
			slog.String("message.id", bound.String(m.UUID, bound.Attribute)),
			slog.String(hooks.MessageTypeKey, MessageType(m)),
		}
		err := reg.Run(m.Context(), name, attrs, func(context.Context) error {
			return p.pub.Publish(topic, m)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// Close closes the wrapped publisher.
func (p *Publisher) Close() error { return p.pub.Close() }

func firstContext(msgs []*message.Message) context.Context {
	for _, m := range msgs {
		if m != nil {
			return m.Context()
		}
	}
	return context.Background()
}
