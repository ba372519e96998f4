package promobs

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

// DefaultMaxSagaTypes is the default number of distinct saga_type label
// values, and separately of resource_type values; see [WithMaxSagaTypes].
const DefaultMaxSagaTypes = 100

// WithMaxSagaTypes caps the number of distinct saga_type label values of the
// saga metrics ([NewSagaHook], [NewSagaCollector]), and separately the
// number of lock resource_type values. Once n values have been seen, further
// ones are counted under "other". Values below 1 are ignored. If not set,
// [DefaultMaxSagaTypes] is used.
func WithMaxSagaTypes(n int) SagaOption {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxSagaTypes = n
		}
	})
}

func (c *config) sagaTypes() int {
	if c.maxSagaTypes > 0 {
		return c.maxSagaTypes
	}
	return DefaultMaxSagaTypes
}

// The hook operations of the saga runtime and their attributes, as the
// sagas package emits them. promobs reads them by name so that it never
// imports sagas (nor sagas promobs).
const (
	sagaRunPrefix       = "saga.run."
	lockAcquirePrefix   = "redis.lock.acquire."
	opVersionConflict   = "saga.version_conflict"
	opTimeoutDropped    = "saga.timeout.dropped"
	opRecoveryPending   = "saga.recovery.pending"
	opRecoveryTimeouts  = "saga.recovery.timeouts"
	attrSagaType        = "saga.type"
	attrSagaStep        = "saga.step"
	attrSagaOutcome     = "saga.outcome"
	attrSagaTrigger     = "saga.trigger"
	attrResourceType    = "resource_type"
	sagaOutcomeRunning  = "running"
	stepOutcomeNotSaved = "save_failed"
	lockAcquired        = "acquired"
	lockFailed          = "failed"
	recoveryPending     = "pending"
	recoveryTimeout     = "timeout"
)

// SagaOperations returns the operation patterns that the hook of
// [NewSagaHook] measures, for hooks.WithOperations. The hook passes any
// other operation through unchanged, so registering it more widely only
// costs time.
func SagaOperations() []string {
	return []string{
		sagaRunPrefix + "*",
		lockAcquirePrefix + "*",
		opVersionConflict,
		opTimeoutDropped,
		opRecoveryPending,
		opRecoveryTimeouts,
	}
}

// NewSagaHook returns a [hooks.Hook] that turns the hook operations of the
// saga runtime (package sagas) into the saga metrics listed in the package
// documentation, and registers their collector with reg. Register the hook
// on the registry the saga manager uses:
//
//	registry.Register(hook, hooks.WithOperations(promobs.SagaOperations()...), hooks.WithPriority(10))
//
// A priority above the span hook's (InstallFrameworkHooks uses 0 unless
// told otherwise) puts it inside the operation's span, so that its
// histograms carry the span's trace ID as exemplar.
//
// Its options are [WithNamespace], [WithConstLabels], [WithBuckets] (step
// duration and lock wait), [WithExemplarInterval], [WithMaxSagaTypes] and
// [WithLogger]. If reg already holds the saga metrics, from an earlier
// NewSagaHook with the same namespace and const labels, the hook counts
// into them, and the buckets and caps of the first registration stay in
// effect.
//
// The hook returns the operation's error unchanged and never fails an
// operation: a panic in its own code is recovered, logged and counted
// (watermillobs.RecoveredPanics), and the operation goes on unmeasured. An
// operation that panics itself is not measured. NewSagaHook returns
// [ErrNilRegisterer] for a nil reg, and an error if the options are invalid
// or registration fails.
func NewSagaHook(reg prometheus.Registerer, opts ...SagaOption) (hooks.Hook, error) {
	if reg == nil {
		return nil, ErrNilRegisterer
	}
	cfg := newSagaConfig(opts)
	c, err := newSagaMetrics(&cfg)
	if err != nil {
		return nil, err
	}
	c, err = registerShared(reg, c, "saga metrics")
	if err != nil {
		return nil, err
	}
	return &sagaHook{m: c, now: cfg.now, logger: cfg.log(), observeHook: cfg.observeHook}, nil
}

