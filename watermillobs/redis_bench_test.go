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
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/payloadtrace"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// The Redis Streams benchmarks measure what users feel: a router consuming
// one stream in one consumer group on the local Redis, and a producer
// XADDing one message per Publish call. An op is one message, from its
// Publish to its ack; the producer does not wait for the acks, so the
// consumer is always busy and ns/op is the consumer's cost per message
// (with the Redis server on the same cores). The telemetry setup is
// pinned: an always-on sampler with a batch span processor over a
// discarding exporter, slog's JSON handler at Info writing to io.Discard,
// and a fresh Prometheus registry. Run the variants with make bench-redis
// (scripts/bench-isolated.sh: each in its own process, in interleaved
// rounds).

// redisBench is one benchmark's stream, consumers and producer.
type redisBench struct {
	tel     *benchTelemetry
	topic   string
	pub     message.Publisher
	md      message.Metadata
	payload []byte
	wg      sync.WaitGroup
}

// benchTelemetry is the pinned telemetry setup of a variant.
type benchTelemetry struct {
	tp      *sdktrace.TracerProvider
	logger  *slog.Logger
	metrics *promobs.Metrics
	reg     *hooks.Registry
}

func newBenchTelemetry(b *testing.B) *benchTelemetry {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	m, err := promobs.New(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	return &benchTelemetry{
		tp:      tp,
		logger:  slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})),
		metrics: m,
		reg:     hooks.NewRegistry(),
	}
}

// opts are the options every instrumented piece of a variant gets.
func (t *benchTelemetry) opts() []watermillobs.Option {
	return []watermillobs.Option{
		watermillobs.WithTracerProvider(t.tp),
		watermillobs.WithPropagators(w3c),
		watermillobs.WithLogger(t.logger),
		watermillobs.WithHookRegistry(t.reg),
	}
}

// readme is the README's setup: Instrument with the promobs backend on the
// router, the producer's publisher through the metrics decorator and
// NewPublisher.
func (t *benchTelemetry) readme(b *testing.B, r *message.Router, payload *payloadtrace.Tracing) {
	err := watermillobs.Instrument(r, watermillobs.InstrumentConfig{
		Backends:       []watermillobs.Backend{t.metrics},
		PayloadTracing: payload,
	}, t.opts()...)
	if err != nil {
		b.Fatal(err)
	}
}

func (t *benchTelemetry) readmePublisher(pub message.Publisher) message.Publisher {
	return watermillobs.NewPublisher(t.metrics.DecoratePublisher(pub), t.opts()...)
}

// redisVariant is what a variant installs: on the router, and around the
// producer's Redis publisher.
type redisVariant struct {
	name      string
	consumers int
	// byHand writes the contract's metadata on each message by hand, as an
	// uninstrumented producer that follows the contract would.
	byHand bool
	// floor installs the hand-written floor of readme (floorTelemetry).
	floor     bool
	router    func(b *testing.B, t *benchTelemetry, r *message.Router)
	publisher func(t *benchTelemetry, pub message.Publisher) message.Publisher
}

var redisVariants = []redisVariant{
	{name: "bare"},
	{name: "bare_contract_by_hand", byHand: true},
	{name: "correlation", router: func(_ *testing.B, t *benchTelemetry, r *message.Router) {
		r.AddMiddleware(watermillobs.Correlation(t.opts()...))
	}},
	{name: "tracing", router: func(_ *testing.B, t *benchTelemetry, r *message.Router) {
		r.AddMiddleware(watermillobs.Tracing(watermillobs.TracingConfig{}, t.opts()...))
	}},
	{name: "logging", router: func(_ *testing.B, t *benchTelemetry, r *message.Router) {
		r.AddMiddleware(watermillobs.Logging(t.opts()...))
	}},
	{name: "promobs", router: func(_ *testing.B, t *benchTelemetry, r *message.Router) {
		r.AddMiddleware(t.metrics.HandlerMiddleware())
	}},
	{name: "consume_hooks", router: func(_ *testing.B, t *benchTelemetry, r *message.Router) {
		r.AddMiddleware(watermillobs.ConsumeHooks(t.opts()...))
	}},
	{name: "publisher", publisher: func(t *benchTelemetry, pub message.Publisher) message.Publisher {
		return t.readmePublisher(pub)
	}},
	{name: "readme", router: readmeRouter, publisher: readmePublisher},
	{name: "readme_default_hooks", router: func(b *testing.B, t *benchTelemetry, r *message.Router) {
		reg, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: t.reg, TracerProvider: t.tp})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { reg.Unregister() })
		t.readme(b, r, nil)
	}, publisher: readmePublisher},
	{name: "readme_payload", router: func(b *testing.B, t *benchTelemetry, r *message.Router) {
		t.readme(b, r, &payloadtrace.Tracing{IncludeFields: []string{"order_id", "amount"}})
	}, publisher: readmePublisher},
	{name: "readme_floor", floor: true},
	// The scaling table: the same stream and group, more consumers.
	{name: "bare_consumers_2", consumers: 2},
	{name: "bare_consumers_4", consumers: 4},
	{name: "readme_consumers_2", consumers: 2, router: readmeRouter, publisher: readmePublisher},
	{name: "readme_consumers_4", consumers: 4, router: readmeRouter, publisher: readmePublisher},
}

