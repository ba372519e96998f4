package promobs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// errConflict stands for the sagas package's version conflict: promobs
// must not depend on its identity.
var errConflict = errors.New("sagas: version conflict")

// newSagaHook registers the saga hook on a fresh hooks registry and a fresh
// pedantic Prometheus registry.
func newSagaHook(t testing.TB, opts ...promobs.SagaOption) (*hooks.Registry, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	h, err := promobs.NewSagaHook(reg, opts...)
	if err != nil {
		t.Fatalf("NewSagaHook: %v", err)
	}
	hreg := hooks.NewRegistry()
	if _, err := hreg.Register(h, hooks.WithOperations(promobs.SagaOperations()...), hooks.WithPriority(10)); err != nil {
		t.Fatalf("Register: %v", err)
	}
	return hreg, reg
}

// sagaStep describes one saga.run operation as the saga manager runs it.
type sagaStep struct {
	typ, id          string
	step             int64
	from, to         string
	outcome, trigger string
	eventType        string
	conflicts        int64
	lockWait         time.Duration
	saveErr          error // what the save (the operation's fn) returns
}

func (s sagaStep) attrs() []slog.Attr {
	return []slog.Attr{
		slog.String("saga.type", s.typ),
		slog.String("saga.id", s.id),
		slog.Int64("saga.step", s.step),
		slog.Int64("saga.state_version", s.step),
		slog.String("saga.from_state", s.from),
		slog.String("saga.to_state", s.to),
		slog.String("saga.outcome", s.outcome),
		slog.String("saga.trigger", s.trigger),
		slog.String("event.type", s.eventType),
		slog.Int64("saga.version_conflicts", s.conflicts),
		slog.Duration("saga.lock_wait", s.lockWait),
		slog.String("correlation_id", "corr-"+s.id),
	}
}

// run runs the step through contract.RunHooks, as the saga manager does,
// and returns what the caller of the operation sees.
func (s sagaStep) run(ctx context.Context, reg *hooks.Registry) error {
	return contract.RunHooks(ctx, reg, "saga.run."+s.typ, s.attrs(), func(context.Context) error {
		return s.saveErr
	}, nil)
}

// acquireLock runs a redis.lock.acquire.saga operation whose fn returns err.
func acquireLock(ctx context.Context, reg *hooks.Registry, id string, err error) error {
	return contract.RunHooks(ctx, reg, "redis.lock.acquire.saga", []slog.Attr{
		slog.String("resource", "saga:OrderSaga:"+id),
		slog.String("resource_type", "saga"),
		slog.Duration("timeout", 5*time.Second),
		slog.Duration("ttl", 30*time.Second),
	}, func(context.Context) error { return err }, nil)
}

func releaseLock(ctx context.Context, reg *hooks.Registry, id string) error {
	return contract.RunHooks(ctx, reg, "redis.lock.release.saga", []slog.Attr{
		slog.String("resource", "saga:OrderSaga:"+id),
		slog.String("resource_type", "saga"),
	}, func(context.Context) error { return nil }, nil)
}

