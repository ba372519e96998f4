package watermillobs

import (
	"context"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// maxPropagatedValue is the largest metadata value handed to the
// propagator. W3C headers are far smaller (baggage is capped at 8192 bytes);
// anything larger is hostile or broken and is treated as absent.
const maxPropagatedValue = 8192

// metadataCarrier adapts message metadata to propagation.TextMapCarrier.
type metadataCarrier message.Metadata

// Get returns the value for key, or "" when it is missing or oversized.
func (m metadataCarrier) Get(key string) string {
	v := m[key]
	if len(v) > maxPropagatedValue {
		return ""
	}
	return v
}

// Set stores a value.
func (m metadataCarrier) Set(key, value string) { m[key] = value }

// Keys lists the keys present.
func (m metadataCarrier) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

// stampedTraceKey marks, in a message's context, the traceparent that this
// package stamped onto the message's metadata. A traceparent equal to it was
// not set by the user, so the publisher may refine it with its send span.
type stampedTraceKey struct{}

// keepCarrier writes into metadata without overwriting keys it already has.
// It is a map type, so passing it as a carrier does not allocate.
type keepCarrier message.Metadata

func (m keepCarrier) Get(key string) string { return m[key] }

func (m keepCarrier) Set(key, value string) {
	if _, ok := m[key]; !ok {
		m[key] = value
	}
}

func (m keepCarrier) Keys() []string { return metadataCarrier(m).Keys() }

// injectTrace writes the trace context of ctx into msg's metadata through
// prop, without overwriting keys the message already has — except a
// traceparent that this package stamped from an outer span (refinable).
// It returns the traceparent now in the metadata.
func injectTrace(ctx context.Context, prop propagation.TextMapPropagator, msg *message.Message, refinable string) string {
	if msg.Metadata == nil {
		msg.Metadata = make(message.Metadata)
	}
	if refinable != "" && msg.Metadata[TraceparentKey] == refinable {
		delete(msg.Metadata, TraceparentKey)
	}
	prop.Inject(ctx, keepCarrier(msg.Metadata))
	return msg.Metadata[TraceparentKey]
}

// extractor reads trace context from metadata. Most messages of a service
// either always or never carry trace context; when none of the keys the
// propagator reads (its Fields) is present, the propagator is skipped.
type extractor struct {
	prop   propagation.TextMapPropagator
	fields []string
}

func newExtractor(prop propagation.TextMapPropagator) extractor {
	return extractor{prop: prop, fields: prop.Fields()}
}

// extract returns ctx extended with the trace context and baggage found in
// md. Malformed values are ignored by the propagator.
func (e extractor) extract(ctx context.Context, md message.Metadata) context.Context {
	for _, f := range e.fields {
		if _, ok := md[f]; ok {
			return e.prop.Extract(ctx, metadataCarrier(md))
		}
	}
	return ctx
}

// Propagation writes and reads the metadata contract with its options
// resolved once, for code that does it per message outside a router or a
// decorated publisher (CQRS bus hooks, outbox relays). Its methods are safe
// for concurrent use.
type Propagation struct {
	prop propagation.TextMapPropagator
	ext  extractor
	now  func() time.Time
}

// NewPropagation returns a Propagation using the propagator of
// [WithPropagators]; other options are ignored.
func NewPropagation(opts ...Option) *Propagation {
	c := newConfig(opts)
	return &Propagation{prop: c.Propagators, ext: newExtractor(c.Propagators), now: time.Now}
}

// Inject writes the metadata contract into msg from ctx: the correlation ID
// (a new one if neither ctx nor msg has one), the causation ID, the trace
// context and baggage through the propagator, and published_at. Values the
// message already has are never overwritten. A traceparent Inject writes is
// marked in msg's context as its own, so that a [Publisher] that later
// publishes msg replaces it with the trace context of its send span.
func (p *Propagation) Inject(ctx context.Context, msg *message.Message) {
	if tp, stamped := stampMessage(ctx, p.prop, msg, p.now()); stamped {
		msg.SetContext(context.WithValue(msg.Context(), stampedTraceKey{}, tp))
	}
}

// Extract returns ctx extended with what msg's metadata carries: the
// remote span context and baggage (through the propagator) and the
// correlation ID, plus msg's UUID as the causation ID of the work msg
// causes. Malformed values are ignored; values ctx already has are not
// added again.
func (p *Propagation) Extract(ctx context.Context, msg *message.Message) context.Context {
	return WithMessageCorrelation(p.ext.extract(ctx, msg.Metadata), msg)
}

// InjectMetadata is [Propagation.Inject] with options resolved per call.
// Publishers decorated with [NewPublisher] do this for every message; call
// it yourself for messages that leave through an uninstrumented path, and
// use a [Propagation] on hot paths.
func InjectMetadata(ctx context.Context, msg *message.Message, opts ...Option) {
	NewPropagation(opts...).Inject(ctx, msg)
}

// stampMessage is InjectMetadata with resolved configuration. It returns
// the message's traceparent and whether this call wrote it (the message
// had none).
func stampMessage(ctx context.Context, prop propagation.TextMapPropagator, msg *message.Message, now time.Time) (traceparent string, stamped bool) {
	if msg.Metadata == nil {
		msg.Metadata = make(message.Metadata)
	}
	md := msg.Metadata
	// Per key one lookup, and one walk of ctx for both IDs: this runs for
	// every message sent.
	v := hooks.Snapshot(ctx)
	if _, ok := md[CorrelationIDKey]; !ok {
		cid := v.CorrelationID
		if !bound.IsID(cid) {
			cid = hooks.NewCorrelationID()
		}
		md[CorrelationIDKey] = cid
	}
	if bound.IsID(v.CausationID) {
		if _, ok := md[CausationIDKey]; !ok {
			md[CausationIDKey] = v.CausationID
		}
	}
	_, hadTrace := md[TraceparentKey]
	var refinable string
	if hadTrace {
		refinable, _ = msg.Context().Value(stampedTraceKey{}).(string)
	}
	traceparent = injectTrace(ctx, prop, msg, refinable)
	if _, ok := md[PublishedAtKey]; !ok {
		md[PublishedAtKey] = formatPublishedAt(now)
	}
	return traceparent, !hadTrace && traceparent != ""
}

// ExtractContext is [Propagation.Extract] with options resolved per call.
func ExtractContext(ctx context.Context, msg *message.Message, opts ...Option) context.Context {
	return NewPropagation(opts...).Extract(ctx, msg)
}

// WithMessageCorrelation returns ctx carrying the conversation of msg: its
// correlation ID (else ctx's, else a new one) and, as causation for the work
// msg causes, msg's UUID. Values ctx already carries are not added again.
// [Correlation] does this for router handlers; use it where a message is
// handled outside a router.
func WithMessageCorrelation(ctx context.Context, msg *message.Message) context.Context {
	cid := msg.Metadata.Get(CorrelationIDKey)
	if !bound.IsID(cid) {
		cid = hooks.CorrelationID(ctx)
		if !bound.IsID(cid) {
			cid = hooks.NewCorrelationID()
		}
	}
	v := hooks.Vars{CorrelationID: cid}
	if bound.IsID(msg.UUID) {
		v.CausationID = msg.UUID
	}
	return hooks.Restore(ctx, v)
}

// remoteSpanContext returns the span context that ctx got from metadata, if
// it is valid and remote.
func remoteSpanContext(ctx context.Context) (trace.SpanContext, bool) {
	sc := trace.SpanContextFromContext(ctx)
	return sc, sc.IsValid() && sc.IsRemote()
}
