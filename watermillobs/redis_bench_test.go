package watermillobs_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
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
//
// The scaling table has two forms. The *_consumers_N variants run N
// subscribers of the group in the benchmark's process; the
// *_processes_N variants run each consumer in a process of its own: the
// benchmark's process is then the producer alone, and re-executes its test
// binary N times as BenchmarkRedisConsumerProcess (redisConsumerEnv names
// the variant, the stream and the consumer), each a router with one
// subscriber of the group, set up as the variant says, with telemetry of
// its own. The parent cannot count handler calls in other processes: it
// polls XINFO GROUPS (every ackPoll, once its messages are published)
// until the group has read every message published and has none pending,
// the same for every variant. Its allocs/op are the producer's only.

// redisBench is one benchmark's stream, consumers and producer.
type redisBench struct {
	tel     *benchTelemetry
	topic   string
	pub     message.Publisher
	md      message.Metadata
	payload []byte
	wg      sync.WaitGroup

	// The consumers of a *_processes_N variant, the client that polls
	// their group, and the number of messages published so far.
	procs  []*consumerProcess
	groups *redis.Client
	sent   int
}

// benchTelemetry is the pinned telemetry setup of a variant.
type benchTelemetry struct {
	tp      *sdktrace.TracerProvider
	logger  *slog.Logger
	metrics *promobs.Metrics
	reg     *hooks.Registry
}

