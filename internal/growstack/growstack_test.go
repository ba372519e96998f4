package growstack_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/internal/growstack"
)

func TestGrow_doesNotAllocate(t *testing.T) {
	// The reserve must live on the stack: an array moved to the heap
	// would allocate per call and grow nothing.
	if n := testing.AllocsPerRun(100, func() { growstack.Grow() }); n != 0 {
		t.Fatalf("Grow allocates %v times per call", n)
	}
}

// BenchmarkSpanOnFreshGoroutine starts and ends an SDK span on a new
// goroutine per op, as a tracing middleware does per message in a router:
// without Grow the stack grows inside the SDK, with Grow before it.
func BenchmarkSpanOnFreshGoroutine(b *testing.B) {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	tracer := tp.Tracer("bench")
	kind := trace.WithSpanKind(trace.SpanKindConsumer)
	for _, grow := range []bool{false, true} {
		name := "without_grow"
		if grow {
			name = "with_grow"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			done := make(chan struct{})
			for b.Loop() {
				go func() {
					if grow {
						_ = growstack.Grow()
					}
					_, span := tracer.Start(context.Background(), "process orders", kind)
					span.End()
					done <- struct{}{}
				}()
				<-done
			}
		})
	}
}