func flush(t testing.TB, reg *hooks.Registry) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := reg.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// One saga instance through its life: started by an event, a step saved,
// a save lost to a version conflict and retried, ended by a timeout; a
// second instance whose first step recorded a poison error and whose
// compensating end was saved at the second try. Saves that failed count
// as steps (outcome save_failed) and nothing else.
func TestSagaHook_lifecycle(t *testing.T) {
	hreg, reg := newSagaHook(t, promobs.WithClock(stepClock(time.Unix(1_700_000_000, 0), 250*time.Millisecond)))
	ctx := context.Background()
	steps := []sagaStep{
		{typ: "OrderSaga", id: "o-1", step: 1, from: "", to: "awaiting_payment", outcome: "running", trigger: "event", eventType: "OrderPlaced"},
		{typ: "OrderSaga", id: "o-1", step: 2, from: "awaiting_payment", to: "shipping", outcome: "running", trigger: "event", eventType: "PaymentReceived", saveErr: errConflict},
		{typ: "OrderSaga", id: "o-1", step: 2, from: "awaiting_payment", to: "shipping", outcome: "running", trigger: "event", eventType: "PaymentReceived", conflicts: 1},
		{typ: "OrderSaga", id: "o-1", step: 3, from: "shipping", to: "timed_out", outcome: "timed_out", trigger: "timeout"},
		{typ: "OrderSaga", id: "o-2", step: 1, from: "", to: "awaiting_payment", outcome: "error", trigger: "event", eventType: "OrderPlaced"},
		{typ: "OrderSaga", id: "o-2", step: 2, from: "awaiting_payment", to: "compensated", outcome: "compensated", trigger: "event", eventType: "PaymentFailed", saveErr: errConflict},
		{typ: "OrderSaga", id: "o-2", step: 2, from: "awaiting_payment", to: "compensated", outcome: "compensated", trigger: "event", eventType: "PaymentFailed", conflicts: 1},
	}
	for _, s := range steps {
		err := s.run(ctx, hreg)
		if !errors.Is(err, s.saveErr) || (s.saveErr == nil) != (err == nil) {
			t.Fatalf("step %d of %s returned %v, want %v unchanged", s.step, s.id, err, s.saveErr)
		}
		if s.saveErr != nil {
			hreg.Notify(ctx, "saga.version_conflict", []slog.Attr{slog.String("saga.type", s.typ), slog.String("saga.id", s.id)})
		}
	}
	hreg.Notify(ctx, "saga.timeout.dropped", []slog.Attr{
		slog.String("saga.type", "OrderSaga"), slog.String("saga.id", "o-1"), slog.String("saga.timeout", "payment"),
	})
	flush(t, hreg)

	want := `
# HELP saga_instances_finished_total Saga instances ended by a saved step, by saga type and outcome (completed, compensated, failed, timed_out).
# TYPE saga_instances_finished_total counter
saga_instances_finished_total{outcome="compensated",saga_type="OrderSaga"} 1
saga_instances_finished_total{outcome="timed_out",saga_type="OrderSaga"} 1
# HELP saga_instances_started_total Saga instances started: first steps saved, by saga type.
# TYPE saga_instances_started_total counter
saga_instances_started_total{saga_type="OrderSaga"} 2
# HELP saga_timeouts_dropped_total Saga timeouts dropped without firing, by saga type.
# TYPE saga_timeouts_dropped_total counter
saga_timeouts_dropped_total{saga_type="OrderSaga"} 1
# HELP saga_version_conflicts_total Saga steps whose save found a newer stored version and were retried, by saga type.
# TYPE saga_version_conflicts_total counter
saga_version_conflicts_total{saga_type="OrderSaga"} 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
		"saga_instances_started_total", "saga_instances_finished_total",
		"saga_version_conflicts_total", "saga_timeouts_dropped_total"); err != nil {
		t.Error(err)
	}

	for _, c := range []struct {
		trigger, outcome string
		n                float64
	}{
		{"event", "running", 2},
		{"event", "save_failed", 2},
		{"event", "error", 1},
		{"event", "compensated", 1},
		{"timeout", "timed_out", 1},
	} {
		got := value(t, reg, "saga_step_duration_seconds", "saga_type", "OrderSaga", "trigger", c.trigger, "outcome", c.outcome)
		if got != c.n {
			t.Errorf("saga_step_duration_seconds{trigger=%q,outcome=%q} count = %v, want %v", c.trigger, c.outcome, got, c.n)
		}
	}
	// Each step took exactly one tick of the clock.
	s := find(t, reg, "saga_step_duration_seconds", "trigger", "timeout")
	if got := s.GetHistogram().GetSampleSum(); got != 0.25 {
		t.Errorf("timeout step duration sum = %v, want 0.25", got)
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", problems, err)
	}
}

func TestSagaHook_lockWait(t *testing.T) {
	hreg, reg := newSagaHook(t,
		promobs.WithClock(stepClock(time.Unix(1_700_000_000, 0), 20*time.Millisecond)),
		promobs.WithBuckets([]float64{0.01, 0.1}))
	ctx := context.Background()
	if err := acquireLock(ctx, hreg, "o-1", nil); err != nil {
		t.Fatal(err)
	}
	if err := releaseLock(ctx, hreg, "o-1"); err != nil {
		t.Fatal(err)
	}
	errBusy := errors.New("lock held")
	if err := acquireLock(ctx, hreg, "o-1", errBusy); !errors.Is(err, errBusy) {
		t.Fatalf("acquire returned %v, want the lock's error unchanged", err)
	}

	want := `
# HELP saga_lock_wait_seconds Time spent acquiring the instance lock (redis.lock.acquire operations), by resource type and outcome (acquired, failed).
# TYPE saga_lock_wait_seconds histogram
saga_lock_wait_seconds_bucket{outcome="acquired",resource_type="saga",le="0.01"} 0
saga_lock_wait_seconds_bucket{outcome="acquired",resource_type="saga",le="0.1"} 1
saga_lock_wait_seconds_bucket{outcome="acquired",resource_type="saga",le="+Inf"} 1
saga_lock_wait_seconds_sum{outcome="acquired",resource_type="saga"} 0.02
saga_lock_wait_seconds_count{outcome="acquired",resource_type="saga"} 1
saga_lock_wait_seconds_bucket{outcome="failed",resource_type="saga",le="0.01"} 0
saga_lock_wait_seconds_bucket{outcome="failed",resource_type="saga",le="0.1"} 1
saga_lock_wait_seconds_bucket{outcome="failed",resource_type="saga",le="+Inf"} 1
saga_lock_wait_seconds_sum{outcome="failed",resource_type="saga"} 0.02
saga_lock_wait_seconds_count{outcome="failed",resource_type="saga"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "saga_lock_wait_seconds"); err != nil {
		t.Error(err)
	}
}

