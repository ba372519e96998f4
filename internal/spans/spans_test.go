package spans_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/cqrs-ddd/watermill-observability/internal/spans"
)

type explodingProcessor struct{ start, end bool }

func (p explodingProcessor) OnStart(context.Context, sdktrace.ReadWriteSpan) {
	if p.start {
		panic("start")
	}
}

func (p explodingProcessor) OnEnd(sdktrace.ReadOnlySpan) {
	if p.end {
		panic("end")
	}
}
func (explodingProcessor) Shutdown(context.Context) error   { return nil }
func (explodingProcessor) ForceFlush(context.Context) error { return nil }

func TestStartEnd_recover(t *testing.T) {
	for _, p := range []explodingProcessor{{start: true}, {end: true}} {
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(p))
		var seen []string
		onPanic := func(_ context.Context, what string, v any) { seen = append(seen, fmt.Sprint(what, ": ", v)) }
		ctx, span := spans.Start(context.Background(), tp.Tracer("t"), onPanic, "op")
		spans.End(ctx, span, onPanic)
		if len(seen) != 1 {
			t.Errorf("processor %+v: reported %q, want one panic", p, seen)
		}
		if p.start && span.IsRecording() {
			t.Errorf("a span that failed to start records")
		}
	}
}

func TestNames(t *testing.T) {
	builds := 0
	n := spans.Names{Build: func(k string) string { builds++; return "process " + k }}
	for range 3 {
		if got := n.Get("orders"); got != "process orders" {
			t.Fatalf("Get = %q", got)
		}
	}
	if builds != 1 {
		t.Errorf("built %d times, want 1 (cached)", builds)
	}
	for i := range 2000 {
		n.Get(fmt.Sprint(i))
	}
	before := builds
	n.Get("1999") // past the cap: built again, not cached
	if builds != before+1 {
		t.Errorf("keys past the cap are cached")
	}
}

func TestCache_concurrent_gets_agree(t *testing.T) {
	// Values are pointers: every caller must get the same one for a key,
	// whichever goroutine built it first.
	c := spans.Cache[int, *int]{Build: func(k int) *int { return &k }}
	const goroutines, keys = 8, 200
	got := make([][keys]*int, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for k := range keys {
				got[g][(k+g*25)%keys] = c.Get((k + g*25) % keys)
			}
		})
	}
	wg.Wait()
	for k := range keys {
		want := c.Get(k)
		if *want != k {
			t.Fatalf("Get(%d) = %d", k, *want)
		}
		for g := range goroutines {
			if got[g][k] != want {
				t.Fatalf("goroutine %d got another value for key %d than the cache keeps", g, k)
			}
		}
	}
}

func TestAllocs_noop_provider(t *testing.T) {
	tracer := spans.NewTracer(noop.NewTracerProvider(), "scope")
	parent := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}, TraceFlags: trace.FlagsSampled,
	}))
	onPanic := func(context.Context, string, any) { t.Error("no panic expected") }
	ctx, span := spans.Start(parent, tracer, onPanic, "op")
	if ctx != parent {
		t.Error("a no-op provider changed the context")
	}
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Error("a no-op provider gave a live span")
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = spans.Start(parent, tracer, onPanic, "op") }); n != 0 {
		t.Errorf("Start with a no-op provider allocates %v times", n)
	}

	sdk := sdktrace.NewTracerProvider()
	defer func() { _ = sdk.Shutdown(context.Background()) }()
	if _, span := spans.Start(parent, spans.NewTracer(sdk, "scope"), onPanic, "op"); !span.IsRecording() {
		t.Error("an SDK provider gave a span that does not record")
	}
}
