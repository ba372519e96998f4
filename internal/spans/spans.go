// Package spans holds the span plumbing shared by the instrumentation
// packages: starting and ending spans so that a broken tracing pipeline
// never reaches a message, and caching span names built from a few keys.
package spans

import (
	"context"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/trace"
	noopTP "go.opentelemetry.io/otel/trace/noop"
)

// PanicFunc reports a panic recovered from the tracing pipeline; what
// names the step ("start span", "end span").
type PanicFunc func(ctx context.Context, what string, v any)

// noop stands in for a span the SDK failed to start.
var noop = trace.SpanFromContext(context.Background())

// NewTracer returns the tracer of tp for scope, or nil when tp is the
// OpenTelemetry no-op provider (trace/noop): [Start] then returns ctx as it
// is, sparing the context node that a no-op span costs per call. The trace
// context already in ctx propagates either way.
func NewTracer(tp trace.TracerProvider, scope string, opts ...trace.TracerOption) trace.Tracer {
	if _, ok := tp.(noopTP.TracerProvider); ok {
		return nil
	}
	return tp.Tracer(scope, opts...)
}

// Start starts a span. A panic inside the tracing pipeline (a broken span
// processor or sampler) is passed to onPanic and yields a non-recording
// span, so the caller goes on as if uninstrumented. A nil tracer (see
// [NewTracer]) yields ctx and a non-recording span.
func Start(ctx context.Context, tracer trace.Tracer, onPanic PanicFunc, name string, opts ...trace.SpanStartOption) (spanCtx context.Context, span trace.Span) {
	if tracer == nil {
		return ctx, noop
	}
	defer func() {
		if v := recover(); v != nil {
			onPanic(ctx, "start span", v)
			spanCtx, span = ctx, noop
		}
	}()
	return tracer.Start(ctx, name, opts...)
}

// End ends span; a panic of a span processor or of a synchronous exporter
// is passed to onPanic.
func End(ctx context.Context, span trace.Span, onPanic PanicFunc) {
	defer func() {
		if v := recover(); v != nil {
			onPanic(ctx, "end span", v)
		}
	}()
	span.End()
}

// maxCached bounds a Cache; keys past it get their value built every time.
const maxCached = 1024

// Cache keeps values built from a key (a topic, a message type, a handler),
// so that the per-message path does not build the same span name or
// attribute set again. Keys are few per process; the cache stops growing at
// 1024 entries.
//
// Reads take no lock: every message of every handler reads the cache, and
// a read lock's shared counter would bounce between cores. The map is
// replaced, never changed, when a key is added, which happens a few times
// per process.
type Cache[K comparable, V any] struct {
	// Build makes the value of a key. It is required.
	Build func(key K) V

	values atomic.Pointer[map[K]V]
	mu     sync.Mutex // serializes additions
}

// Get returns the value for key.
func (c *Cache[K, V]) Get(key K) V {
	if m := c.values.Load(); m != nil {
		if v, ok := (*m)[key]; ok {
			return v
		}
	}
	v := c.Build(key)
	c.mu.Lock()
	defer c.mu.Unlock()
	var old map[K]V
	if m := c.values.Load(); m != nil {
		old = *m
	}
	if w, ok := old[key]; ok {
		return w // added meanwhile: keep one value per key
	}
	if len(old) >= maxCached {
		return v
	}
	next := make(map[K]V, len(old)+1)
	for k, w := range old {
		next[k] = w
	}
	next[key] = v
	c.values.Store(&next)
	return v
}

// Names caches span names built from a key.
type Names = Cache[string, string]