// sagaMetrics holds the vectors of the saga hook with their label caps and
// series caches, registered as one collector so that a second NewSagaHook
// on the same registry finds it whole.
type sagaMetrics struct {
	started   *prometheus.CounterVec
	finished  *prometheus.CounterVec
	step      *prometheus.HistogramVec
	lockWait  *prometheus.HistogramVec
	conflicts *prometheus.CounterVec
	recovery  *prometheus.CounterVec
	dropped   *prometheus.CounterVec

	types, resources *labelSet

	perType  *cache[string, sagaTypeSeries]
	steps    *cache[stepKey, histogram]
	finishes *cache[finishKey, counter]
	locks    *cache[lockKey, histogram]
	recovers *cache[recoveryKey, counter]

	exemplars exemplarRule
	buckets   []float64
}

// Series caches, keyed by capped label values.
type (
	// sagaTypeSeries are the counters of one saga type, created together
	// when the type is first seen so that they all start at 0 and rate()
	// and increase() see their first increment.
	sagaTypeSeries struct{ started, conflicts, dropped counter }
	stepKey        struct{ typ, trigger, outcome string }
	finishKey      struct{ typ, outcome string }
	lockKey        struct{ resource, outcome string }
	recoveryKey    struct{ typ, action, outcome string }
)

func newSagaMetrics(cfg *config) (*sagaMetrics, error) {
	ns, cl := cfg.namespace, cfg.constLabels
	if err := checkNamespace(ns); err != nil {
		return nil, err
	}
	if err := checkHistogram(cfg.buckets, cl); err != nil {
		return nil, fmt.Errorf("cannot use buckets: %w", err)
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help, ConstLabels: cl}, labels)
	}
	histogramVec := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, ConstLabels: cl, Buckets: cfg.buckets}, labels)
	}
	return &sagaMetrics{
		started: counterVec("saga_instances_started_total",
			"Saga instances started: first steps saved, by saga type.", "saga_type"),
		finished: counterVec("saga_instances_finished_total",
			"Saga instances ended by a saved step, by saga type and outcome (completed, compensated, failed, timed_out).", "saga_type", "outcome"),
		step: histogramVec("saga_step_duration_seconds",
			"Duration of saga steps (saga.run operations), by saga type, trigger (event, timeout) and outcome (running, a final outcome, error for a recorded failure, save_failed when nothing was saved).", "saga_type", "trigger", "outcome"),
		lockWait: histogramVec("saga_lock_wait_seconds",
			"Time spent acquiring the instance lock (redis.lock.acquire operations), by resource type and outcome (acquired, failed).", "resource_type", "outcome"),
		conflicts: counterVec("saga_version_conflicts_total",
			"Saga steps whose save found a newer stored version and were retried, by saga type.", "saga_type"),
		recovery: counterVec("saga_recovery_actions_total",
			"Actions of the saga recovery worker, by saga type, action (pending: pending commands published; timeout: due timeout delivered) and outcome.", "saga_type", "action", "outcome"),
		dropped: counterVec("saga_timeouts_dropped_total",
			"Saga timeouts dropped without firing, by saga type.", "saga_type"),
		types:     newLabelSet(cfg.sagaTypes()),
		resources: newLabelSet(cfg.sagaTypes()),
		perType:   newCache[string, sagaTypeSeries](),
		steps:     newCache[stepKey, histogram](),
		finishes:  newCache[finishKey, counter](),
		locks:     newCache[lockKey, histogram](),
		recovers:  newCache[recoveryKey, counter](),
		exemplars: exemplarRuleOf(cfg.exemplarInterval),
		buckets:   cfg.buckets,
	}, nil
}

func (c *sagaMetrics) collectors() [7]prometheus.Collector {
	return [...]prometheus.Collector{c.started, c.finished, c.step, c.lockWait, c.conflicts, c.recovery, c.dropped}
}

