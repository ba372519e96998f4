package sagas_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/goleak"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/spanfile"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/sagas"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// The multi-process test runs the order flow in three OS processes (this
// test binary, re-executed as a worker) that share the Redis consumer
// groups, kills one of them with SIGKILL mid-run, and checks the outcome
// in Redis and in the spans every process wrote.

// The environment of a worker process.
const (
	envWorker  = "SAGAS_FLOW_WORKER" // the worker's name; set only in workers
	envPrefix  = "SAGAS_FLOW_PREFIX"
	envSpans   = "SAGAS_FLOW_SPANS"
	envRedis   = "SAGAS_FLOW_REDIS" // comma-separated: more than one is a cluster
	envTimeout = "SAGAS_FLOW_PAYMENT_TIMEOUT"
	envLink    = "SAGAS_FLOW_LINK_TIMEOUTS" // "1": timeout steps start linked traces
	envCrashOn = "SAGAS_FLOW_CRASH_ON"      // a command type: the worker SIGKILLs itself instead of publishing it
)

// Claim settings short enough that a dead worker's entries move on within
// seconds; the payment timeout is longer than the lock TTL plus the idle
// time plus the claim interval, so the kill does not turn a saga that is
// paid into a timed-out one.
const (
	flowLockTTL        = 2 * time.Second
	flowMaxIdleTime    = 2 * time.Second
	flowClaimInterval  = time.Second
	flowPaymentTimeout = 8 * time.Second
	flowPlaceInterval  = 20 * time.Millisecond
)