func readmeRouter(b *testing.B, t *benchTelemetry, r *message.Router) { t.readme(b, r, nil) }

func readmePublisher(t *benchTelemetry, pub message.Publisher) message.Publisher {
	return t.readmePublisher(pub)
}

func newRedisBench(b *testing.B, v redisVariant) *redisBench {
	_, prefix := testsvc.RedisPrefix(b)
	rb := &redisBench{
		tel:     newBenchTelemetry(b),
		topic:   prefix + "orders",
		payload: []byte(`{"order_id":"o-1","amount":42}`),
	}
	if v.byHand {
		rb.md = message.Metadata{
			contract.TraceparentKey:   "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			contract.CorrelationIDKey: hooks.NewCorrelationID(),
			contract.NameKey:          "OrderPlaced",
			contract.MessageKindKey:   contract.KindEvent,
		}
	}
	var pub message.Publisher = testsvc.RedisPublisher(b)
	if v.publisher != nil {
		pub = v.publisher(rb.tel, pub)
	}
	r := testsvc.NewRouter(b)
	if v.floor {
		floor := newFloorTelemetry(rb.tel, rb.topic)
		pub = floorPublisher{pub: pub, tel: floor}
		r.AddMiddleware(floor.middleware)
	}
	rb.pub = pub
	if v.router != nil {
		v.router(b, rb.tel, r)
	}
	handle := func(*message.Message) error {
		rb.wg.Done()
		return nil
	}
	for i := range max(v.consumers, 1) {
		sub := redisConsumer(b, "bench", "consumer-"+strconv.Itoa(i))
		r.AddConsumerHandler("bench_handler_"+strconv.Itoa(i), rb.topic, sub, handle)
	}
	testsvc.RunRouter(b, r)
	return rb
}

// redisConsumer is a subscriber in group with its own consumer name and
// client.
func redisConsumer(b *testing.B, group, consumer string) *redisstream.Subscriber {
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:                        testsvc.Redis(b),
		ConsumerGroup:                 group,
		Consumer:                      consumer,
		BlockTime:                     50 * time.Millisecond,
		DisableIndefiniteInitialBlock: true,
	}, watermill.NopLogger{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = sub.Close() })
	return sub
}

// publish publishes n messages, one Publish call each, and waits until all
// are handled.
func (rb *redisBench) publish(b *testing.B, n int) {
	for range n {
		msg := message.NewMessage(watermill.NewUUID(), rb.payload)
		for k, v := range rb.md {
			msg.Metadata[k] = v
		}
		rb.wg.Add(1)
		if err := rb.pub.Publish(rb.topic, msg); err != nil {
			b.Fatal(err)
		}
	}
	rb.wg.Wait()
}

// BenchmarkRedisStream runs each variant on the local Redis. Run it with
// make bench-redis, which starts a process per variant.
func BenchmarkRedisStream(b *testing.B) {
	for _, v := range redisVariants {
		b.Run(v.name, func(b *testing.B) {
			rb := newRedisBench(b, v)
			// The consumer group exists once the router runs; a first
			// message also warms the connections of every client.
			rb.publish(b, 1)
			runtime.GC()
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			rb.publish(b, b.N)
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
		})
	}
}

// The floor of the README setup on Redis: the same work written by hand
// with nothing of this module, as lean as it can be while meeting
// DESIGN.md's contract. The producer starts a send span with the
// semantic-convention attributes, writes the contract's metadata
// (traceparent, correlation ID, type, kind, published_at) and counts and
// times the Publish call; the consumer extracts the trace context, starts a
// child span with the attributes, writes one JSON log record with
// Logging's fields, and observes the same six series as promobs, with
// trace-ID exemplars, from children bound once. The distance of readme to
// it is what this module's own machinery costs.
type floorTelemetry struct {
	tracer                    trace.Tracer
	log                       slog.Handler
	published, consumed, msgs prometheus.Counter
	publishTime, handleTime   prometheus.Observer
	queueTime                 prometheus.Observer
}

