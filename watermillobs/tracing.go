package watermillobs

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/spans"
)

// HandlerNameKey is the span attribute holding the Watermill handler name.
// Semantic conventions have no attribute for it.
const HandlerNameKey = attribute.Key("watermill.handler.name")

// TracingConfig holds the settings of the consumer spans that only
// [Tracing] (and [Instrument], through [InstrumentConfig]) makes. The zero
// value continues the producer's trace and names no consumer group.
type TracingConfig struct {
	// LinkOnly makes every consumer span the root of a new trace that links
	// to the producer's span, instead of a child of it.
	LinkOnly bool
	// LinkAfter does the same only for messages published more than
	// LinkAfter ago (per their published_at metadata), so that delayed,
	// outbox-forwarded or long-queued messages do not stretch the
	// producer's trace over hours. Zero or negative disables it.
	LinkAfter time.Duration
	// ConsumerGroup is the messaging.consumer.group.name attribute of the
	// spans; empty omits it.
	ConsumerGroup string
}

// Tracing returns a router middleware that wraps each handled message in a
// "process {topic}" span of kind CONSUMER, following the OpenTelemetry
// messaging semantic conventions.
//
// The span continues the producer's trace (the trace context in the
// message metadata) as a child, unless config asks for a link (see
// [TracingConfig]). The span's context becomes the message context, so the
// handler's work and the messages it publishes continue the span. A handler
// error sets the span status to Error with an error.type attribute; a panic
// does too and is re-raised unchanged.
func Tracing(config TracingConfig, opts ...Option) message.HandlerMiddleware {
	c := newConfig(opts)
	t := &consumerTracer{
		tracer:    c.tracer(),
		prop:      c.propagation(),
		linkOnly:  config.LinkOnly,
		linkAfter: config.LinkAfter,
		system:    c.MessagingSystem,
		group:     config.ConsumerGroup,
		template:  c.TopicTemplate,
		now:       time.Now,
		onPanic:   pipelinePanics(c.Logger),
		childOpts: []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)},
	}
	t.sites.Build = t.newSite
	return t.middleware
}

type consumerTracer struct {
	tracer    trace.Tracer
	prop      *contract.Propagation
	linkOnly  bool
	linkAfter time.Duration
	system    string
	group     string
	template  contract.TopicTemplateFunc
	now       func() time.Time
	onPanic   spans.PanicFunc
	// childOpts are the start options of the common case, built once.
	childOpts []trace.SpanStartOption
	sites     spans.Cache[siteKey, *consumerSite]
}

func (t *consumerTracer) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) (produced []*message.Message, err error) {
		spanCtx, span := t.begin(msg)
		msg.SetContext(spanCtx)
		defer func() {
			if v := recover(); v != nil {
				t.panicked(spanCtx, span, v)
				panic(v)
			}
		}()
		produced, err = h(msg)
		if err != nil {
			setSpanError(span, err)
		}
		spans.End(spanCtx, span, t.onPanic)
		return produced, err
	}
}

// siteKey identifies where a message is consumed: its spans share a name
// and most attributes. topic is the destination name of [contract.Destination].
type siteKey struct {
	topic, handler, subscriber string
	temporary                  bool
}

// consumerSite is what the spans of one site share, built once.
type consumerSite struct {
	name  string
	attrs []attribute.KeyValue
}

func (t *consumerTracer) newSite(k siteKey) *consumerSite {
	attrs := make([]attribute.KeyValue, 0, 6)
	if system := t.systemFor(k.subscriber); system != "" {
		attrs = append(attrs, semconv.MessagingSystemKey.String(system))
	}
	attrs = append(attrs, destinationAttrs(k.topic, k.temporary)...)
	attrs = append(attrs,
		processOperationName,
		semconv.MessagingOperationTypeProcess,
	)
	if t.group != "" {
		attrs = append(attrs, semconv.MessagingConsumerGroupName(bound.String(t.group, bound.Attribute)))
	}
	if k.handler != "" {
		attrs = append(attrs, HandlerNameKey.String(bound.String(k.handler, bound.Attribute)))
	}
	return &consumerSite{name: spanName("process", k.topic), attrs: attrs}
}

// begin starts the consumer span of msg.
//
// The span start runs deepest in the handler's goroutine, which the router
// starts per message with a small stack: begin keeps its own frame small
// (the site lookup and the attributes are calls of their own) so that
// instrumenting a handler does not cost it an extra stack growth.
func (t *consumerTracer) begin(msg *message.Message) (context.Context, trace.Span) {
	ctx := msg.Context()
	site, topic, temporary := t.site(ctx, msg)
	parent, startOpts := t.parent(ctx, msg)
	// Attributes are set after the start so that unsampled spans cost no
	// attribute work; samplers decide on name, kind, parent and links.
	spanCtx, span := spans.Start(parent, t.tracer, t.onPanic, site.name, startOpts...)
	if span.IsRecording() {
		t.setAttributes(span, ctx, msg, site, topic, temporary)
	}
	return spanCtx, span
}

// site returns the consumer site of msg, the raw topic, and whether the
// site's destination is a template of temporary topics.
func (t *consumerTracer) site(ctx context.Context, msg *message.Message) (site *consumerSite, topic string, temporary bool) {
	topic = message.SubscribeTopicFromCtx(ctx)
	dest, temporary := contract.Destination(t.template, topic, msg)
	site = t.sites.Get(siteKey{
		topic:      dest,
		temporary:  temporary,
		handler:    message.HandlerNameFromCtx(ctx),
		subscriber: message.SubscriberNameFromCtx(ctx),
	})
	return site, topic, temporary
}

