package watermillobs

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/spans"
)

// hookSliceMax caps the elements of a []string attribute, so that one
// oversized value cannot blow up a span.
const hookSliceMax = 64

// Attributes the span hook sets when the operation returns.
var (
	// hookSuccessAttrs is passed as it is: a variadic call through the span
	// interface would allocate a new slice per operation.
	hookSuccessAttrs   = []attribute.KeyValue{attribute.String("outcome", contract.OutcomeSuccess)}
	hookOutcomeError   = attribute.String("outcome", contract.OutcomeError)
	hookErrorTypePanic = semconv.ErrorTypeKey.String("panic")
)

// NewSpanHook returns a [hooks.Hook] that runs every operation it wraps
// inside an OpenTelemetry span of kind Internal named after the operation.
// [InstallFrameworkHooks] registers it with a curated set of operations; use
// NewSpanHook directly to register it with your own [hooks.Option]s.
//
// The tracer comes from [WithTracerProvider], else the global provider at
// the time of the call. Other options are ignored.
//
// The operation and the hooks inside this one run with a context that
// carries the span, so spans they start become its children. When the
// operation returns, the span gets the attribute "outcome" ("success" or
// "error"); on error it also gets "error.type" (the OpenTelemetry semantic
// convention value, or "panic" when the operation panicked) and the status
// Error with the bounded error message. The error is returned unchanged.
//
// # Attributes
//
// The span gets the fields of [Fields](ctx), the correlation ID of the
// context (key "correlation_id", unless the operation has that attribute),
// and the operation's attributes, which win over the others on equal keys.
// slog values keep their type where OpenTelemetry has one:
//   - strings, int64, float64 and bool map to the same types; a uint64 above
//     math.MaxInt64 becomes its decimal string;
//   - a time.Duration becomes a float64 number of milliseconds under the key
//     with "_ms" appended (unless the key already ends in "_ms"), matching
//     the duration_ms log field;
//   - a time.Time becomes an RFC 3339 string with nanoseconds;
//   - groups are flattened into dotted keys ("order.id"); a group with an
//     empty key is inlined, as slog does;
//   - slog.LogValuer values are resolved first;
//   - of other values, errors and fmt.Stringers become their string and
//     []string a string slice (at most 64 elements); anything else (structs,
//     maps, pointers) is skipped rather than stringified, so that no
//     payload reaches the trace by accident.
//
// Every string is made valid UTF-8 and cut to 256 bytes.
//
// The operations that [Publisher] and [ConsumeHooks] run inside their own
// send or process span (publisher.publish.*, consumer.consume.*) get no
// span of their own: the transport span already stands for that hop. When
// span hooks are the only enabled hooks for such an operation, Publisher
// and ConsumeHooks do not even build it. Register the returned hook as it
// is to keep that: wrapped in a hook of yours, it is one that observes.
//
// Attributes are converted only for spans that are recording: a span
// dropped by the sampler costs no conversion. The price is that samplers see
// no attributes when they decide, only the operation name.
func NewSpanHook(opts ...Option) hooks.Hook {
	c := newConfig(opts)
	return &spanHook{tracer: c.tracer(), onPanic: pipelinePanics(c.Logger)}
}

type spanHook struct {
	tracer  trace.Tracer
	onPanic spans.PanicFunc
}

func (h *spanHook) Around(ctx context.Context, op hooks.Operation, next hooks.Next) error {
	if covered(ctx, op.Name) {
		// A send or process span already stands for this operation: one
		// span per message per hop.
		return next(ctx)
	}
	ctx, span := h.start(ctx, op)
	recording := span.IsRecording()
	if recording {
		span.SetAttributes(hookSpanAttrs(ctx, op)...)
	}
	returned := false
	defer func() {
		// An operation's panic passes through the hooks unrecovered (so
		// that recoverers keep its stack): the span still ends, and the
		// panic goes on unchanged.
		if !returned {
			span.SetAttributes(hookOutcomeError, hookErrorTypePanic)
			span.SetStatus(codes.Error, "panic")
		}
		spans.End(ctx, span, h.onPanic)
	}()
	err := next(ctx)
	returned = true
	if !recording {
		return err
	}
	if err == nil {
		span.SetAttributes(hookSuccessAttrs...)
		return nil
	}
	span.SetAttributes(hookOutcomeError, hookErrorType(err))
	span.SetStatus(codes.Error, bound.String(err.Error(), bound.Error))
	return err
}

