package watermillobs

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// HandlerNameKey is the span attribute holding the Watermill handler name.
// Semantic conventions have no attribute for it.
const HandlerNameKey = attribute.Key("watermill.handler.name")

// Tracing returns a router middleware that wraps each handled message in a
// "process {topic}" span of kind CONSUMER, following the OpenTelemetry
// messaging semantic conventions.
//
// The span continues the producer's trace (the trace context in the
// message metadata) as a child. [WithLinkOnly] starts a new trace that links
// to the producer instead, and [WithLinkAfter] does so only for messages
// published longer ago than a given age. The span's context becomes the
// message context, so the handler's work and the messages it publishes
// continue the span. A handler error sets the span status to Error with an
// error.type attribute; a panic does too and is re-raised unchanged.
func Tracing(opts ...Option) message.HandlerMiddleware {
	c := newConfig(opts)
	t := &consumerTracer{
		tracer:    c.tracer(),
		prop:      c.Propagators,
		linkOnly:  c.LinkOnly,
		linkAfter: c.LinkAfter,
		system:    c.MessagingSystem,
		group:     c.ConsumerGroup,
		now:       time.Now,
		logger:    c.Logger,
	}
	return t.middleware
}

type consumerTracer struct {
	tracer    trace.Tracer
	prop      propagation.TextMapPropagator
	linkOnly  bool
	linkAfter time.Duration
	system    string
	group     string
	now       func() time.Time
	logger    *slog.Logger // nil: slog.Default
}

func (t *consumerTracer) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (produced []*message.Message, err error) {
		ctx := msg.Context()
		topic := bound.String(message.SubscribeTopicFromCtx(ctx), bound.Attribute)
		parent := extractTrace(ctx, t.prop, msg.Metadata)

		attrs := make([]attribute.KeyValue, 0, 9)
		attrs = append(attrs,
			semconv.MessagingSystemKey.String(t.systemFor(message.SubscriberNameFromCtx(ctx))),
			semconv.MessagingDestinationName(topic),
			semconv.MessagingOperationName("process"),
			semconv.MessagingOperationTypeProcess,
			semconv.MessagingMessageID(bound.String(msg.UUID, bound.Attribute)),
			semconv.MessagingMessageBodySize(len(msg.Payload)),
		)
		if cid := CorrelationID(msg); cid != "" {
			attrs = append(attrs, semconv.MessagingMessageConversationID(cid))
		}
		if t.group != "" {
			attrs = append(attrs, semconv.MessagingConsumerGroupName(t.group))
		}
		if hn := message.HandlerNameFromCtx(ctx); hn != "" {
			attrs = append(attrs, HandlerNameKey.String(bound.String(hn, bound.Attribute)))
		}
		// Context fields first, so the convention attributes win a clash.
		attrs = append(hookAppendAttrs(nil, "", Fields(ctx)), attrs...)
		startOpts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)}
		if remote, ok := remoteSpanContext(parent); ok && t.linked(msg) {
			startOpts = append(startOpts, trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: remote}))
		}

		spanCtx, span := startSpan(parent, t.tracer, t.logger, spanName("process", topic), startOpts...)
		msg.SetContext(spanCtx)
		defer func() {
			if v := recover(); v != nil {
				span.SetAttributes(semconv.ErrorTypeKey.String("panic"))
				span.SetStatus(codes.Error, bound.String(fmt.Sprint(v), bound.Error))
				endSpan(spanCtx, span, t.logger)
				panic(v)
			}
		}()
		produced, err = h(msg)
		if err != nil {
			setSpanError(span, err)
		}
		endSpan(spanCtx, span, t.logger)
		return produced, err
	}
}

// linked reports whether msg's span should link to the producer instead of
// continuing its trace.
func (t *consumerTracer) linked(msg *message.Message) bool {
	if t.linkOnly {
		return true
	}
	if t.linkAfter <= 0 {
		return false
	}
	at, ok := PublishedAt(msg)
	return ok && t.now().Sub(at) > t.linkAfter
}

func (t *consumerTracer) systemFor(pubsubName string) string {
	if t.system != "" {
		return t.system
	}
	return messagingSystem(pubsubName)
}

// messagingSystem guesses messaging.system from the Go type name of a
// Watermill publisher or subscriber, such as "redisstream.Subscriber".
func messagingSystem(pubsubName string) string {
	n := strings.ToLower(pubsubName)
	switch {
	case strings.Contains(n, "redis"):
		return "redis"
	case strings.Contains(n, "kafka"):
		return "kafka"
	case strings.Contains(n, "amqp"):
		return "rabbitmq"
	case strings.Contains(n, "nats"), strings.Contains(n, "jetstream"):
		return "nats"
	case strings.Contains(n, "googlecloud"):
		return "gcp_pubsub"
	case strings.Contains(n, "sql"):
		return "sql"
	case strings.Contains(n, "gochannel"):
		return "gochannel"
	}
	return "watermill"
}

// spanName returns "operation topic", or the operation alone without topic.
func spanName(operation, topic string) string {
	if topic == "" {
		return operation
	}
	return operation + " " + topic
}

// setSpanError records err on span the way semantic conventions ask:
// error.type plus status Error with a bounded description.
func setSpanError(span trace.Span, err error) {
	span.SetAttributes(semconv.ErrorType(err))
	span.SetStatus(codes.Error, bound.String(err.Error(), bound.Error))
}
