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

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/metrics"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// The router benchmarks share one harness: a gochannel router with one
// no-op consumer handler; each op publishes one message that carries the
// metadata an instrumented producer writes (traceparent, correlation ID,
// type, kind, published_at) and waits until it is handled. Variants differ
// only in what setup installs on the router. Spans go to an always-sampling
// SDK provider with a processor that drops them, so span creation is paid
// in full but nothing is exported.
type benchRouter struct {
	pubSub *gochannel.GoChannel
	// pub publishes the messages: pubSub unless a variant decorates it.
	pub     message.Publisher
	wg      sync.WaitGroup
	md      message.Metadata
	payload []byte
	stop    func()
}

func newBenchRouter(b *testing.B, setup func(b *testing.B, r *message.Router)) *benchRouter {
	br := &benchRouter{
		pubSub: gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024, BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{}),
		md: message.Metadata{
			contract.TraceparentKey:   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			contract.CorrelationIDKey: hooks.NewCorrelationID(),
			contract.NameKey:          "OrderPlaced",
			contract.MessageKindKey:   contract.KindEvent,
			contract.PublishedAtKey:   time.Now().UTC().Format(time.RFC3339Nano),
		},
		payload: []byte(`{"order_id":"o-1","amount":42}`),
	}
	br.pub = br.pubSub
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	setup(b, router)
	router.AddConsumerHandler("bench_handler", "bench", br.pubSub, func(*message.Message) error {
		br.wg.Done()
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = router.Run(ctx) }()
	<-router.Running()
	br.stop = func() {
		cancel()
		_ = router.Close()
		_ = br.pubSub.Close()
	}
	return br
}

// publish publishes n messages and waits until all are handled.
func (br *benchRouter) publish(b *testing.B, n int) {
	for i := range n {
		msg := message.NewMessage(strconv.Itoa(i), br.payload)
		for k, v := range br.md {
			msg.Metadata[k] = v
		}
		br.wg.Add(1)
		if err := br.pub.Publish("bench", msg); err != nil {
			b.Fatal(err)
		}
	}
	br.wg.Wait()
}

func benchmarkRouter(b *testing.B, v routerVariant) {
	setup := v.setup
	var decorate func(message.Publisher) message.Publisher
	if v.producer != nil {
		setup = func(b *testing.B, r *message.Router) { decorate = v.producer(b, r) }
	}
	br := newBenchRouter(b, setup)
	defer br.stop()
	if decorate != nil {
		// The producer writes the contract's metadata itself.
		br.md = nil
		br.pub = decorate(br.pubSub)
	}
	// Start every variant from a collected heap, so that garbage of the
	// variants before it is not billed to it.
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	br.publish(b, b.N)
	b.StopTimer()
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
	// The start options of voi-oss's Trace with no options given: the kind
	// and its (empty) configured attributes.
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes()}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx, span := tracer.Start(msg.Context(), message.HandlerNameFromCtx(msg.Context()), opts...)
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

// propagatingSpan is the minimal baseline plus what the tracing target asks
// for on top of it, written by hand with nothing of this module: the W3C
// extraction through the same propagator, a child span, and the attributes
// Tracing sets (DESIGN.md's semantic-convention set plus the handler name).
// Tracing's distance to it is what its own machinery costs; its distance to
// minimalSpan is what the propagation and attributes cost in the SDK. With
// handlerName false it sets only DESIGN.md's six attributes: the floor of
// any middleware that meets DESIGN.md on this SDK.
func propagatingSpan(tp *sdktrace.TracerProvider, handlerName bool) message.HandlerMiddleware {
	tracer := tp.Tracer("propagating")
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer)}
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx := msg.Context()
			topic := message.SubscribeTopicFromCtx(ctx)
			ctx = w3c.Extract(ctx, propagation.MapCarrier(msg.Metadata))
			ctx, span := tracer.Start(ctx, "process "+topic, opts...)
			attrs := make([]attribute.KeyValue, 0, 7)
			attrs = append(attrs,
				attribute.String("messaging.system", "gochannel"),
				attribute.String("messaging.destination.name", topic),
				attribute.String("messaging.operation.name", "process"),
				attribute.String("messaging.operation.type", "process"),
				attribute.String("messaging.message.id", msg.UUID),
				attribute.String("messaging.message.conversation_id", msg.Metadata.Get(contract.CorrelationIDKey)),
			)
			if handlerName {
				// Only when asked: the floor must not pay the lookup.
				attrs = append(attrs, attribute.String("watermill.handler.name", message.HandlerNameFromCtx(ctx)))
			}
			span.SetAttributes(attrs...)
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

// routerVariant is one variant of the router benchmarks: what it installs
// on the router and, when producer is set, the publisher the messages go
// through, which then writes the contract's metadata instead of the
// harness.
type routerVariant struct {
	name  string
	setup func(b *testing.B, r *message.Router)
	// producer, when set, replaces setup: it installs the variant on the
	// router and returns the decorator of the publisher that the messages
	// go through, which writes the contract's metadata instead of the
	// harness.
	producer func(b *testing.B, r *message.Router) func(message.Publisher) message.Publisher
}