func newBenchTelemetry(b *testing.B, metrics ...promobs.Option) *benchTelemetry {
	tp := sdktrace.NewTracerProvider(sdktrace.WithSampler(sdktrace.AlwaysSample()),
		sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	m, err := promobs.New(prometheus.NewRegistry(), metrics...)
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
	// processes, when set, runs that many consumers, each in a process of
	// its own (BenchmarkRedisConsumerProcess), with router as their setup.
	processes int
	// byHand writes the contract's metadata on each message by hand, as an
	// uninstrumented producer that follows the contract would.
	byHand bool
	// floor installs the hand-written floor of readme (floorTelemetry).
	floor bool
	// metrics are the options of the variant's promobs.Metrics.
	metrics   []promobs.Option
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
	// The README setup as it was before exemplars were gated: one on every
	// observation of a sampled span.
	{name: "readme_every_exemplar", router: readmeRouter, publisher: readmePublisher,
		metrics: []promobs.Option{promobs.WithExemplarInterval(-1)}},
	// The scaling table: the same stream and group, more consumers.
	{name: "bare_consumers_2", consumers: 2},
	{name: "bare_consumers_4", consumers: 4},
	{name: "readme_consumers_2", consumers: 2, router: readmeRouter, publisher: readmePublisher},
	{name: "readme_consumers_4", consumers: 4, router: readmeRouter, publisher: readmePublisher},
	// The same with each consumer a process of its own.
	{name: "bare_processes_1", processes: 1},
	{name: "bare_processes_2", processes: 2},
	{name: "bare_processes_4", processes: 4},
	{name: "readme_processes_1", processes: 1, router: readmeRouter, publisher: readmePublisher},
	{name: "readme_processes_2", processes: 2, router: readmeRouter, publisher: readmePublisher},
	{name: "readme_processes_4", processes: 4, router: readmeRouter, publisher: readmePublisher},
}

func lookupRedisVariant(name string) (redisVariant, bool) {
	for _, v := range redisVariants {
		if v.name == name {
			return v, true
		}
	}
	return redisVariant{}, false
}

func readmeRouter(b *testing.B, t *benchTelemetry, r *message.Router) { t.readme(b, r, nil) }

func readmePublisher(t *benchTelemetry, pub message.Publisher) message.Publisher {
	return t.readmePublisher(pub)
}

func newRedisBench(b *testing.B, v redisVariant) *redisBench {
	_, prefix := testsvc.RedisPrefix(b)
	rb := &redisBench{
		tel:     newBenchTelemetry(b, v.metrics...),
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
	if v.processes > 0 {
		rb.pub = pub
		rb.groups = testsvc.Redis(b)
		for i := range v.processes {
			rb.procs = append(rb.procs, startConsumerProcess(b, v.name, rb.topic, "consumer-"+strconv.Itoa(i)))
		}
		for i, p := range rb.procs {
			p.waitReady(b, i)
		}
		return rb
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
// are handled (acked, for consumer processes).
func (rb *redisBench) publish(b *testing.B, n int) {
	counted := rb.procs == nil
	for range n {
		msg := message.NewMessage(watermill.NewUUID(), rb.payload)
		for k, v := range rb.md {
			msg.Metadata[k] = v
		}
		if counted {
			rb.wg.Add(1)
		}
		if err := rb.pub.Publish(rb.topic, msg); err != nil {
			b.Fatal(err)
		}
	}
	rb.sent += n
	if counted {
		rb.wg.Wait()
	} else {
		rb.waitAcked(b)
	}
}

// warmUp publishes the message that warms every client before the timer
// starts: one, or with consumer processes one at a time until each process
// has handled one (Redis serves the blocked readers of a group in turn, so
// that takes about one per process).
func (rb *redisBench) warmUp(b *testing.B) {
	if rb.procs == nil {
		rb.publish(b, 1)
		return
	}
	for i := 0; ; i++ {
		cold := 0
		for _, p := range rb.procs {
			select {
			case <-p.warm:
			default:
				cold++
			}
		}
		if cold == 0 {
			return
		}
		if i == 100*len(rb.procs) {
			b.Fatalf("%d of %d consumer processes handled none of %d warm-up messages", cold, len(rb.procs), i)
		}
		rb.publish(b, 1)
	}
}

// ackPoll is how often the producer of consumer processes asks Redis
// whether its messages are acked.
const ackPoll = 500 * time.Microsecond

// ackTimeout bounds the wait for the acks of consumer processes.
const ackTimeout = time.Minute

// waitAcked polls XINFO GROUPS until the group has read all rb.sent
// messages and has none pending: every message was delivered and acked.
func (rb *redisBench) waitAcked(b *testing.B) {
	ctx := context.Background()
	deadline := time.Now().Add(ackTimeout)
	for {
		groups, err := rb.groups.XInfoGroups(ctx, rb.topic).Result()
		if err != nil {
			b.Fatalf("XINFO GROUPS %s: %v", rb.topic, err)
		}
		for _, g := range groups {
			if g.Name == "bench" && g.EntriesRead >= int64(rb.sent) && g.Pending == 0 {
				return
			}
		}
		for i, p := range rb.procs {
			select {
			case <-p.exited:
				p.fatalExited(b, i, "while consuming")
			default:
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("%d messages not all acked after %s: XINFO GROUPS %s = %+v", rb.sent, ackTimeout, rb.topic, groups)
		}
		time.Sleep(ackPoll)
	}
}

// redisConsumerEnv, when set, makes BenchmarkRedisConsumerProcess a
// consumer process of a *_processes_N variant instead of a skipped
// benchmark. Its value is "variant,stream,consumer".
const redisConsumerEnv = "WMOBS_REDIS_BENCH_CONSUMER"

// consumerProcess is a consumer of a *_processes_N variant: the test
// binary, run again as BenchmarkRedisConsumerProcess. It reports "ready"
// and "warm" on its file descriptor 3, and exits when its stdin ends (when
// the parent closes it or dies).
type consumerProcess struct {
	cmd *exec.Cmd
	out bytes.Buffer // its stdout and stderr; read after cmd.Wait
	// ready and warm are closed when it reports so; exited when its
	// report pipe ends, that is when it exited.
	ready, warm, exited chan struct{}
}

// consumerStartTimeout bounds the start of a consumer process.
const consumerStartTimeout = 30 * time.Second

// startConsumerProcess starts a consumer process of variant on stream in
// group "bench" as consumer, with the GOMAXPROCS of this process
// (-test.cpu), and kills it and waits for it when the benchmark ends.
func startConsumerProcess(b *testing.B, variant, stream, consumer string) *consumerProcess {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	reports, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	p := &consumerProcess{ready: make(chan struct{}), warm: make(chan struct{}), exited: make(chan struct{})}
	p.cmd = exec.Command(exe, "-test.run=^$", "-test.bench=^BenchmarkRedisConsumerProcess$",
		"-test.benchtime=1x", "-test.cpu="+strconv.Itoa(runtime.GOMAXPROCS(0)))
	p.cmd.Env = append(os.Environ(), redisConsumerEnv+"="+strings.Join([]string{variant, stream, consumer}, ","))
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	p.cmd.ExtraFiles = []*os.File{w}
	stdin, err := p.cmd.StdinPipe()
	if err == nil {
		err = p.cmd.Start()
	}
	_ = w.Close()
	if err != nil {
		_ = reports.Close()
		b.Fatalf("starting a consumer process: %v", err)
	}
	go p.readReports(reports)
	b.Cleanup(func() {
		_ = stdin.Close()
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
		<-p.exited
	})
	return p
}

func (p *consumerProcess) readReports(r *os.File) {
	defer close(p.exited)
	defer r.Close()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var c chan struct{}
		switch sc.Text() {
		case "ready":
			c = p.ready
		case "warm":
			c = p.warm
		default:
			continue
		}
		select {
		case <-c:
		default:
			close(c)
		}
	}
}

// waitReady waits until the process runs its router: it joined the group.
func (p *consumerProcess) waitReady(b *testing.B, i int) {
	b.Helper()
	select {
	case <-p.ready:
	case <-p.exited:
		p.fatalExited(b, i, "before it was ready")
	case <-time.After(consumerStartTimeout):
		b.Fatalf("consumer process %d not ready after %s", i, consumerStartTimeout)
	}
}

func (p *consumerProcess) fatalExited(b *testing.B, i int, when string) {
	b.Helper()
	err := p.cmd.Wait()
	b.Fatalf("consumer process %d exited %s (%v):\n%s", i, when, err, p.out.String())
}

// BenchmarkRedisConsumerProcess is a consumer process of BenchmarkRedisStream's
// *_processes_N variants, which start it with redisConsumerEnv set; without
// it, it skips. It runs a router with one subscriber of the group, set up as
// the variant's consumers are, until its stdin ends, and exits then.
func BenchmarkRedisConsumerProcess(b *testing.B) {
	spec := os.Getenv(redisConsumerEnv)
	if spec == "" {
		b.Skip("a consumer process of BenchmarkRedisStream/*_processes_N, which starts it")
	}
	f := strings.Split(spec, ",")
	var v redisVariant
	ok := len(f) == 3
	if ok {
		v, ok = lookupRedisVariant(f[0])
	}
	if !ok {
		b.Fatalf("%s=%q: want variant,stream,consumer", redisConsumerEnv, spec)
	}
	reports := os.NewFile(3, "reports")
	report := func(s string) {
		if _, err := reports.WriteString(s + "\n"); err != nil {
			os.Exit(1) // the parent is gone
		}
	}
	tel := newBenchTelemetry(b, v.metrics...)
	r := testsvc.NewRouter(b)
	if v.router != nil {
		v.router(b, tel, r)
	}
	var warm sync.Once
	r.AddConsumerHandler("bench_handler_0", f[1], redisConsumer(b, "bench", f[2]), func(*message.Message) error {
		warm.Do(func() { report("warm") })
		return nil
	})
	testsvc.RunRouter(b, r)
	report("ready")
	// The parent holds the other end of stdin: it ends when the parent
	// closes it or dies. Nothing of this process matters then.
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// BenchmarkRedisStream runs each variant on the local Redis. Run it with
// make bench-redis, which starts a process per variant.
func BenchmarkRedisStream(b *testing.B) {
	for _, v := range redisVariants {
		b.Run(v.name, func(b *testing.B) {
			rb := newRedisBench(b, v)
			// The consumer group exists once the router runs; a first
			// message (one per consumer process) also warms the
			// connections of every client.
			rb.warmUp(b)
			runtime.GC()
			b.ReportAllocs()
			cpu := testsvc.StartCPU(b)
			b.ResetTimer()
			start := time.Now()
			rb.publish(b, b.N)
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			// For *_processes_N, this process is the producer only.
			cpu.Report(b.N)
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
// trace-ID exemplars at most one a series (a bucket) per
// promobs.DefaultExemplarInterval, from children bound once. The distance
// of readme to it is what this module's own machinery costs.
type floorTelemetry struct {
	tracer                    trace.Tracer
	log                       slog.Handler
	published, consumed, msgs floorCounter
	publishTime, handleTime   floorHistogram
	queueTime                 floorHistogram
}

// floorGate holds, per slot (a counter has one, a histogram one per
// bucket), the time of the last exemplar.
type floorGate []atomic.Int64

func (g floorGate) open(slot int, now time.Time) bool {
	t, prev := now.UnixNano(), g[slot].Load()
	if prev != 0 && t >= prev && t-prev < int64(promobs.DefaultExemplarInterval) {
		return false
	}
	return g[slot].CompareAndSwap(prev, t)
}

type floorCounter struct {
	c    prometheus.Counter
	gate floorGate
}

func (c floorCounter) add(ctx context.Context, v float64, now time.Time) {
	if c.gate.open(0, now) {
		c.c.(prometheus.ExemplarAdder).AddWithExemplar(v, floorExemplar(ctx))
		return
	}
	c.c.Add(v)
}

type floorHistogram struct {
	o    prometheus.Observer
	gate floorGate
}

func (h floorHistogram) observe(ctx context.Context, v float64, now time.Time) {
	if h.gate.open(sort.SearchFloat64s(prometheus.DefBuckets, v), now) {
		h.o.(prometheus.ExemplarObserver).ObserveWithExemplar(v, floorExemplar(ctx))
		return
	}
	h.o.Observe(v)
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
	gated := func(c prometheus.Counter) floorCounter { return floorCounter{c, make(floorGate, 1)} }
	gatedH := func(o prometheus.Observer) floorHistogram {
		return floorHistogram{o, make(floorGate, len(prometheus.DefBuckets)+1)}
	}
	return &floorTelemetry{
		tracer:      t.tp.Tracer("floor"),
		log:         t.logger.Handler(),
		published:   gated(counter("published_total", "topic", "outcome").WithLabelValues(topic, "success")),
		publishTime: gatedH(histogram("publish_seconds", "topic").WithLabelValues(topic)),
		consumed:    gated(counter("consumed_total", "topic", "handler", "outcome").WithLabelValues(topic, "bench_handler_0", "success")),
		msgs:        gated(counter("message_total", "kind", "message_type", "outcome").WithLabelValues("event", "OrderPlaced", "success")),
		handleTime:  gatedH(histogram("message_seconds", "kind", "message_type", "outcome").WithLabelValues("event", "OrderPlaced", "success")),
		queueTime:   gatedH(histogram("queue_seconds", "topic").WithLabelValues(topic)),
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
		// As NewPublisher, the attributes known before the send are start
		// options, so that samplers see them.
		ctx, span := p.tel.tracer.Start(msg.Context(), "send "+topic, trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(
				attribute.String("messaging.system", "redis"),
				attribute.String("messaging.destination.name", topic),
				attribute.String("messaging.operation.name", "send"),
				attribute.String("messaging.operation.type", "send"),
				attribute.String("messaging.message.id", msg.UUID),
				attribute.Int("messaging.message.body.size", len(msg.Payload)),
			))
		cid := hooks.NewCorrelationID()
		span.SetAttributes(attribute.String("messaging.message.conversation_id", cid))
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
	ctx, now := msgs[0].Context(), time.Now()
	p.tel.published.add(ctx, float64(len(msgs)), now)
	p.tel.publishTime.observe(ctx, now.Sub(start).Seconds(), now)
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

		now := start.Add(d)
		tel.msgs.add(ctx, 1, now)
		tel.handleTime.observe(ctx, d.Seconds(), now)
		tel.consumed.add(ctx, 1, now)
		if at, err := time.Parse(time.RFC3339Nano, msg.Metadata.Get(contract.PublishedAtKey)); err == nil {
			tel.queueTime.observe(ctx, start.Sub(at).Seconds(), now)
		}
		return out, err
	}
}