func newFloorTelemetry(t *benchTelemetry, topic string) *floorTelemetry {
	reg := prometheus.NewRegistry()
	counter := func(name string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name}, labels)
		reg.MustRegister(v)
		return v
	}
	histogram := func(name string, labels ...string) *prometheus.HistogramVec {
		v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Buckets: prometheus.DefBuckets}, labels)
		reg.MustRegister(v)
		return v
	}
	return &floorTelemetry{
		tracer:      t.tp.Tracer("floor"),
		log:         t.logger.Handler(),
		published:   counter("published_total", "topic", "outcome").WithLabelValues(topic, "success"),
		publishTime: histogram("publish_seconds", "topic").WithLabelValues(topic),
		consumed:    counter("consumed_total", "topic", "handler", "outcome").WithLabelValues(topic, "bench_handler_0", "success"),
		msgs:        counter("message_total", "kind", "message_type", "outcome").WithLabelValues("event", "OrderPlaced", "success"),
		handleTime:  histogram("message_seconds", "kind", "message_type", "outcome").WithLabelValues("event", "OrderPlaced", "success"),
		queueTime:   histogram("queue_seconds", "topic").WithLabelValues(topic),
	}
}

func floorExemplar(ctx context.Context) prometheus.Labels {
	return prometheus.Labels{"trace_id": trace.SpanContextFromContext(ctx).TraceID().String()}
}

// floorPublisher is the producer half of the floor.
type floorPublisher struct {
	pub message.Publisher
	tel *floorTelemetry
}

func (p floorPublisher) Publish(topic string, msgs ...*message.Message) error {
	start := time.Now()
	spans := make([]trace.Span, len(msgs))
	for i, msg := range msgs {
		ctx, span := p.tel.tracer.Start(msg.Context(), "send "+topic, trace.WithSpanKind(trace.SpanKindProducer))
		cid := hooks.NewCorrelationID()
		span.SetAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.destination.name", topic),
			attribute.String("messaging.operation.name", "send"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.message.id", msg.UUID),
			attribute.String("messaging.message.conversation_id", cid),
		)
		w3c.Inject(ctx, propagation.MapCarrier(msg.Metadata))
		msg.Metadata[contract.CorrelationIDKey] = cid
		msg.Metadata[contract.NameKey] = "OrderPlaced"
		msg.Metadata[contract.MessageKindKey] = contract.KindEvent
		msg.Metadata[contract.PublishedAtKey] = start.UTC().Format(time.RFC3339Nano)
		msg.SetContext(ctx)
		spans[i] = span
	}
	err := p.pub.Publish(topic, msgs...)
	for _, span := range spans {
		span.End()
	}
	ctx := msgs[0].Context()
	p.tel.published.(prometheus.ExemplarAdder).AddWithExemplar(float64(len(msgs)), floorExemplar(ctx))
	p.tel.publishTime.(prometheus.ExemplarObserver).ObserveWithExemplar(time.Since(start).Seconds(), floorExemplar(ctx))
	return err
}

func (p floorPublisher) Close() error { return p.pub.Close() }

// floorMiddleware is the consumer half of the floor.
func (tel *floorTelemetry) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		start := time.Now()
		ctx := w3c.Extract(msg.Context(), propagation.MapCarrier(msg.Metadata))
		topic := message.SubscribeTopicFromCtx(ctx)
		cid := msg.Metadata.Get(contract.CorrelationIDKey)
		ctx, span := tel.tracer.Start(ctx, "process "+topic, trace.WithSpanKind(trace.SpanKindConsumer))
		span.SetAttributes(
			attribute.String("messaging.system", "redis"),
			attribute.String("messaging.destination.name", topic),
			attribute.String("messaging.operation.name", "process"),
			attribute.String("messaging.operation.type", "process"),
			attribute.String("messaging.message.id", msg.UUID),
			attribute.String("messaging.message.conversation_id", cid),
			attribute.String("watermill.handler.name", message.HandlerNameFromCtx(ctx)),
		)
		msg.SetContext(ctx)
		out, err := h(msg)
		span.End()

		d := time.Since(start)
		sc := span.SpanContext()
		r := slog.NewRecord(time.Now(), slog.LevelInfo, "message handled", 0)
		r.AddAttrs(
			slog.String("kind", msg.Metadata.Get(contract.MessageKindKey)),
			slog.String("message_type", msg.Metadata.Get(contract.NameKey)),
			slog.String("outcome", "success"),
			slog.Float64("duration_ms", float64(d)/float64(time.Millisecond)),
			slog.String("message_uuid", msg.UUID),
			slog.String("correlation_id", cid),
			slog.String("trace_id", sc.TraceID().String()),
			slog.String("span_id", sc.SpanID().String()),
			slog.String("handler", message.HandlerNameFromCtx(ctx)),
			slog.String("topic", topic),
		)
		_ = tel.log.Handle(ctx, r)

		ex := floorExemplar(ctx)
		tel.msgs.(prometheus.ExemplarAdder).AddWithExemplar(1, ex)
		tel.handleTime.(prometheus.ExemplarObserver).ObserveWithExemplar(d.Seconds(), ex)
		tel.consumed.(prometheus.ExemplarAdder).AddWithExemplar(1, ex)
		if at, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(contract.PublishedAtKey)); err == nil {
			tel.queueTime.(prometheus.ExemplarObserver).ObserveWithExemplar(start.Sub(at).Seconds(), ex)
		}
		return out, err
	}
}