// parent returns the context the consumer span of msg starts from (ctx with
// the producer's trace context) and its start options: a child of the
// producer's span, or a new root linked to it. It is not inlined so that its
// locals stay out of begin's frame (see begin).
//
//go:noinline
func (t *consumerTracer) parent(ctx context.Context, msg *message.Message) (context.Context, []trace.SpanStartOption) {
	parent := t.prop.ExtractTrace(ctx, msg.Metadata)
	if remote := trace.SpanContextFromContext(parent); remote.IsValid() && remote.IsRemote() && t.linked(msg) {
		return parent, []trace.SpanStartOption{t.childOpts[0], trace.WithNewRoot(), trace.WithLinks(trace.Link{SpanContext: remote})}
	}
	return parent, t.childOpts
}

// setAttributes sets the attributes of a recording consumer span.
func (t *consumerTracer) setAttributes(span trace.Span, ctx context.Context, msg *message.Message, site *consumerSite, topic string, temporary bool) {
	buf := attrPool.Get().(*[]attribute.KeyValue)
	attrs := t.appendAttributes((*buf)[:0], ctx, msg, site)
	if temporary {
		attrs = append(attrs, semconv.MessagingDestinationName(bound.String(topic, bound.Attribute)))
	}
	span.SetAttributes(attrs...) // the SDK copies them
	putAttrs(buf, attrs)
}

// panicked records a handler panic on the span and ends it.
func (t *consumerTracer) panicked(ctx context.Context, span trace.Span, v any) {
	span.SetAttributes(semconv.ErrorTypeKey.String("panic"))
	span.SetStatus(codes.Error, bound.String(fmt.Sprint(v), bound.Error))
	spans.End(ctx, span, t.onPanic)
}

// appendAttributes appends the consumer span's attributes to attrs: the
// context fields first, so that the semantic-convention attributes win a
// clash.
func (t *consumerTracer) appendAttributes(attrs []attribute.KeyValue, ctx context.Context, msg *message.Message, site *consumerSite) []attribute.KeyValue {
	attrs = hookAppendAttrs(attrs, "", Fields(ctx))
	attrs = append(attrs, site.attrs...)
	attrs = append(attrs, semconv.MessagingMessageID(bound.String(msg.UUID, bound.Attribute)))
	if cid := contract.CorrelationID(msg); cid != "" {
		attrs = append(attrs, semconv.MessagingMessageConversationID(cid))
	}
	return attrs
}

var processOperationName = semconv.MessagingOperationName("process")

// attrPool recycles attribute slices: span.SetAttributes copies its
// arguments, so the slice is free again right after the call.
var attrPool = sync.Pool{New: func() any {
	s := make([]attribute.KeyValue, 0, 16)
	return &s
}}

// putAttrs returns a slice to attrPool unless it grew large.
func putAttrs(buf *[]attribute.KeyValue, attrs []attribute.KeyValue) {
	if cap(attrs) > 64 {
		return
	}
	clear(attrs) // drop references to strings of the message
	*buf = attrs[:0]
	attrPool.Put(buf)
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
	at, ok := contract.PublishedAt(msg)
	return ok && t.now().Sub(at) > t.linkAfter
}

func (t *consumerTracer) systemFor(pubsubName string) string {
	if t.system != "" {
		return t.system
	}
	return messagingSystem(pubsubName)
}

// messagingSystem tells messaging.system from the Go type name of a
// Watermill publisher or subscriber, such as "redisstream.Subscriber", or
// "" when the name is not a known transport's: decorators (ours, the
// router's, promobs') say nothing about the transport, so their names must
// not become the attribute.
func messagingSystem(n string) string {
	// Go package names are lower case, so no case folding is needed.
	switch {
	case n == "":
		return ""
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
	return ""
}

// systemAttrs holds the messaging.system attribute of each system that
// messagingSystem tells, built once: spans take it per message.
var systemAttrs = func() map[string][]attribute.KeyValue {
	m := make(map[string][]attribute.KeyValue)
	for _, s := range []string{"redis", "kafka", "rabbitmq", "nats", "gcp_pubsub", "sql", "gochannel"} {
		m[s] = []attribute.KeyValue{semconv.MessagingSystemKey.String(s)}
	}
	return m
}()

// systemAttr returns the messaging.system attribute to start a span with:
// fixed (an option or a known transport type, decided at construction),
// else told by the name of the router's publisher or subscriber, else none.
func systemAttr(fixed []attribute.KeyValue, routerName string) []attribute.KeyValue {
	if fixed != nil {
		return fixed
	}
	return systemAttrs[messagingSystem(routerName)]
}

// fixedSystemAttr is the attribute of c.messagingSystem(pubsub), nil when
// it must be decided per message.
func (c *config) fixedSystemAttr(pubsub any) []attribute.KeyValue {
	s := c.messagingSystem(pubsub)
	if s == "" {
		return nil
	}
	if a, ok := systemAttrs[s]; ok {
		return a
	}
	return []attribute.KeyValue{semconv.MessagingSystemKey.String(bound.String(s, bound.Attribute))}
}

// spanName returns "operation topic" (topic bounded), or the operation alone
// without topic.
func spanName(operation, topic string) string {
	if topic == "" {
		return operation
	}
	return operation + " " + bound.String(topic, bound.Attribute)
}

// setSpanError records err on span the way semantic conventions ask:
// error.type plus status Error with a bounded description.
func setSpanError(span trace.Span, err error) {
	span.SetAttributes(semconv.ErrorType(err))
	span.SetStatus(codes.Error, bound.String(err.Error(), bound.Error))
}