func TestSagaHook_recovery(t *testing.T) {
	hreg, reg := newSagaHook(t)
	ctx := context.Background()
	errPublish := errors.New("broker down")
	err := contract.RunHooks(ctx, hreg, "saga.recovery.run_once", nil, func(ctx context.Context) error {
		for i, perr := range []error{nil, nil, errPublish} {
			err := contract.RunHooks(ctx, hreg, "saga.recovery.pending", []slog.Attr{
				slog.String("saga.type", "OrderSaga"), slog.String("saga.id", fmt.Sprintf("o-%d", i)),
				slog.Int("messaging.batch.message_count", 2),
			}, func(context.Context) error { return perr }, nil)
			if !errors.Is(err, perr) || (perr == nil) != (err == nil) {
				t.Errorf("pending returned %v, want %v", err, perr)
			}
		}
		return contract.RunHooks(ctx, hreg, "saga.recovery.timeouts", []slog.Attr{
			slog.String("saga.type", "OrderSaga"), slog.String("saga.id", "o-9"), slog.String("saga.timeout", "payment"),
		}, func(context.Context) error { return nil }, nil)
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := `
# HELP saga_recovery_actions_total Actions of the saga recovery worker, by saga type, action (pending: pending commands published; timeout: due timeout delivered) and outcome.
# TYPE saga_recovery_actions_total counter
saga_recovery_actions_total{action="pending",outcome="error",saga_type="OrderSaga"} 1
saga_recovery_actions_total{action="pending",outcome="success",saga_type="OrderSaga"} 2
saga_recovery_actions_total{action="timeout",outcome="success",saga_type="OrderSaga"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "saga_recovery_actions_total"); err != nil {
		t.Error(err)
	}
}

// Operations the hook does not measure pass through, and nothing is
// recorded for them.
func TestSagaHook_otherOperations(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	h, err := promobs.NewSagaHook(reg)
	if err != nil {
		t.Fatal(err)
	}
	hreg := hooks.NewRegistry()
	hreg.MustRegister(h) // every operation
	ctx := context.Background()
	errHandler := errors.New("handler failed")
	err = contract.RunHooks(ctx, hreg, "saga.handle_event.OrderPlaced", []slog.Attr{
		slog.String("event.type", "OrderPlaced"), slog.String("event.id", "e-1"),
		slog.String("saga.type", "OrderSaga"), slog.String("correlation_id", "c-1"),
	}, func(context.Context) error { return errHandler }, nil)
	if !errors.Is(err, errHandler) {
		t.Fatalf("handle_event returned %v, want %v", err, errHandler)
	}
	if err := releaseLock(ctx, hreg, "o-1"); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("%d series (err %v) after unmeasured operations, want 0", n, err)
	}
}

// Label values are bounded: saga types past the cap fold into "other",
// unknown outcomes and triggers become "other", missing ones "unknown",
// and an oversized type name is cut.
func TestSagaHook_labelCap(t *testing.T) {
	hreg, reg := newSagaHook(t, promobs.WithMaxSagaTypes(2))
	ctx := context.Background()
	long := strings.Repeat("x", 500)
	cut := strings.Repeat("x", 125) + "…" // 128 bytes
	for _, typ := range []string{"A", long, "C", "D", "E"} {
		if err := (sagaStep{typ: typ, id: "1", step: 1, outcome: "running", trigger: "event"}).run(ctx, hreg); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []sagaStep{
		{typ: "A", id: "2", step: 1, outcome: "exploded", trigger: "cron"},
		{typ: "A", id: "3", step: 1},
	} {
		if err := s.run(ctx, hreg); err != nil {
			t.Fatal(err)
		}
	}
	for typ := range 20 {
		hreg.Notify(ctx, "saga.version_conflict", []slog.Attr{slog.String("saga.type", fmt.Sprintf("T%d", typ))})
	}
	flush(t, hreg)

	want := `
# HELP saga_instances_started_total Saga instances started: first steps saved, by saga type.
# TYPE saga_instances_started_total counter
saga_instances_started_total{saga_type="A"} 3
saga_instances_started_total{saga_type="other"} 3
saga_instances_started_total{saga_type="` + cut + `"} 1
# HELP saga_version_conflicts_total Saga steps whose save found a newer stored version and were retried, by saga type.
# TYPE saga_version_conflicts_total counter
saga_version_conflicts_total{saga_type="A"} 0
saga_version_conflicts_total{saga_type="other"} 20
saga_version_conflicts_total{saga_type="` + cut + `"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "saga_instances_started_total", "saga_version_conflicts_total"); err != nil {
		t.Error(err)
	}
	for _, c := range [][2]string{{"other", "other"}, {"unknown", "unknown"}} {
		if v := value(t, reg, "saga_step_duration_seconds", "saga_type", "A", "trigger", c[0], "outcome", c[1]); v != 1 {
			t.Errorf("steps with trigger=%q outcome=%q = %v, want 1", c[0], c[1], v)
		}
	}
	// 2 types admitted plus "other": the series cannot grow with the types.
	if n, err := testutil.GatherAndCount(reg, "saga_instances_started_total"); err != nil || n != 3 {
		t.Errorf("%d started series (err %v), want 3", n, err)
	}
}

// With the span hook outside the metrics hook, as InstallFrameworkHooks and
// the documented priority set them up, a sampled operation's histograms
// carry its trace ID.
func TestSagaHook_exemplars(t *testing.T) {
	hreg, reg := newSagaHook(t)
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	hreg.MustRegister(watermillobs.NewSpanHook(watermillobs.WithTracerProvider(tp)),
		hooks.WithOperations("saga.run.*", "redis.lock.acquire.*"))

	ctx := context.Background()
	if err := acquireLock(ctx, hreg, "o-1", nil); err != nil {
		t.Fatal(err)
	}
	if err := (sagaStep{typ: "OrderSaga", id: "o-1", step: 1, outcome: "running", trigger: "event"}).run(ctx, hreg); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("%d spans, want 2", len(spans))
	}
	for i, name := range []string{"saga_lock_wait_seconds", "saga_step_duration_seconds"} {
		want := spans[i].SpanContext().TraceID().String()
		got := ""
		for _, b := range find(t, reg, name).GetHistogram().GetBucket() {
			if e := b.GetExemplar(); e != nil {
				got = exemplarTraceID(t, e.GetLabel())
			}
		}
		if got != want {
			t.Errorf("%s exemplar trace_id = %q, want %q (span %s)", name, got, want, spans[i].Name())
		}
	}
	if e := find(t, reg, "saga_instances_started_total").GetCounter().GetExemplar(); exemplarTraceID(t, e.GetLabel()) != spans[1].SpanContext().TraceID().String() {
		t.Errorf("saga_instances_started_total exemplar = %v, want the step's trace ID", e)
	}
}

// A panic in the hook's own code does not change the operation: it runs
// once, its result is returned, and the panic is counted and logged.
func TestSagaHook_panicRecovered(t *testing.T) {
	var logs bytes.Buffer
	hreg, reg := newSagaHook(t,
		promobs.WithObserveHook(func() { panic("observer bug") }),
		promobs.WithLogger(slog.New(slog.NewJSONHandler(&logs, nil))))
	before := watermillobs.RecoveredPanics()
	runs := 0
	err := contract.RunHooks(context.Background(), hreg, "saga.run.OrderSaga",
		sagaStep{typ: "OrderSaga", id: "o-1", step: 1, outcome: "running", trigger: "event"}.attrs(),
		func(context.Context) error { runs++; return errConflict }, nil)
	if runs != 1 || !errors.Is(err, errConflict) {
		t.Fatalf("runs=%d err=%v, want one run returning the save's error", runs, err)
	}
	if after := watermillobs.RecoveredPanics(); after <= before {
		t.Errorf("RecoveredPanics %d -> %d, want it to grow", before, after)
	}
	if !strings.Contains(logs.String(), "observer bug") || !strings.Contains(logs.String(), "saga.run.OrderSaga") {
		t.Errorf("log = %q, want the panic and the operation", logs.String())
	}
	if n, _ := testutil.GatherAndCount(reg, "saga_step_duration_seconds"); n != 0 {
		t.Errorf("%d step series after a failed observation, want 0", n)
	}
}

// Two hooks on one registry (two managers in a process) count into the
// same series; a nil registry and a bad namespace are errors.
func TestNewSagaHook_registration(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	hreg := hooks.NewRegistry()
	for range 2 {
		h, err := promobs.NewSagaHook(reg, promobs.WithNamespace("shop"))
		if err != nil {
			t.Fatalf("NewSagaHook: %v", err)
		}
		hreg.MustRegister(h, hooks.WithOperations(promobs.SagaOperations()...))
	}
	if err := (sagaStep{typ: "OrderSaga", id: "o-1", step: 1, outcome: "running", trigger: "event"}).run(context.Background(), hreg); err != nil {
		t.Fatal(err)
	}
	if v := value(t, reg, "shop_saga_instances_started_total"); v != 2 {
		t.Errorf("shop_saga_instances_started_total = %v, want 2 (each hook counts once into shared series)", v)
	}
	// With New on the same registry: no name clashes.
	if _, err := promobs.New(reg, promobs.WithNamespace("shop")); err != nil {
		t.Errorf("New after NewSagaHook: %v", err)
	}

	if _, err := promobs.NewSagaHook(nil); !errors.Is(err, promobs.ErrNilRegisterer) {
		t.Errorf("nil registerer: err = %v, want ErrNilRegisterer", err)
	}
	if _, err := promobs.NewSagaHook(prometheus.NewRegistry(), promobs.WithNamespace("9-bad")); err == nil {
		t.Error("bad namespace: no error")
	}
	if _, err := promobs.NewSagaHook(prometheus.NewRegistry(), promobs.WithBuckets([]float64{1, 0.5})); err == nil {
		t.Error("decreasing buckets: no error")
	}
}

func TestSagaHook_concurrent(t *testing.T) {
	hreg, reg := newSagaHook(t, promobs.WithMaxSagaTypes(3))
	const goroutines, each = 8, 100
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				s := sagaStep{typ: fmt.Sprintf("S%d", (g+i)%6), id: "x", step: 1, outcome: "completed", trigger: "event"}
				_ = s.run(context.Background(), hreg)
				_ = acquireLock(context.Background(), hreg, "x", nil)
			}
		})
	}
	wg.Wait()
	total := 0.0
	for _, typ := range []string{"S0", "S1", "S2", "S3", "S4", "S5", "other"} {
		total += value(t, reg, "saga_instances_finished_total", "saga_type", typ)
	}
	if total != goroutines*each {
		t.Errorf("finished total = %v, want %d", total, goroutines*each)
	}
	if v := value(t, reg, "saga_lock_wait_seconds", "outcome", "acquired"); v != goroutines*each {
		t.Errorf("lock waits = %v, want %d", v, goroutines*each)
	}
}

// BenchmarkSagaHook measures a saga step operation with and without the
// metrics hook; the step itself (Redis round trips) costs far more.
func BenchmarkSagaHook(b *testing.B) {
	step := sagaStep{typ: "OrderSaga", id: "o-1", step: 2, outcome: "running", trigger: "event", eventType: "PaymentReceived"}
	attrs := step.attrs()
	save := func(context.Context) error { return nil }
	for _, measured := range []bool{false, true} {
		b.Run(fmt.Sprintf("measured=%v", measured), func(b *testing.B) {
			hreg := hooks.NewRegistry()
			if measured {
				hreg, _ = newSagaHook(b)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := contract.RunHooks(ctx, hreg, "saga.run.OrderSaga", attrs, save, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