// start starts the span of op: a child of the span in ctx, or, when the
// operation asked for it with contract.WithLink or WithLinks, a new root
// linked to the saved span contexts.
func (h *spanHook) start(ctx context.Context, op hooks.Operation) (context.Context, trace.Span) {
	name := bound.String(op.Name, bound.Attribute)
	if scs := contract.Links(ctx); len(scs) > 0 {
		ctx = contract.WithoutLink(ctx)
		links := make([]trace.Link, len(scs))
		for i, sc := range scs {
			links[i] = trace.Link{SpanContext: sc}
		}
		return spans.Start(ctx, h.tracer, h.onPanic, name, trace.WithSpanKind(trace.SpanKindInternal),
			trace.WithNewRoot(), trace.WithLinks(links...))
	}
	return spans.Start(ctx, h.tracer, h.onPanic, name, trace.WithSpanKind(trace.SpanKindInternal))
}

// hookErrorType returns the error.type attribute for err.
func hookErrorType(err error) attribute.KeyValue {
	s := semconv.ErrorType(err).Value.AsString()
	if s == "" {
		return semconv.ErrorTypeOther
	}
	return semconv.ErrorTypeKey.String(bound.String(s, bound.Attribute))
}

// hookSpanAttrs converts the context fields, the correlation ID and the
// operation's attributes, in that order so that the SDK, which keeps the
// last value of a key, lets the operation's own attributes win.
func hookSpanAttrs(ctx context.Context, op hooks.Operation) []attribute.KeyValue {
	fields := Fields(ctx)
	kvs := make([]attribute.KeyValue, 0, len(fields)+len(op.Attrs)+1)
	kvs = hookAppendAttrs(kvs, "", fields)
	if id := hooks.CorrelationID(ctx); id != "" {
		if _, ok := op.Attr(contract.CorrelationIDKey); !ok {
			kvs = append(kvs, attribute.String(contract.CorrelationIDKey, bound.String(id, bound.Attribute)))
		}
	}
	return hookAppendAttrs(kvs, "", op.Attrs)
}

func hookAppendAttrs(kvs []attribute.KeyValue, prefix string, attrs []slog.Attr) []attribute.KeyValue {
	for _, a := range attrs {
		kvs = hookAppendAttr(kvs, prefix, a)
	}
	return kvs
}

// appendAttr converts one slog attribute, flattening groups under prefix.
func hookAppendAttr(kvs []attribute.KeyValue, prefix string, a slog.Attr) []attribute.KeyValue {
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		p := prefix
		if a.Key != "" {
			p = hookJoinKey(prefix, a.Key)
		}
		return hookAppendAttrs(kvs, p, v.Group())
	}
	if a.Key == "" {
		// slog drops non-group attributes with an empty key.
		return kvs
	}
	key := hookJoinKey(prefix, a.Key)
	switch v.Kind() {
	case slog.KindString:
		return append(kvs, attribute.String(key, bound.String(v.String(), bound.Attribute)))
	case slog.KindInt64:
		return append(kvs, attribute.Int64(key, v.Int64()))
	case slog.KindUint64:
		if u := v.Uint64(); u <= math.MaxInt64 {
			return append(kvs, attribute.Int64(key, int64(u)))
		}
		return append(kvs, attribute.String(key, strconv.FormatUint(v.Uint64(), 10)))
	case slog.KindFloat64:
		return append(kvs, attribute.Float64(key, v.Float64()))
	case slog.KindBool:
		return append(kvs, attribute.Bool(key, v.Bool()))
	case slog.KindDuration:
		if !strings.HasSuffix(key, "_ms") {
			key += "_ms"
		}
		return append(kvs, attribute.Float64(key, float64(v.Duration())/float64(time.Millisecond)))
	case slog.KindTime:
		return append(kvs, attribute.String(key, v.Time().Format(time.RFC3339Nano)))
	case slog.KindAny:
		return hookAppendAny(kvs, key, v.Any())
	}
	return kvs
}

// appendAny converts the few non-slog types that have a safe, small string
// form and skips the rest.
func hookAppendAny(kvs []attribute.KeyValue, key string, x any) []attribute.KeyValue {
	switch x := x.(type) {
	case error:
		if s, ok := hookSafeString(x.Error); ok {
			return append(kvs, attribute.String(key, bound.String(s, bound.Attribute)))
		}
	case fmt.Stringer:
		if s, ok := hookSafeString(x.String); ok {
			return append(kvs, attribute.String(key, bound.String(s, bound.Attribute)))
		}
	case []string:
		n := min(len(x), hookSliceMax)
		ss := make([]string, n)
		for i := range n {
			ss[i] = bound.String(x[i], bound.Attribute)
		}
		return append(kvs, attribute.StringSlice(key, ss))
	}
	return kvs
}

// safeString calls f, reporting false if it panics, as the methods of typed
// nil pointers often do.
func hookSafeString(f func() string) (s string, ok bool) {
	defer func() {
		if recover() != nil {
			s, ok = "", false
		}
	}()
	return f(), true
}

func hookJoinKey(prefix, key string) string {
	key = bound.String(key, bound.Attribute)
	if prefix == "" {
		return key
	}
	return bound.String(prefix+"."+key, bound.Attribute)
}