func TestMain(m *testing.M) {
	if name := os.Getenv(envWorker); name != "" {
		if err := runFlowWorker(name); err != nil {
			fmt.Fprintf(os.Stderr, "worker %s: %v\n", name, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// Only the test path checks for leaked goroutines: a worker exits
	// above, and a leaked goroutine is a leak a user's process would carry.
	// Settled first lets the readers of closed redisstream subscribers end.
	goleak.VerifyTestMain(testsvc.Settled(m))
}

var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// flowClient returns a client of the Redis (or Redis Cluster) at addrs.
func flowClient(addrs []string) redis.UniversalClient {
	if len(addrs) > 1 {
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	}
	return redis.NewClient(&redis.Options{Addr: addrs[0]})
}

// flowTopics names the streams of a flow run.
type flowTopics struct{ prefix string }

func (f flowTopics) events() string                { return f.prefix + "events" }
func (f flowTopics) command(name string) string    { return f.prefix + "commands." + name }
func (f flowTopics) group(name string) string      { return f.prefix + name }
func (f flowTopics) eventBus() cqrs.EventBusConfig { return f.eventBusConfig(nil) }

func (f flowTopics) eventBusConfig(onPublish cqrs.OnEventSendFn) cqrs.EventBusConfig {
	return cqrs.EventBusConfig{
		GeneratePublishTopic: func(cqrs.GenerateEventPublishTopicParams) (string, error) { return f.events(), nil },
		OnPublish:            onPublish,
		Marshaler:            marshaler,
	}
}

// flowTelemetry is the telemetry of one process of the flow: spans to a
// file of its own, a hook registry with the default span profile.
type flowTelemetry struct {
	tp   *sdktrace.TracerProvider
	reg  *hooks.Registry
	opts []watermillobs.Option
}

func newFlowTelemetry(spansPath, process string) (*flowTelemetry, error) {
	exp, err := spanfile.NewExporter(spansPath, process)
	if err != nil {
		return nil, err
	}
	// A syncer: a killed process keeps the spans it ended.
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	reg := hooks.NewRegistry()
	if _, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg, TracerProvider: tp}); err != nil {
		return nil, err
	}
	return &flowTelemetry{tp: tp, reg: reg, opts: []watermillobs.Option{
		watermillobs.WithTracerProvider(tp),
		watermillobs.WithPropagators(w3c),
		watermillobs.WithHookRegistry(reg),
		watermillobs.WithLogger(slog.New(slog.DiscardHandler)),
	}}, nil
}

// runFlowWorker is a worker process: the stock, payment and shipping
// services and the order saga, until SIGTERM.
func runFlowWorker(name string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	prefix := os.Getenv(envPrefix)
	topics := flowTopics{prefix}
	timeout, err := time.ParseDuration(os.Getenv(envTimeout))
	if err != nil {
		return err
	}
	client := flowClient(strings.Split(os.Getenv(envRedis), ","))
	defer client.Close()
	tel, err := newFlowTelemetry(os.Getenv(envSpans), name)
	if err != nil {
		return err
	}
	defer func() { _ = tel.tp.Shutdown(context.Background()) }()

	rawPub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	pub := watermillobs.NewPublisher(rawPub, tel.opts...)
	var sagaPub message.Publisher = pub
	if cmd := os.Getenv(envCrashOn); cmd != "" {
		sagaPub = crashingPublisher{Publisher: pub, commandType: cmd}
	}
	subscriber := func(group string) (message.Subscriber, error) {
		return redisstream.NewSubscriber(redisstream.SubscriberConfig{
			Client:                        client,
			ConsumerGroup:                 topics.group(group),
			Consumer:                      name,
			BlockTime:                     100 * time.Millisecond,
			ClaimInterval:                 flowClaimInterval,
			MaxIdleTime:                   flowMaxIdleTime,
			NackResendSleep:               50 * time.Millisecond,
			DisableIndefiniteInitialBlock: true,
		}, watermill.NopLogger{})
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	if err := watermillobs.Instrument(router, watermillobs.InstrumentConfig{}, tel.opts...); err != nil {
		return err
	}

	ebc := topics.eventBusConfig(setReplyUUID)
	cpc := cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return topics.command(p.CommandName), nil
		},
		SubscriberConstructor: func(p cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return subscriber(p.HandlerName)
		},
		Marshaler: marshaler,
	}
	egc := cqrs.EventGroupProcessorConfig{
		GenerateSubscribeTopic: func(cqrs.EventGroupProcessorGenerateSubscribeTopicParams) (string, error) {
			return topics.events(), nil
		},
		SubscriberConstructor: func(p cqrs.EventGroupProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return subscriber(p.EventGroupName)
		},
		AckOnUnknownEvent: true,
		Marshaler:         marshaler,
	}
	wiring, err := cqrsbus.Wire(cqrsbus.WireConfig{
		Instrumentation:     cqrsbus.Config{TracerProvider: tel.tp, Propagator: w3c, Registry: tel.reg},
		Publisher:           pub,
		EventBus:            &ebc,
		CommandProcessor:    &cpc,
		EventGroupProcessor: &egc,
	})
	if err != nil {
		return err
	}
	events := wiring.EventBus()
	commands, err := cqrs.NewCommandProcessorWithConfig(router, cpc)
	if err != nil {
		return err
	}
	group, err := cqrs.NewEventGroupProcessorWithConfig(router, egc)
	if err != nil {
		return err
	}

	// The services: each command takes effect once per UUID, then the
	// service answers with an event (the payment service never answers a
	// slow payment).
	effect := func(ctx context.Context, orderID string, reply any) error {
		cmd := cqrs.OriginalMessageFromCtx(ctx)
		uuids, counts := effectKeys(prefix, orderID)
		if err := recordEffect.Run(ctx, client, []string{uuids, counts}, cmd.UUID, cmd.Metadata.Get("name")).Err(); err != nil {
			return err
		}
		if reply == nil {
			return nil
		}
		return events.Publish(ctx, reply)
	}
	err = commands.AddHandlers(
		cqrs.NewCommandHandler("stock", func(ctx context.Context, c *ReserveStock) error {
			return effect(ctx, c.OrderID, &StockReserved{OrderID: c.OrderID})
		}),
		cqrs.NewCommandHandler("payment", func(ctx context.Context, c *ChargePayment) error {
			if c.Amount == slowPayment {
				return effect(ctx, c.OrderID, nil)
			}
			return effect(ctx, c.OrderID, &PaymentCharged{OrderID: c.OrderID})
		}),
		cqrs.NewCommandHandler("shipping", func(ctx context.Context, c *ShipOrder) error {
			return effect(ctx, c.OrderID, &OrderShipped{OrderID: c.OrderID})
		}),
		cqrs.NewCommandHandler("release", func(ctx context.Context, c *ReleaseStock) error {
			return effect(ctx, c.OrderID, nil)
		}),
	)
	if err != nil {
		return err
	}

	store, err := sagas.NewRedisStore(client, sagas.RedisStoreConfig{Prefix: prefix + "saga:"})
	if err != nil {
		return err
	}
	m, err := sagas.NewManager(sagas.Config{
		Store:                store,
		Publisher:            sagaPub,
		Marshaler:            marshaler,
		GenerateCommandTopic: topics.command,
		Process:              name,
		Logger:               slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		Registry:             tel.reg,
		Propagator:           w3c,
		LockTTL:              flowLockTTL,
		LockWait:             time.Second,
		RecoveryInterval:     200 * time.Millisecond,
		LinkTimeouts:         os.Getenv(envLink) == "1",
	})
	if err != nil {
		return err
	}
	if err := sagas.Register(m, flowSaga(timeout)); err != nil {
		return err
	}
	if err := m.AddTo(group); err != nil {
		return err
	}

	runErr := make(chan error, 1)
	go func() { runErr <- router.Run(ctx) }()
	go func() { _ = m.RunRecovery(ctx) }()
	select {
	case <-router.Running():
	case err := <-runErr:
		return fmt.Errorf("router stopped before running: %w", err)
	}
	fmt.Println("ready")
	<-ctx.Done()
	return <-runErr
}

