package contract

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"

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

// globalPropagator is the current global propagator, looked up on every
// call: OTel's global is a delegate until otel.SetTextMapPropagator is
// called, and instrumentation is often built before that. While the global
// was never set, it is W3C TraceContext and Baggage instead of OTel's
// no-op, so that traces connect across hops without configuration.
type globalPropagator struct{ logger *slog.Logger }

// unsetGlobal is implemented by OTel's internal delegate, which
// otel.GetTextMapPropagator returns until a propagator is set. The check is
// a type assertion: cheap, and safe for any propagator (comparing
// propagators with == panics on a composite, which is a slice).
type unsetGlobal interface {
	SetDelegate(propagation.TextMapPropagator)
}

var (
	w3cPropagator        = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	defaultPropagatorLog sync.Once
)

func (g globalPropagator) current() propagation.TextMapPropagator {
	p := otel.GetTextMapPropagator()
	if _, unset := p.(unsetGlobal); !unset {
		return p
	}
	defaultPropagatorLog.Do(func() {
		l := g.logger
		if l == nil {
			l = slog.Default()
		}
		l.Info("watermill-observability: no OpenTelemetry propagator set; using W3C TraceContext and Baggage (set one with otel.SetTextMapPropagator or in the configuration; an empty composite disables propagation)")
	})
	return w3cPropagator
}

func (g globalPropagator) Inject(ctx context.Context, carrier propagation.TextMapCarrier) {
	g.current().Inject(ctx, carrier)
}

func (g globalPropagator) Extract(ctx context.Context, carrier propagation.TextMapCarrier) context.Context {
	return g.current().Extract(ctx, carrier)
}

func (g globalPropagator) Fields() []string { return g.current().Fields() }

// extractor reads trace context from metadata.
type extractor struct {
	prop propagation.TextMapPropagator
}

func newExtractor(prop propagation.TextMapPropagator) extractor {
	return extractor{prop: prop}
}

// extract returns ctx extended with the trace context and baggage found in
// md. Malformed values are ignored by the propagator. There is no
// pre-check on the propagator's Fields: the global may change after
// construction, and a composite allocates its Fields on every call.
func (e extractor) extract(ctx context.Context, md message.Metadata) context.Context {
	if len(md) == 0 {
		return ctx
	}
	return e.prop.Extract(ctx, metadataCarrier(md))
}

// PropagationConfig configures a [Propagation]. The zero value uses the
// global propagator.
type PropagationConfig struct {
	// Propagator writes and reads trace context and baggage in metadata.
	// If not set, the global propagator (otel.GetTextMapPropagator) is
	// looked up per message, so that one set after construction counts;
	// while no global was ever set, W3C TraceContext and Baggage are used,
	// and that is logged once at level Info. An empty composite
	// (propagation.NewCompositeTextMapPropagator()) turns propagation off.
	Propagator propagation.TextMapPropagator

	// Logger receives the one Info record above. If not set, slog.Default
	// is used.
	Logger *slog.Logger
}

// Propagation writes and reads the metadata contract, for every path that
// sends or receives messages: the decorators and middlewares of
// watermillobs, the CQRS bus hooks, outbox relays, and your own consumer
// loops. Its methods are safe for concurrent use.
type Propagation struct {
	prop propagation.TextMapPropagator
	ext  extractor
	now  func() time.Time
}

// NewPropagation returns a Propagation configured by config.
func NewPropagation(config PropagationConfig) *Propagation {
	prop := config.Propagator
	if prop == nil {
		prop = globalPropagator{logger: config.Logger}
	}
	return &Propagation{prop: prop, ext: newExtractor(prop), now: time.Now}
}

// Inject writes the metadata contract into msg from ctx: the correlation ID
// (a new one if neither ctx nor msg has one), the causation ID, the trace
// context and baggage through the propagator, and published_at. Values the
// message already has are never overwritten, with one exception: a
// message published while it is itself being handled (its UUID is the
// causation ID of ctx: a forward, a requeue, a poison queue) is a new hop,
// so its traceparent and tracestate are replaced by ctx's, and it keeps its
// causation ID, for it is not its own cause. A traceparent Inject writes is
// marked in msg's context as its own, so that a decorated publisher
// (watermillobs.Publisher) that later publishes msg replaces it with the
// trace context of its send span.
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

// ExtractTrace returns ctx extended with the remote span context and
// baggage of md only, for code that restores the correlation IDs itself.
func (p *Propagation) ExtractTrace(ctx context.Context, md message.Metadata) context.Context {
	return p.ext.extract(ctx, md)
}

// stampMessage is [Propagation.Inject] without the mark. It returns
// the message's traceparent and whether this call wrote it.
//
// A message published while it is itself being handled (its UUID is the
// causation ID of ctx: a forward, a requeue, a poison queue) is a new hop:
// its trace context is replaced by ctx's, and it keeps its causation ID,
// for it is not its own cause.
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
	hop := isHop(v, msg)
	if !hop && bound.IsID(v.CausationID) {
		if _, ok := md[CausationIDKey]; !ok {
			md[CausationIDKey] = v.CausationID
		}
	}
	if hop {
		dropTrace(md)
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

// isHop reports whether msg is being handled in the context whose IDs are
// v: its UUID is the causation ID of the work that context does.
func isHop(v hooks.Vars, msg *message.Message) bool {
	return v.CausationID != "" && v.CausationID == msg.UUID
}

// dropTrace removes the trace context (not the baggage) from md, so that
// the propagator writes the current one.
func dropTrace(md message.Metadata) {
	delete(md, TraceparentKey)
	delete(md, TracestateKey)
}

// WithMessageCorrelation returns ctx carrying the conversation of msg: its
// correlation ID (else ctx's, else a new one) and, as causation for the work
// msg causes, msg's UUID. Values ctx already carries are not added again.
// watermillobs.Correlation does this for router handlers; use it where a
// message is handled outside a router.
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
