package watermillobs

import (
	"context"
	"errors"
	"sync"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/spans"
)

// ErrNilSubscriber is returned when a nil subscriber is decorated.
var ErrNilSubscriber = errors.New("watermillobs: nil subscriber")

// ErrSubscriberClosed is returned by [Subscriber.Subscribe] after
// [Subscriber.Close].
var ErrSubscriberClosed = errors.New("watermillobs: subscriber closed")

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
	prop    *contract.Propagation
	tracer  trace.Tracer
	onPanic spans.PanicFunc
	// system is the messaging.system attribute when the option or the
	// wrapped subscriber's type tells it, else nil (told per message).
	system   []attribute.KeyValue
	names    spans.Names
	template contract.TopicTemplateFunc
	kind     []trace.SpanStartOption

	// mu guards closed and orders forwarders.Add before Close's Wait.
	mu         sync.Mutex
	closed     bool
	closing    chan struct{} // closed by Close: forwarders stop delivering
	forwarders sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error
}

// NewSubscriber returns sub decorated as described on [Subscriber]. sub
// must not be nil.
func NewSubscriber(sub message.Subscriber, opts ...Option) *Subscriber {
	c := newConfig(opts)
	return &Subscriber{
		sub:      sub,
		prop:     c.propagation(),
		tracer:   c.tracer(),
		onPanic:  pipelinePanics(c.Logger),
		system:   c.fixedSystemAttr(sub),
		template: c.TopicTemplate,
		names:    spans.Names{Build: func(topic string) string { return spanName("receive", topic) }},
		kind:     []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)},
		closing:  make(chan struct{}),
	}
}

// Unwrap returns the subscriber s decorates.
func (s *Subscriber) Unwrap() message.Subscriber { return s.sub }

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
// returned channel is closed when the wrapped one is, when ctx is done, and
// at the latest when [Subscriber.Close] returns. A message that cannot be
// delivered because of one of those is nacked, so that the broker can
// redeliver it, as Watermill's own subscribers do. Subscribe fails with
// [ErrSubscriberClosed] after Close.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrSubscriberClosed
	}
	// Counted before the lock is released, so a concurrent Close waits
	// for this subscription without blocking behind the wrapped Subscribe.
	s.forwarders.Add(1)
	s.mu.Unlock()
	in, err := s.sub.Subscribe(ctx, topic)
	if err != nil {
		s.forwarders.Done()
		return nil, err
	}
	out := make(chan *message.Message)
	go s.forward(ctx, topic, in, out)
	return out, nil
}

// forward delivers the messages of in to out until in is closed, ctx is
// done or the subscriber is closed, then closes out.
func (s *Subscriber) forward(ctx context.Context, topic string, in <-chan *message.Message, out chan<- *message.Message) {
	defer s.forwarders.Done()
	defer close(out)
	for {
		var msg *message.Message
		select {
		case m, ok := <-in:
			if !ok {
				return
			}
			msg = m
		case <-ctx.Done():
			return
		case <-s.closing:
			return
		}
		if msg != nil {
			s.received(msg, topic)
		}
		select {
		case out <- msg:
		case <-ctx.Done():
			nack(msg)
			return
		case <-s.closing:
			nack(msg)
			return
		}
	}
}

// nack hands an undelivered message back to the wrapped subscriber for
// redelivery.
func nack(msg *message.Message) {
	if msg != nil {
		msg.Nack()
	}
}

// received puts the message's conversation and a receive span into its
// context.
func (s *Subscriber) received(msg *message.Message, topic string) {
	ctx := s.prop.Extract(msg.Context(), msg)
	dest, temporary := contract.Destination(s.template, topic, msg)
	spanCtx, span := spans.Start(ctx, s.tracer, s.onPanic, s.names.Get(dest), s.kind...)
	if span.IsRecording() {
		attrs := append([]attribute.KeyValue(nil), systemAttr(s.system, message.SubscriberNameFromCtx(msg.Context()))...)
		attrs = appendDestination(attrs, topic, dest, temporary)
		attrs = append(attrs,
			semconv.MessagingOperationName("receive"),
			semconv.MessagingOperationTypeReceive,
			semconv.MessagingMessageID(bound.String(msg.UUID, bound.Attribute)),
		)
		if cid := contract.CorrelationID(msg); cid != "" {
			attrs = append(attrs, semconv.MessagingMessageConversationID(cid))
		}
		span.SetAttributes(attrs...)
	}
	spans.End(spanCtx, span, s.onPanic)
	msg.SetContext(spanCtx)
}

// Close closes the wrapped subscriber, then stops forwarding and waits
// until every channel returned by [Subscriber.Subscribe] is closed; a
// message a forwarder still held is nacked. Close is idempotent and safe
// to call concurrently: every call waits and returns the first call's
// result.
func (s *Subscriber) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		s.closeErr = s.sub.Close()
		close(s.closing)
		s.forwarders.Wait()
	})
	return s.closeErr
}