// Describe implements prometheus.Collector.
func (c *sagaMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.collectors() {
		m.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (c *sagaMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.collectors() {
		m.Collect(ch)
	}
}

// typeLabel is the saga_type label of typ: bounded and capped.
func (c *sagaMetrics) typeLabel(typ string) string {
	return c.types.value(labelValue(typ))
}

// typeSeries returns the counters of the saga_type label typ, a value
// returned by typeLabel.
func (c *sagaMetrics) typeSeries(typ string) *sagaTypeSeries {
	if s := c.perType.load(typ); s != nil {
		return s
	}
	return c.perType.store(typ, &sagaTypeSeries{
		started:   c.exemplars.counter(c.started.WithLabelValues(typ)),
		conflicts: c.exemplars.counter(c.conflicts.WithLabelValues(typ)),
		dropped:   c.exemplars.counter(c.dropped.WithLabelValues(typ)),
	})
}

func (c *sagaMetrics) stepSeries(k stepKey) *histogram {
	if s := c.steps.load(k); s != nil {
		return s
	}
	h := c.exemplars.histogram(c.step.WithLabelValues(k.typ, k.trigger, k.outcome), c.buckets)
	return c.steps.store(k, &h)
}

func (c *sagaMetrics) finishSeries(k finishKey) *counter {
	if s := c.finishes.load(k); s != nil {
		return s
	}
	ctr := c.exemplars.counter(c.finished.WithLabelValues(k.typ, k.outcome))
	return c.finishes.store(k, &ctr)
}

func (c *sagaMetrics) lockSeries(k lockKey) *histogram {
	if s := c.locks.load(k); s != nil {
		return s
	}
	h := c.exemplars.histogram(c.lockWait.WithLabelValues(k.resource, k.outcome), c.buckets)
	return c.locks.store(k, &h)
}

func (c *sagaMetrics) recoverySeries(k recoveryKey) *counter {
	if s := c.recovers.load(k); s != nil {
		return s
	}
	ctr := c.exemplars.counter(c.recovery.WithLabelValues(k.typ, k.action, k.outcome))
	return c.recovers.store(k, &ctr)
}

// sagaHook is the hook of NewSagaHook.
type sagaHook struct {
	m           *sagaMetrics
	now         func() time.Time
	logger      *slog.Logger
	observeHook func()
	// panics counts recovered panics, to thin out their log records.
	panics atomic.Uint64
}

// Around implements hooks.Hook.
func (h *sagaHook) Around(ctx context.Context, op hooks.Operation, next hooks.Next) error {
	switch name := op.Name; {
	case strings.HasPrefix(name, sagaRunPrefix):
		start := h.now()
		err := next(ctx)
		h.observeStep(ctx, op, start, h.now(), err)
		return err
	case strings.HasPrefix(name, lockAcquirePrefix):
		start := h.now()
		err := next(ctx)
		h.observeLock(ctx, op, start, h.now(), err)
		return err
	case name == opVersionConflict, name == opTimeoutDropped:
		err := next(ctx)
		h.observeNotice(ctx, op)
		return err
	case name == opRecoveryPending, name == opRecoveryTimeouts:
		err := next(ctx)
		h.observeRecovery(ctx, op, err)
		return err
	}
	return next(ctx)
}

// observeStep observes a step that ran from start to end; end is also the
// time of its exemplar.
func (h *sagaHook) observeStep(ctx context.Context, op hooks.Operation, start, end time.Time, err error) {
	defer h.recoverPanic(ctx, op)
	if h.observeHook != nil {
		h.observeHook()
	}
	raw := stringAttr(op, attrSagaType)
	if raw == "" {
		raw = op.Name[len(sagaRunPrefix):]
	}
	typ := h.m.typeLabel(raw)
	ts := h.m.typeSeries(typ)
	outcome := stepOutcomeNotSaved
	if err == nil {
		outcome = sagaOutcomeLabel(stringAttr(op, attrSagaOutcome))
	}
	k := stepKey{typ: typ, trigger: triggerLabel(stringAttr(op, attrSagaTrigger)), outcome: outcome}
	ex := exemplarOf(ctx, end)
	h.m.stepSeries(k).observe(end.Sub(start).Seconds(), &ex)
	if err != nil {
		return
	}
	if step, ok := intAttr(op, attrSagaStep); ok && step == 1 {
		ts.started.add(1, &ex)
	}
	if finalOutcome(outcome) {
		h.m.finishSeries(finishKey{typ: k.typ, outcome: outcome}).add(1, &ex)
	}
}

func (h *sagaHook) observeLock(ctx context.Context, op hooks.Operation, start, end time.Time, err error) {
	defer h.recoverPanic(ctx, op)
	if h.observeHook != nil {
		h.observeHook()
	}
	resource := stringAttr(op, attrResourceType)
	if resource == "" {
		resource = op.Name[len(lockAcquirePrefix):]
	}
	outcome := lockAcquired
	if err != nil {
		outcome = lockFailed
	}
	k := lockKey{resource: h.m.resources.value(labelValue(resource)), outcome: outcome}
	ex := exemplarOf(ctx, end)
	h.m.lockSeries(k).observe(end.Sub(start).Seconds(), &ex)
}

// observeNotice counts the notifications saga.version_conflict and
// saga.timeout.dropped.
func (h *sagaHook) observeNotice(ctx context.Context, op hooks.Operation) {
	defer h.recoverPanic(ctx, op)
	if h.observeHook != nil {
		h.observeHook()
	}
	ts := h.m.typeSeries(h.m.typeLabel(stringAttr(op, attrSagaType)))
	if op.Name == opVersionConflict {
		ts.conflicts.add(1, nil)
		return
	}
	ts.dropped.add(1, nil)
}

func (h *sagaHook) observeRecovery(ctx context.Context, op hooks.Operation, err error) {
	defer h.recoverPanic(ctx, op)
	if h.observeHook != nil {
		h.observeHook()
	}
	action := recoveryPending
	if op.Name == opRecoveryTimeouts {
		action = recoveryTimeout
	}
	k := recoveryKey{typ: h.m.typeLabel(stringAttr(op, attrSagaType)), action: action, outcome: outcome(err != nil)}
	ex := exemplarOf(ctx, h.now())
	h.m.recoverySeries(k).add(1, &ex)
}

// recoverPanic stops a panic of the hook's own observation code, so that a
// bug here never fails a saga step. It must be deferred directly. Log
// records are thinned out to the 1st, 2nd, 4th, 8th, ... panic.
func (h *sagaHook) recoverPanic(ctx context.Context, op hooks.Operation) {
	v := recover()
	if v == nil {
		return
	}
	panics.Recovered()
	n := h.panics.Add(1)
	if n&(n-1) != 0 {
		return
	}
	defer func() { _ = recover() }() // a broken log handler must not fail the step either
	h.logger.ErrorContext(ctx, "promobs: recovered panic while observing a saga operation; it ran without metrics",
		slog.String("operation", bound.String(op.Name, bound.Attribute)),
		slog.String("panic", bound.String(fmt.Sprint(v), bound.Error)),
		slog.Uint64("panics", n),
		slog.String("stack", bound.String(string(debug.Stack()), 4*bound.Error)),
	)
}

// sagaOutcomeLabel bounds the saga.outcome attribute to its known values.
func sagaOutcomeLabel(v string) string {
	switch v {
	case sagaOutcomeRunning, contract.OutcomeError:
		return v
	case "":
		return unknownValue
	}
	if finalOutcome(v) {
		return v
	}
	return otherValue
}

// finalOutcome reports whether a step with outcome v ended its instance.
func finalOutcome(v string) bool {
	switch v {
	case "completed", "compensated", "failed", "timed_out":
		return true
	}
	return false
}

// triggerLabel bounds the saga.trigger attribute to its known values.
func triggerLabel(v string) string {
	switch v {
	case "event", "timeout":
		return v
	case "":
		return unknownValue
	}
	return otherValue
}
