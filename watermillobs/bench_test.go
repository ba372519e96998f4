package watermillobs_test

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// The router benchmarks share one harness: a gochannel router with one
// no-op consumer handler; each op publishes one message that carries the
// metadata an instrumented producer writes (traceparent, correlation ID,
// type, kind, published_at) and waits until all are handled. Variants differ
// only in what setup installs on the router. Spans go to an always-sampling
// SDK provider with a processor that drops them, so span creation is paid
// in full but nothing is exported.
func benchmarkRouter(b *testing.B, setup func(b *testing.B, r *message.Router)) {
	pubSub := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024, BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	setup(b, router)
	var wg sync.WaitGroup
	router.AddConsumerHandler("bench_handler", "bench", pubSub, func(*message.Message) error {
		wg.Done()
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = router.Run(ctx) }()
	<-router.Running()

	md := message.Metadata{
		watermillobs.TraceparentKey:   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		watermillobs.CorrelationIDKey: hooks.NewCorrelationID(),
		watermillobs.NameKey:          "OrderPlaced",
		watermillobs.MessageKindKey:   watermillobs.KindEvent,
		watermillobs.PublishedAtKey:   time.Now().UTC().Format(time.RFC3339Nano),
	}
	payload := []byte(`{"order_id":"o-1","amount":42}`)
	// Start every variant from a collected heap, so that garbage of the
	// variants before it is not billed to it.
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		msg := message.NewMessage(strconv.Itoa(i), payload)
		for k, v := range md {
			msg.Metadata[k] = v
		}
		wg.Add(1)
		if err := pubSub.Publish("bench", msg); err != nil {
			b.Fatal(err)
		}
	}
	wg.Wait()
	b.StopTimer()
	_ = router.Close()
	_ = pubSub.Close()
}

type dropSpans struct{}

func (dropSpans) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (dropSpans) OnEnd(sdktrace.ReadOnlySpan)                     {}
func (dropSpans) Shutdown(context.Context) error                  { return nil }
func (dropSpans) ForceFlush(context.Context) error                { return nil }

func benchTracerProvider(b *testing.B) *sdktrace.TracerProvider {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()), sdktrace.WithSpanProcessor(dropSpans{}))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

// minimalSpan is the baseline that the existing Watermill tracing
// packages amount to: one consumer span per message named after the
// handler, the destination and operation attributes, the error recorded on
// failure; no trace context read from the message, no correlation, no
// status.
func minimalSpan(tp *sdktrace.TracerProvider) message.HandlerMiddleware {
	tracer := tp.Tracer("minimal")
	kind := trace.WithSpanKind(trace.SpanKindConsumer)
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx, span := tracer.Start(msg.Context(), message.HandlerNameFromCtx(msg.Context()), kind)
			span.SetAttributes(
				attribute.String("messaging.destination_kind", "topic"),
				attribute.String("messaging.destination", message.SubscribeTopicFromCtx(ctx)),
				attribute.String("messaging.operation", "receive"),
			)
			msg.SetContext(ctx)
			produced, err := h(msg)
			if err != nil {
				span.RecordError(err)
			}
			span.End()
			return produced, err
		}
	}
}

func BenchmarkRouter(b *testing.B) {
	b.Run("bare", func(b *testing.B) {
		benchmarkRouter(b, func(*testing.B, *message.Router) {})
	})
	b.Run("watermill_metrics", func(b *testing.B) {
		benchmarkRouter(b, func(b *testing.B, r *message.Router) {
			metrics.NewPrometheusMetricsBuilder(prometheus.NewRegistry(), "", "").AddPrometheusRouterMetrics(r)
		})
	})
	b.Run("promobs", func(b *testing.B) {
		benchmarkRouter(b, func(b *testing.B, r *message.Router) {
			m, err := promobs.New(prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			r.AddMiddleware(m.HandlerMiddleware())
			r.AddPublisherDecorators(m.PublisherDecorator())
		})
	})
	b.Run("minimal_span", func(b *testing.B) {
		benchmarkRouter(b, func(b *testing.B, r *message.Router) {
			r.AddMiddleware(minimalSpan(benchTracerProvider(b)))
		})
	})
	b.Run("tracing", func(b *testing.B) {
		benchmarkRouter(b, func(b *testing.B, r *message.Router) {
			r.AddMiddleware(watermillobs.Tracing(watermillobs.WithTracerProvider(benchTracerProvider(b)), watermillobs.WithPropagators(w3c)))
		})
	})
	b.Run("consume_hooks_unobserved", func(b *testing.B) {
		benchmarkRouter(b, func(b *testing.B, r *message.Router) {
			r.AddMiddleware(watermillobs.ConsumeHooks(watermillobs.WithRegistry(hooks.NewRegistry())))
		})
	})
	b.Run("full_set", func(b *testing.B) {
		benchmarkRouter(b, func(b *testing.B, r *message.Router) {
			m, err := promobs.New(prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			err = watermillobs.Instrument(r,
				watermillobs.WithTracerProvider(benchTracerProvider(b)),
				watermillobs.WithPropagators(w3c),
				watermillobs.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))),
				watermillobs.WithRegistry(hooks.NewRegistry()),
				watermillobs.WithBackends(m),
			)
			if err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkSpanCost breaks a consumer span down into what Tracing and the
// minimal baseline pay for: the SDK span alone, with three attributes (the
// baseline), with seven (Tracing), and the W3C extraction Tracing adds.
func BenchmarkSpanCost(b *testing.B) {
	tracer := benchTracerProvider(b).Tracer("bench")
	kind := trace.WithSpanKind(trace.SpanKindConsumer)
	three := []attribute.KeyValue{
		attribute.String("messaging.destination_kind", "topic"),
		attribute.String("messaging.destination", "orders"),
		attribute.String("messaging.operation", "receive"),
	}
	seven := []attribute.KeyValue{
		attribute.String("messaging.system", "redis"),
		attribute.String("messaging.destination.name", "orders"),
		attribute.String("messaging.operation.name", "process"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.message.id", "1764-0"),
		attribute.String("messaging.message.conversation_id", "c5a0c1a2-aaaa-4bbb-8ccc-123456789012"),
		attribute.String("watermill.handler.name", "place_order"),
	}
	for _, tt := range []struct {
		name  string
		attrs []attribute.KeyValue
	}{{"span", nil}, {"span_3_attributes", three}, {"span_7_attributes", seven}} {
		b.Run(tt.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, span := tracer.Start(context.Background(), "process orders", kind)
				if tt.attrs != nil {
					span.SetAttributes(tt.attrs...)
				}
				span.End()
			}
		})
	}
	b.Run("w3c_extract", func(b *testing.B) {
		prop := watermillobs.NewPropagation(watermillobs.WithPropagators(w3c))
		msg := message.NewMessage("1764-0", nil)
		msg.Metadata.Set(watermillobs.TraceparentKey, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
		msg.Metadata.Set(watermillobs.CorrelationIDKey, "c5a0c1a2-aaaa-4bbb-8ccc-123456789012")
		b.ReportAllocs()
		for b.Loop() {
			_ = prop.Extract(context.Background(), msg)
		}
	})
}
