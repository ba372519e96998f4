package watermillobs

import (
	"context"
	"errors"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/spans"
)

// ErrNilSubscriber is returned when a nil subscriber is decorated.
var ErrNilSubscriber = errors.New("watermillobs: nil subscriber")

// Subscriber decorates a Watermill subscriber for code that consumes
// messages without a router: request/reply callers reading replies, custom
// consumer loops. Every message it delivers has, in its context, the trace
// context and baggage of its metadata, its correlation ID and (as causation
// for the work it causes) its UUID, and a "receive {topic}" span of kind
// CONSUMER that marks the delivery in the producer's trace and that the
// consumer's own spans continue.
//
// Routers do not need it: [Tracing] and [Correlation] do the same per
// handled message, with a span that covers the handling. It costs a
// forwarding goroutine per subscription and a channel hop per message,
// which is why [Instrument] does not install it.
type Subscriber struct {
	sub     message.Subscriber
	prop    *Propagation
	tracer  trace.Tracer
	onPanic spans.PanicFunc
	// system is the messaging.system attribute when the option or the
	// wrapped subscriber's type tells it, else nil (told per message).
	system []attribute.KeyValue
	names  spans.Names
	kind   []trace.SpanStartOption
}

// NewSubscriber returns sub decorated as described on [Subscriber]. sub
// must not be nil.
func NewSubscriber(sub message.Subscriber, opts ...Option) *Subscriber {
	c := newConfig(opts)
	return &Subscriber{
		sub:     sub,
		prop:    NewPropagation(opts...),
		tracer:  c.tracer(),
		onPanic: pipelinePanics(c.Logger),
		system:  c.fixedSystemAttr(sub),
		names:   spans.Names{Build: func(topic string) string { return spanName("receive", topic) }},
		kind:    []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)},
	}
}

// SubscriberDecorator returns a decorator for message.Router's
// AddSubscriberDecorators or for any code that builds subscribers, applying
// [NewSubscriber].
func SubscriberDecorator(opts ...Option) message.SubscriberDecorator {
	return func(sub message.Subscriber) (message.Subscriber, error) {
		if sub == nil {
			return nil, ErrNilSubscriber
		}
		return NewSubscriber(sub, opts...), nil
	}
}

// Subscribe subscribes to topic through the wrapped subscriber. The
// returned channel is closed when the wrapped one is.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	in, err := s.sub.Subscribe(ctx, topic)
	if err != nil {
		return nil, err
	}
	out := make(chan *message.Message)
	go func() {
		defer close(out)
		for msg := range in {
			if msg != nil {
				s.received(msg, topic)
			}
			// Delivery is unconditional, as without the decorator: the
			// wrapped subscriber decides when to stop, by closing in.
			out <- msg
		}
	}()
	return out, nil
}

// received puts the message's conversation and a receive span into its
// context.
func (s *Subscriber) received(msg *message.Message, topic string) {
	ctx := s.prop.Extract(msg.Context(), msg)
	spanCtx, span := spans.Start(ctx, s.tracer, s.onPanic, s.names.Get(topic), s.kind...)
	if span.IsRecording() {
		attrs := append([]attribute.KeyValue(nil), systemAttr(s.system, message.SubscriberNameFromCtx(msg.Context()))...)
		attrs = append(attrs,
			semconv.MessagingDestinationName(bound.String(topic, bound.Attribute)),
			semconv.MessagingOperationName("receive"),
			semconv.MessagingOperationTypeReceive,
			semconv.MessagingMessageID(bound.String(msg.UUID, bound.Attribute)),
		)
		if cid := CorrelationID(msg); cid != "" {
			attrs = append(attrs, semconv.MessagingMessageConversationID(cid))
		}
		span.SetAttributes(attrs...)
	}
	spans.End(spanCtx, span, s.onPanic)
	msg.SetContext(spanCtx)
}

// Close closes the wrapped subscriber.
func (s *Subscriber) Close() error { return s.sub.Close() }