// routerVariants are the variants of the router benchmarks, in the order
// they are reported.
var routerVariants = []routerVariant{
	{name: "bare", setup: func(*testing.B, *message.Router) {}},
	// Plain Watermill: no metadata at all, the baseline of the README
	// setup, whose producer writes the metadata itself.
	{name: "bare_plain", producer: func(*testing.B, *message.Router) func(message.Publisher) message.Publisher {
		return func(pub message.Publisher) message.Publisher { return pub }
	}},
	{name: "watermill_metrics", setup: func(b *testing.B, r *message.Router) {
		metrics.NewPrometheusMetricsBuilder(prometheus.NewRegistry(), "", "").AddPrometheusRouterMetrics(r)
	}},
	{name: "promobs", setup: func(b *testing.B, r *message.Router) {
		m, err := promobs.New(prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		r.AddMiddleware(m.HandlerMiddleware())
		r.AddPublisherDecorators(m.PublisherDecorator())
	}},
	{name: "minimal_span", setup: func(b *testing.B, r *message.Router) {
		r.AddMiddleware(minimalSpan(benchTracerProvider(b)))
	}},
	{name: "propagating_span", setup: func(b *testing.B, r *message.Router) {
		r.AddMiddleware(propagatingSpan(benchTracerProvider(b), true))
	}},
	{name: "propagating_span_design", setup: func(b *testing.B, r *message.Router) {
		r.AddMiddleware(propagatingSpan(benchTracerProvider(b), false))
	}},
	{name: "tracing", setup: func(b *testing.B, r *message.Router) {
		r.AddMiddleware(watermillobs.Tracing(watermillobs.TracingConfig{}, watermillobs.WithTracerProvider(benchTracerProvider(b)), watermillobs.WithPropagators(w3c)))
	}},
	{name: "consume_hooks_unobserved", setup: func(b *testing.B, r *message.Router) {
		r.AddMiddleware(watermillobs.ConsumeHooks(watermillobs.WithHookRegistry(hooks.NewRegistry())))
	}},
	{name: "full_set", setup: func(b *testing.B, r *message.Router) {
		m, err := promobs.New(prometheus.NewRegistry())
		if err != nil {
			b.Fatal(err)
		}
		err = watermillobs.Instrument(r, watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{m}},
			watermillobs.WithTracerProvider(benchTracerProvider(b)),
			watermillobs.WithPropagators(w3c),
			watermillobs.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))),
			watermillobs.WithHookRegistry(hooks.NewRegistry()),
		)
		if err != nil {
			b.Fatal(err)
		}
	}},
	// The README setup, as TestAllocs_readme_setup runs it: Instrument with
	// the promobs backend on the router, the publisher through the metrics
	// decorator and NewPublisher. Compare it with bare_plain.
	{name: "readme", producer: func(b *testing.B, r *message.Router) func(message.Publisher) message.Publisher {
		return readmeSetup(b, r, readmeBenchOptions(b))
	}},
	// The same with the default framework hook profile installed.
	{name: "readme_default_hooks", producer: func(b *testing.B, r *message.Router) func(message.Publisher) message.Publisher {
		reg := hooks.NewRegistry()
		g, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg, TracerProvider: benchTracerProvider(b)})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(g.Unregister)
		return readmeSetup(b, r, append(readmeBenchOptions(b), watermillobs.WithHookRegistry(reg)))
	}},
	// The README setup as it was before exemplars were gated: one on every
	// observation of a sampled span.
	{name: "readme_every_exemplar", producer: func(b *testing.B, r *message.Router) func(message.Publisher) message.Publisher {
		return readmeSetup(b, r, readmeBenchOptions(b), promobs.WithExemplarInterval(-1))
	}},
	// The README setup written by hand with nothing of this module: the
	// floor of the Redis harness (floorTelemetry) on gochannel.
	{name: "readme_floor", producer: func(b *testing.B, r *message.Router) func(message.Publisher) message.Publisher {
		tel := &benchTelemetry{
			tp:     benchTracerProvider(b),
			logger: slog.New(slog.NewJSONHandler(io.Discard, nil)),
		}
		floor := newFloorTelemetry(tel, "bench")
		r.AddMiddleware(floor.middleware)
		return func(pub message.Publisher) message.Publisher { return floorPublisher{pub: pub, tel: floor} }
	}},
}

// readmeSetup installs the README setup on r with opts (and metrics for
// promobs) and returns the decorator of its publisher.
func readmeSetup(b *testing.B, r *message.Router, opts []watermillobs.Option, metrics ...promobs.Option) func(message.Publisher) message.Publisher {
	m, err := promobs.New(prometheus.NewRegistry(), metrics...)
	if err != nil {
		b.Fatal(err)
	}
	err = watermillobs.Instrument(r, watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{m}}, opts...)
	if err != nil {
		b.Fatal(err)
	}
	return func(pub message.Publisher) message.Publisher {
		return watermillobs.NewPublisher(m.DecoratePublisher(pub), opts...)
	}
}

// BenchmarkRouter runs each variant on its own; run it with
// scripts/bench-isolated.sh, which starts a process per variant.
func BenchmarkRouter(b *testing.B) {
	for _, v := range routerVariants {
		b.Run(v.name, func(b *testing.B) { benchmarkRouter(b, v) })
	}
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
		prop := contract.NewPropagation(contract.PropagationConfig{Propagator: w3c})
		msg := message.NewMessage("1764-0", nil)
		msg.Metadata.Set(contract.TraceparentKey, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
		msg.Metadata.Set(contract.CorrelationIDKey, "c5a0c1a2-aaaa-4bbb-8ccc-123456789012")
		b.ReportAllocs()
		for b.Loop() {
			_ = prop.Extract(context.Background(), msg)
		}
	})
}
