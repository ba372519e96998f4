// Package spans holds the span plumbing shared by the instrumentation
// packages: starting and ending spans so that a broken tracing pipeline
// never reaches a message, and caching span names built from a few keys.
package spans

import (
	"context"
	"sync"

	"go.opentelemetry.io/otel/trace"
)

// PanicFunc reports a panic recovered from the tracing pipeline; what
// names the step ("start span", "end span").
type PanicFunc func(ctx context.Context, what string, v any)

// noop stands in for a span the SDK failed to start.
var noop = trace.SpanFromContext(context.Background())

// Start starts a span. A panic inside the tracing pipeline (a broken span
// processor or sampler) is passed to onPanic and yields a non-recording
// span, so the caller goes on as if uninstrumented.
func Start(ctx context.Context, tracer trace.Tracer, onPanic PanicFunc, name string, opts ...trace.SpanStartOption) (spanCtx context.Context, span trace.Span) {
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

// maxNames bounds a Names cache; keys past it get their name built every
// time.
const maxNames = 1024

// Names caches span names built from a key (a topic, a message type), so
// that the per-message path does not build the same string again. Keys are
// few per process; the cache stops growing at 1024.
type Names struct {
	// Build makes the name of a key. It is required.
	Build func(key string) string

	mu    sync.RWMutex
	names map[string]string
}

// Get returns the name for key.
func (n *Names) Get(key string) string {
	n.mu.RLock()
	name, ok := n.names[key]
	n.mu.RUnlock()
	if ok {
		return name
	}
	name = n.Build(key)
	n.mu.Lock()
	if n.names == nil {
		n.names = make(map[string]string)
	}
	if len(n.names) < maxNames {
		n.names[key] = name
	}
	n.mu.Unlock()
	return name
}
