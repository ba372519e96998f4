package projections_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// BenchmarkProjection measures one projection (one partition, batches of
// 100, the sum projection: two HINCRBY per event) against the real Redis:
// each op is one event, read with XREAD, decoded, applied and committed
// with its checkpoint by the Lua script; the events are in the stream
// before the timer starts. It reports events/s.
//
//   - off: no hook registered.
//   - default_profile: InstallFrameworkHooks with its default profile
//     (projection.process.*, replay.start.*, ...) on an always-sampling SDK
//     provider whose batch processor drops the spans: one span per event.
//   - all_operations: the same with Operations "*": spans for the batch,
//     the sink write and the checkpoint save too.
//   - default_profile_batch_spans: the default profile with
//     Spans: SpanPerBatch, one projection.process span per batch.
func BenchmarkProjection(b *testing.B) {
	for _, ops := range []struct {
		name     string
		patterns []string
		spans    projections.SpanMode
	}{
		{"off", nil, projections.SpanPerEvent},
		{"default_profile", []string{}, projections.SpanPerEvent},
		{"all_operations", []string{"*"}, projections.SpanPerEvent},
		{"default_profile_batch_spans", []string{}, projections.SpanPerBatch},
	} {
		b.Run(ops.name, func(b *testing.B) {
			client, prefix := testsvc.RedisPrefix(b)
			store, err := projections.NewRedisStore(client, prefix)
			if err != nil {
				b.Fatal(err)
			}
			reg := hooks.NewRegistry()
			if ops.patterns != nil {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				if _, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg, TracerProvider: tp, Operations: ops.patterns}); err != nil {
					b.Fatal(err)
				}
			}
			stream := prefix + "events"
			addEvents(b, client, stream, 0, b.N, 100)
			w, err := projections.NewWorker(projections.Config{
				Projection: sumProjection("bench"), Streams: []string{stream},
				Source: projections.NewRedisSource(client), Store: store, Hooks: reg,
				Block: 10 * time.Millisecond, Propagator: propagation.TraceContext{}, Spans: ops.spans,
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			stop := startBench(w)
			for {
				lags, err := w.Lag(context.Background())
				if err != nil {
					b.Fatal(err)
				}
				if lags[0].Events == 0 {
					break
				}
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			stop()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "events/s")
		})
	}
}

func startBench(w *projections.Worker) func() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = w.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
	}
}
