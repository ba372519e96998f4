package watermillobs

import (
	"context"
	"errors"
	"log/slog"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
	"github.com/cqrs-ddd/watermill-observability/internal/spans"
)

// ErrNilPublisher is returned when a nil publisher is decorated.
var ErrNilPublisher = errors.New("watermillobs: nil publisher")

// publishOperationPrefix is the hook operation family of publishing; the
// full name is the prefix plus the topic.
const publishOperationPrefix = "publisher.publish."

// Publisher decorates a Watermill publisher. For every message it starts a
// "send {topic}" span of kind PRODUCER as a child of the message context
// and writes the metadata contract (correlation and causation IDs, trace
// context, published_at; see [contract.Propagation.Inject]) without overwriting values
// the message has. Each Publish call runs as one hook operation
// "publisher.publish.{topic}" around one call of the wrapped publisher with
// all the messages, so instrumentation never changes broker I/O: a batch
// stays one call, and its error is recorded on every message's span.
//
// The hook operation's attributes are "topic", "messaging.batch.message_count",
// and, when they are the same for every message of the call,
// "correlation_id" and "message_type" ("message.id" for a single message).
// A correlation_id that is not a well-formed ID, which consumers treat as
// absent, is left out of the operation and of the send span's
// messaging.message.conversation_id alike.
// The span hook of [InstallFrameworkHooks] opens no span for the operation:
// the send spans already stand for it, one per message.
//
// A hook's error is returned and the messages are not published (a rate
// limiter refusing). A hook that panics is logged and counted, and the
// messages are published exactly once as if unobserved, whether the panic
// came before or after the publish.
//
// Per-request topics (replies, and topics mapped by [WithTopicTemplate])
// name spans and operations by their template; see [contract.Destination].
type Publisher struct {
	pub      message.Publisher
	tracer   trace.Tracer
	prop     *contract.Propagation
	registry *hooks.Registry
	// system is the messaging.system attribute when the option or the
	// wrapped publisher's type tells it, else nil (told per message).
	system   []attribute.KeyValue
	template contract.TopicTemplateFunc
	logger   *slog.Logger
	onPanic  spans.PanicFunc
}

// NewPublisher returns pub decorated with tracing, metadata propagation and
// hook operations. pub must not be nil.
func NewPublisher(pub message.Publisher, opts ...Option) *Publisher {
	c := newConfig(opts)
	return &Publisher{
		pub:      pub,
		tracer:   c.tracer(),
		prop:     c.propagation(),
		registry: c.Registry,
		system:   c.fixedSystemAttr(pub),
		template: c.TopicTemplate,
		logger:   c.Logger,
		onPanic:  pipelinePanics(c.Logger),
	}
}

// Unwrap returns the publisher p decorates.
func (p *Publisher) Unwrap() message.Publisher { return p.pub }

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

// Publish publishes msgs to topic through the wrapped publisher, in one
// call.
func (p *Publisher) Publish(topic string, msgs ...*message.Message) error {
	if len(msgs) == 0 {
		return p.pub.Publish(topic, msgs...)
	}
	first := firstMessage(msgs)
	sendSpans := make([]trace.Span, len(msgs))
	for i, m := range msgs {
		if m == nil {
			continue
		}
		sendSpans[i] = p.startSend(m, topic)
	}

	err := p.publish(topic, msgs, first)

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

// startSend starts the send span of m, stamps the metadata contract and
// gives m the span's context, so that inner decorators (metrics exemplars)
// and in-process subscribers see it.
func (p *Publisher) startSend(m *message.Message, topic string) trace.Span {
	dest, temporary := contract.Destination(p.template, topic, m)
	attrs := make([]attribute.KeyValue, 0, 9)
	attrs = append(attrs, systemAttr(p.system, message.PublisherNameFromCtx(m.Context()))...)
	attrs = appendDestination(attrs, topic, dest, temporary)
	attrs = append(attrs,
		semconv.MessagingOperationName("send"),
		semconv.MessagingOperationTypeSend,
		semconv.MessagingMessageID(bound.String(m.UUID, bound.Attribute)),
		semconv.MessagingMessageBodySize(len(m.Payload)),
	)
	ctx, span := spans.Start(m.Context(), p.tracer, p.onPanic, spanName("send", dest),
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	p.prop.Inject(ctx, m)
	// A correlation_id that is no ID (kept as the user set it) is absent
	// to consumers, so it names no conversation here either.
	if cid := m.Metadata.Get(contract.CorrelationIDKey); span.IsRecording() && bound.IsID(cid) {
		span.SetAttributes(semconv.MessagingMessageConversationID(cid))
	}
	m.SetContext(ctx)
	return span
}

// publish makes the one call of the wrapped publisher, inside the hook
// operation when a hook observes the family. first is the first non-nil
// message: its context (its send span) is the operation's.
func (p *Publisher) publish(topic string, msgs []*message.Message, first *message.Message) error {
	ctx := context.Background()
	if first != nil {
		ctx = first.Context()
	}
	reg := registryOr(p.registry, ctx)
	if !observedBesidesSpanHook(ctx, reg, publishOperationPrefix) {
		return p.pub.Publish(topic, msgs...)
	}
	dest, _ := contract.Destination(p.template, topic, first)
	name := publishOperationPrefix + dest
	return contract.RunHooks(withCoverage(ctx, name), reg, name, publishAttrs(topic, msgs, first),
		func(context.Context) error { return p.pub.Publish(topic, msgs...) },
		p.hookPanicked)
}

// hookPanicked logs and counts a hook that panicked around a publish.
func (p *Publisher) hookPanicked(ctx context.Context, e *hooks.HookPanicError) {
	panics.Report(ctx, p.logger, "watermillobs: publish hook panicked; messages published without hooks", e.Value,
		slog.String("hook", e.Hook), slog.String("operation", e.Operation))
}

// publishAttrs are the attributes of a publisher.publish operation: what
// the whole call shares.
func publishAttrs(topic string, msgs []*message.Message, first *message.Message) []slog.Attr {
	attrs := make([]slog.Attr, 0, 5)
	attrs = append(attrs,
		slog.String("topic", bound.String(topic, bound.Attribute)),
		slog.Int("messaging.batch.message_count", len(msgs)),
	)
	if first == nil {
		return attrs
	}
	cid, typ := first.Metadata.Get(contract.CorrelationIDKey), contract.MessageType(first)
	for _, m := range msgs {
		if m == nil {
			continue
		}
		if cid != "" && m.Metadata.Get(contract.CorrelationIDKey) != cid {
			cid = ""
		}
		if typ != "" && contract.MessageType(m) != typ {
			typ = ""
		}
	}
	if bound.IsID(cid) {
		attrs = append(attrs, slog.String(contract.CorrelationIDKey, cid))
	}
	if len(msgs) == 1 {
		attrs = append(attrs, slog.String("message.id", bound.String(first.UUID, bound.Attribute)))
	}
	if typ != "" {
		attrs = append(attrs, slog.String(hooks.MessageTypeKey, typ))
	}
	return attrs
}

// Close closes the wrapped publisher.
func (p *Publisher) Close() error { return p.pub.Close() }

func firstMessage(msgs []*message.Message) *message.Message {
	for _, m := range msgs {
		if m != nil {
			return m
		}
	}
	return nil
}