// crashingPublisher kills its own process with SIGKILL when asked to
// publish a command of commandType: the crash between a step's save and
// the publishing of its commands.
type crashingPublisher struct {
	message.Publisher
	commandType string
}

func (p crashingPublisher) Publish(topic string, msgs ...*message.Message) error {
	for _, m := range msgs {
		if m.Metadata.Get("name") == p.commandType {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}
	return p.Publisher.Publish(topic, msgs...)
}

// flowWorker is a running worker process.
type flowWorker struct {
	name   string
	cmd    *exec.Cmd
	done   chan error
	stderr *logBuffer
}

// startFlowWorker starts a worker and waits until its router runs.
func startFlowWorker(t *testing.T, name string, env []string) *flowWorker {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append(env, envWorker+"="+name)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &flowWorker{name: name, cmd: cmd, done: make(chan error, 1), stderr: &logBuffer{}}
	cmd.Stderr = w.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start worker %s: %v", name, err)
	}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if sc.Text() == "ready" {
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	go func() { w.done <- cmd.Wait() }()
	t.Cleanup(func() {
		// Never left running: a failed test still stops its workers.
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	select {
	case <-ready:
	case err := <-w.done:
		t.Fatalf("worker %s exited before it was ready: %v\n%s", name, err, w.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("worker %s not ready after 30s\n%s", name, w.stderr)
	}
	return w
}

// stop stops the worker with SIGTERM and waits for it.
func (w *flowWorker) stop(t *testing.T) {
	t.Helper()
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-w.done:
		if err != nil {
			t.Errorf("worker %s: %v\n%s", w.name, err, w.stderr)
		}
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		t.Errorf("worker %s did not stop within 30s", w.name)
	}
}

// kill kills the worker with SIGKILL.
func (w *flowWorker) kill(t *testing.T) {
	t.Helper()
	if err := w.cmd.Process.Kill(); err != nil {
		t.Fatalf("cannot kill worker %s: %v", w.name, err)
	}
	<-w.done
}

// flowTimeoutFor is the payment timeout of a run of n orders: at least
// flowPaymentTimeout, and longer for a large run, whose paid sagas can wait
// behind the backlog the killed worker leaves (hundreds of entries
// reclaimed at once) on a busy machine; a paid saga must not time out.
func flowTimeoutFor(n int) time.Duration {
	return max(flowPaymentTimeout, time.Duration(n)*40*time.Millisecond)
}

// flowOrderID names the i-th order; every fifth one takes the timeout path.
func flowOrderID(i int) string { return fmt.Sprintf("order-%04d", i) }

func flowAmount(i int) int {
	if i%5 == 4 {
		return slowPayment
	}
	return 100 + i
}

// runFlow places n orders, runs them through three worker processes on the
// Redis at addrs, kills one worker mid-run, and checks the result.
//
// With linkTimeouts, timeout steps start a new trace linked to the step
// that scheduled them; else they continue its trace.
func runFlow(t *testing.T, client redis.UniversalClient, addrs []string, prefix string, n int, linkTimeouts bool) {
	dir := t.TempDir()
	env := []string{
		envPrefix + "=" + prefix,
		envRedis + "=" + strings.Join(addrs, ","),
		envTimeout + "=" + flowTimeoutFor(n).String(),
	}
	if linkTimeouts {
		env = append(env, envLink+"=1")
	}
	var workers []*flowWorker
	for i := range 3 {
		name := fmt.Sprintf("worker-%d", i+1)
		workers = append(workers, startFlowWorker(t, name, append(env, envSpans+"="+filepath.Join(dir, name+".jsonl"))))
	}

	// The api: one root span per order, the OrderPlaced event sent in it.
	tel, err := newFlowTelemetry(filepath.Join(dir, "api.jsonl"), "api")
	if err != nil {
		t.Fatal(err)
	}
	rawPub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	topics := flowTopics{prefix}
	ebc := topics.eventBus()
	wiring, err := cqrsbus.Wire(cqrsbus.WireConfig{
		Instrumentation: cqrsbus.Config{TracerProvider: tel.tp, Propagator: w3c, Registry: tel.reg},
		Publisher:       watermillobs.NewPublisher(rawPub, tel.opts...),
		EventBus:        &ebc,
	})
	if err != nil {
		t.Fatal(err)
	}
	events := wiring.EventBus()
	tracer := tel.tp.Tracer("api")
	rootTrace := make(map[string]string, n)
	var rootMu sync.Mutex
	// Orders arrive over a few seconds, so that the kill below meets every
	// stage of the flow in progress.
	placed := make(chan error, 1)
	go func() {
		for i := range n {
			id := flowOrderID(i)
			ctx, span := tracer.Start(hooks.WithCorrelationID(context.Background(), "corr-"+id), "place order")
			rootMu.Lock()
			rootTrace[id] = span.SpanContext().TraceID().String()
			rootMu.Unlock()
			err := events.Publish(ctx, &OrderPlaced{OrderID: id, Amount: flowAmount(i)})
			span.End()
			if err != nil {
				placed <- err
				return
			}
			time.Sleep(flowPlaceInterval)
		}
		placed <- nil
	}()

	store, err := sagas.NewRedisStore(client, sagas.RedisStoreConfig{Prefix: prefix + "saga:"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ended := func() (int, []string) {
		var done int
		var open []string
		for i := range n {
			inst, found, err := store.Load(ctx, sagaType, flowOrderID(i))
			if err != nil {
				t.Fatal(err)
			}
			if found && inst.Outcome != "" && len(inst.Pending) == 0 {
				done++
			} else {
				open = append(open, flowOrderID(i))
			}
		}
		return done, open
	}
	// Kill a worker once a quarter of the sagas ended: it then holds
	// entries, locks and unpublished commands of the others.
	deadline := time.Now().Add(60 * time.Second)
	for {
		done, _ := ended()
		if done >= n/4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d sagas ended after 60s\n%s", done, n, workers[0].stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	killed := workers[1]
	killed.kill(t)
	_, openAtKill := ended()
	t.Logf("killed %s with %d of %d sagas open", killed.name, len(openAtKill), n)
	if err := <-placed; err != nil {
		t.Fatal(err)
	}

	deadline = time.Now().Add(120 * time.Second)
	for {
		done, open := ended()
		if done == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sagas not ended after the kill, e.g. %v\n%s", n-done, n, open[:min(5, len(open))], workers[0].stderr)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The commands of the last steps were published; wait for their
	// effects before reading them.
	wantEffects := func(i int) map[string]string {
		if flowAmount(i) == slowPayment {
			return map[string]string{"ReserveStock": "1", "ChargePayment": "1", "ReleaseStock": "1"}
		}
		return map[string]string{"ReserveStock": "1", "ChargePayment": "1", "ShipOrder": "1"}
	}
	eventually(t, "every command's effect", func() bool {
		for i := range n {
			_, counts := effectKeys(prefix, flowOrderID(i))
			got, err := client.HGetAll(ctx, counts).Result()
			if err != nil || len(got) < len(wantEffects(i)) {
				return false
			}
		}
		return true
	})
	for _, w := range []*flowWorker{workers[0], workers[2]} {
		w.stop(t)
	}
	_ = tel.tp.Shutdown(ctx)

	for i := range n {
		id := flowOrderID(i)
		inst, _, err := store.Load(ctx, sagaType, id)
		if err != nil {
			t.Fatal(err)
		}
		want := sagas.OutcomeCompleted
		if flowAmount(i) == slowPayment {
			want = sagas.OutcomeCompensated
		}
		if inst.Outcome != want {
			t.Errorf("%s ended %q, want %q", id, inst.Outcome, want)
		}
		_, counts := effectKeys(prefix, id)
		got, err := client.HGetAll(ctx, counts).Result()
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(wantEffects(i)) {
			t.Errorf("%s: command effects %v, want %v (each command once)", id, got, wantEffects(i))
		}
	}

	checkTakeover(t, store, openAtKill, killed.name)
	checkClaimed(t, client, topics, killed.name)
	checkFlowTraces(t, dir, store, n, rootTrace, killed.name, linkTimeouts)
}

// checkTakeover checks that the kill hit the run: sagas were still open
// when the worker died (the orders were still arriving), and it logs how
// many of them had a step of that worker and were finished by the
// survivors. How many do depends on timing, so only the first is a
// requirement; checkClaimed shows the survivors took over what the killed
// worker held.
func checkTakeover(t *testing.T, store sagas.Store, openAtKill []string, killed string) {
	t.Helper()
	if len(openAtKill) == 0 {
		t.Fatalf("every saga had ended when %s was killed: the kill did not hit the run", killed)
	}
	takenOver := 0
	for _, id := range openAtKill {
		recs, err := store.History(context.Background(), sagaType, id)
		if err != nil {
			t.Fatal(err)
		}
		var byKilled bool
		for _, r := range recs {
			byKilled = byKilled || r.Process == killed
		}
		if byKilled && recs[len(recs)-1].Process != killed {
			takenOver++
		}
	}
	t.Logf("%d sagas open at the kill; %d of them had steps of %s and were finished by the survivors", len(openAtKill), takenOver, killed)
}

// checkClaimed checks that no stream entry is left pending for the killed
// worker: the survivors claimed and acknowledged all it held.
func checkClaimed(t *testing.T, client redis.UniversalClient, topics flowTopics, killed string) {
	t.Helper()
	ctx := context.Background()
	streams := map[string]string{topics.events(): topics.group(sagaType)}
	for cmd, handler := range map[string]string{"ReserveStock": "stock", "ChargePayment": "payment", "ShipOrder": "shipping", "ReleaseStock": "release"} {
		streams[topics.command(cmd)] = topics.group(handler)
	}
	for stream, group := range streams {
		p, err := client.XPending(ctx, stream, group).Result()
		if err != nil {
			t.Fatalf("XPENDING %s %s: %v", stream, group, err)
		}
		if p.Consumers[killed] != 0 || p.Count != 0 {
			t.Errorf("%s/%s: %d entries pending, %d of them for %s", stream, group, p.Count, p.Consumers[killed], killed)
		}
	}
}

// checkFlowTraces checks, for a sample of the sagas, that the spans all
// processes exported form one trace per saga, the trace of the api's
// "place order" span, with spans from at least two processes, and that
// the History of each saga names spans of that trace. With linkTimeouts,
// a timeout step is instead the root of a trace of its own, linked to the
// step that scheduled the timeout.
func checkFlowTraces(t *testing.T, dir string, store sagas.Store, n int, rootTrace map[string]string, killed string, linkTimeouts bool) {
	t.Helper()
	spans, err := spanfile.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	byID := make(map[string]spanfile.Span, len(spans))
	processes := make(map[string]map[string]bool) // trace ID -> processes
	for _, s := range spans {
		byID[s.SpanID] = s
		if processes[s.TraceID] == nil {
			processes[s.TraceID] = make(map[string]bool)
		}
		processes[s.TraceID][s.Process] = true
	}
	ctx := context.Background()
	sampled := 0
	linked := 0
	// Every seventh order: both paths (every fifth order times out).
	for i := 0; i < n; i += 7 {
		id := flowOrderID(i)
		trace := rootTrace[id]
		recs, err := store.History(ctx, sagaType, id)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[bool]int{true: 3, false: 4}[flowAmount(i) == slowPayment]; len(recs) < want {
			t.Errorf("%s: %d history records, want at least %d", id, len(recs), want)
		}
		for _, r := range recs {
			if linkTimeouts && r.Trigger == "timeout" {
				s, ok := byID[r.SpanID]
				if !ok && r.Process == killed {
					continue
				}
				// The new trace's root is the span of the timeout's
				// delivery (saga.recovery.timeouts), the step's parent.
				root := s
				for root.ParentID != "" {
					p, ok := byID[root.ParentID]
					if !ok {
						break
					}
					root = p
				}
				if !ok || s.TraceID == trace || r.TraceID != s.TraceID || root.ParentID != "" || len(root.Links) != 1 ||
					root.Links[0].TraceID != trace || byID[root.Links[0].SpanID].Name != "saga.run."+sagaType {
					t.Errorf("%s timeout step %d: span %+v (found %v) with root %+v, want a new trace whose root links to a saga.run span of trace %s",
						id, r.Version, s, ok, root, trace)
				}
				linked++
				continue
			}
			if r.TraceID != trace {
				t.Errorf("%s step %d (%s %s) in trace %s, want the order's trace %s", id, r.Version, r.Trigger, r.EventType, r.TraceID, trace)
				continue
			}
			s, ok := byID[r.SpanID]
			if !ok {
				// Only the killed worker may have saved a step whose
				// span it never got to end.
				if r.Process != killed {
					t.Errorf("%s step %d by %s: no exported span %s", id, r.Version, r.Process, r.SpanID)
				}
				continue
			}
			if s.Name != "saga.run."+sagaType || s.TraceID != trace || s.Process != r.Process ||
				s.Attrs["saga.id"] != id || s.Attrs["saga.to_state"] != r.ToState {
				t.Errorf("%s step %d: span %+v does not match the record %+v", id, r.Version, s, r)
			}
		}
		if len(processes[trace]) < 2 {
			t.Errorf("%s: trace %s has spans of %v, want at least two processes", id, trace, processes[trace])
		}
		sampled++
	}
	if testing.Verbose() {
		// The trace of one order that timed out, as a tree.
		logTraceTree(t, spans, rootTrace[flowOrderID(4)])
	}
	if linkTimeouts && linked == 0 {
		t.Errorf("no timeout step among the sampled sagas")
	}
	t.Logf("%d spans; %d sagas' traces checked, %d linked timeout steps", len(spans), sampled, linked)
}

// TestMultiProcess_order_saga runs the order flow in three processes on
// Redis, one of them killed mid-run: 100 sagas, 500 in the full run.
func TestMultiProcess_order_saga(t *testing.T) {
	t.Parallel()
	client, prefix := testsvc.RedisPrefix(t)
	n := 100
	if testsvc.Full() {
		n = 500
	}
	runFlow(t, client, []string{testsvc.RedisAddr()}, prefix, n, false)
}

// TestMultiProcess_order_saga_cluster runs the flow on a Redis Cluster of
// three masters, at the small size, with timeout steps in linked traces.
func TestMultiProcess_order_saga_cluster(t *testing.T) {
	t.Parallel()
	cluster := testsvc.RedisCluster(t)
	runFlow(t, cluster, cluster.Options().Addrs, "flow:", 100, true)
}

// TestMultiProcess_crash_between_save_and_publish kills a worker (SIGKILL,
// by itself) right after it saved the step that ships an order and before
// it published the ShipOrder command; the recovery worker of another
// process publishes the saved command, and it takes effect once.
func TestMultiProcess_crash_between_save_and_publish(t *testing.T) {
	t.Parallel()
	client, prefix := testsvc.RedisPrefix(t)
	ctx := context.Background()
	dir := t.TempDir()
	env := []string{
		envPrefix + "=" + prefix,
		envRedis + "=" + testsvc.RedisAddr(),
		envTimeout + "=" + flowPaymentTimeout.String(),
	}
	crashing := startFlowWorker(t, "crashing", append(env, envSpans+"="+filepath.Join(dir, "crashing.jsonl"), envCrashOn+"=ShipOrder"))

	rawPub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: client}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	ebc := flowTopics{prefix}.eventBus()
	events, err := cqrs.NewEventBusWithConfig(rawPub, ebc)
	if err != nil {
		t.Fatal(err)
	}
	const id = "order-crash"
	if err := events.Publish(ctx, &OrderPlaced{OrderID: id, Amount: 100}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-crashing.done:
		t.Logf("worker crashing ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatalf("worker did not crash\n%s", crashing.stderr)
	}

	store, err := sagas.NewRedisStore(client, sagas.RedisStoreConfig{Prefix: prefix + "saga:"})
	if err != nil {
		t.Fatal(err)
	}
	inst, found, err := store.Load(ctx, sagaType, id)
	if err != nil || !found {
		t.Fatalf("instance: found %v, %v", found, err)
	}
	if inst.Status != "shipping" || len(inst.Pending) != 1 || inst.Pending[0].Metadata["name"] != "ShipOrder" {
		t.Fatalf("after the crash: status %q, pending %+v; want shipping with the ShipOrder command saved", inst.Status, inst.Pending)
	}
	saved := inst.Pending[0].UUID

	// Another process: its recovery publishes the saved command; the
	// saga goes on to the end.
	survivor := startFlowWorker(t, "survivor", append(env, envSpans+"="+filepath.Join(dir, "survivor.jsonl")))
	eventually(t, "the saga completed", func() bool {
		inst, _, err := store.Load(ctx, sagaType, id)
		return err == nil && inst.Outcome == sagas.OutcomeCompleted
	})
	survivor.stop(t)

	uuids, counts := effectKeys(prefix, id)
	got, err := client.HGetAll(ctx, counts).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"ReserveStock": "1", "ChargePayment": "1", "ShipOrder": "1"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("command effects %v, want %v", got, want)
	}
	if ok, err := client.SIsMember(ctx, uuids, saved).Result(); err != nil || !ok {
		t.Errorf("the ShipOrder that took effect is not the saved one (%s): %v %v", saved, ok, err)
	}
	recs, err := store.History(ctx, sagaType, id)
	if err != nil {
		t.Fatal(err)
	}
	if last := recs[len(recs)-1]; last.Process != "survivor" || last.ToState != "shipped" {
		t.Errorf("last step %+v, want shipped by the survivor", last)
	}
}

// logTraceTree logs the spans of a trace as a tree, with their processes.
func logTraceTree(t *testing.T, spans []spanfile.Span, trace string) {
	t.Helper()
	children := make(map[string][]spanfile.Span)
	var roots []spanfile.Span
	for _, s := range spans {
		if s.TraceID != trace {
			continue
		}
		if s.ParentID == "" {
			roots = append(roots, s)
		} else {
			children[s.ParentID] = append(children[s.ParentID], s)
		}
	}
	var b strings.Builder
	var walk func(s spanfile.Span, depth int)
	walk = func(s spanfile.Span, depth int) {
		extra := ""
		if st := s.Attrs["saga.to_state"]; st != "" {
			extra = fmt.Sprintf(" step=%s %s->%s (%s)", s.Attrs["saga.step"], s.Attrs["saga.from_state"], st, s.Attrs["saga.outcome"])
		}
		fmt.Fprintf(&b, "%s%s [%s]%s\n", strings.Repeat("  ", depth), s.Name, s.Process, extra)
		kids := children[s.SpanID]
		slices.SortFunc(kids, func(a, b spanfile.Span) int { return a.Start.Compare(b.Start) })
		for _, c := range kids {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	t.Logf("trace %s:\n%s", trace, b.String())
}
