package promobs

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

// The hook operations of the projection runtime and their attributes, as
// the projections package emits them. promobs reads them by name so that
// it never imports projections (nor projections promobs).
const (
	projProcessPrefix      = "projection.process."
	projPartitionPrefix    = "projection.partition."
	projSinkPrefix         = "projection_sink.write."
	projCheckpointPrefix   = "checkpoint.save."
	projRedisCheckpoint    = "redis.checkpoint.save."
	projGapPrefix          = "projection.gap."
	projDeadLetterPrefix   = "projection.dead_letter."
	projStoppedPrefix      = "projection.stopped."
	attrProjectionName     = "projection_name"
	attrPartitionIndex     = "partition_index"
	attrProjBatchSize      = "batch.size"
	attrGapSkipped         = "gap.skipped"
	attrProjectionReason   = "reason"
	projectionReasonGap    = "gap"
	projectionReasonPoison = "poison"
)

// ProjectionOperations returns the operation patterns that the hook of
// [NewProjectionHook] measures, for hooks.WithOperations. The hook passes
// any other operation through unchanged.
func ProjectionOperations() []string {
	return []string{
		projProcessPrefix + "*",
		projPartitionPrefix + "*",
		projSinkPrefix + "*",
		projCheckpointPrefix + "*",
		projRedisCheckpoint + "*",
		projGapPrefix + "*",
		projDeadLetterPrefix + "*",
		projStoppedPrefix + "*",
	}
}

// NewProjectionHook returns a [hooks.Hook] that turns the hook operations
// of the projection runtime (package projections) into the projection
// counters and histograms listed in the package documentation, and
// registers their collector with reg. Register the hook on the registry
// the projection workers use:
//
//	registry.Register(hook, hooks.WithOperations(promobs.ProjectionOperations()...), hooks.WithPriority(10))
//
// A priority above the span hook's puts it inside the operation's span, so
// that its histograms carry the span's trace ID as exemplar. The lag gauges
// come from [NewProjectionCollector].
//
// Its options are [WithNamespace], [WithConstLabels], [WithBuckets]
// (process, batch and sink write durations), [WithExemplarInterval],
// [WithMaxProjections], [WithMaxPartitions] and [WithLogger]. If reg
// already holds the projection metrics, from an earlier NewProjectionHook
// with the same namespace and const labels, the hook counts into them.
//
// The hook returns the operation's error unchanged and never fails an
// operation: a panic in its own code is recovered, logged and counted, and
// the operation goes on unmeasured. NewProjectionHook returns
// [ErrNilRegisterer] for a nil reg, and an error if the options are
// invalid or registration fails.
func NewProjectionHook(reg prometheus.Registerer, opts ...ProjectionOption) (hooks.Hook, error) {
	if reg == nil {
		return nil, ErrNilRegisterer
	}
	cfg := newProjectionConfig(opts)
	m, err := newProjectionMetrics(&cfg)
	if err != nil {
		return nil, err
	}
	m, err = registerShared(reg, m, "projection metrics")
	if err != nil {
		return nil, err
	}
	return &projectionHook{m: m, now: cfg.now, logger: cfg.log(), observeHook: cfg.observeHook}, nil
}

// projectionMetrics holds the vectors of the projection hook, registered
// as one collector.
type projectionMetrics struct {
	processed   *prometheus.CounterVec
	process     *prometheus.HistogramVec
	batch       *prometheus.HistogramVec
	sink        *prometheus.HistogramVec
	checkpoints *prometheus.CounterVec
	gaps        *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	deadLetters *prometheus.CounterVec
	stops       *prometheus.CounterVec

	names      *labelSet
	partitions *labelSet

	outcomes  *cache[projOutcomeKey, projOutcomeSeries]
	durations *cache[projDurationKey, histogram]
	perPart   *cache[projPartitionKey, projPartitionSeries]
	simple    *cache[projReasonKey, counter]

	exemplars exemplarRule
	buckets   []float64
}

type (
	projOutcomeKey    struct{ projection, outcome string }
	projOutcomeSeries struct{ processed, checkpoints counter }
	// projDurationKey names a histogram: which (process, batch, sink) of
	// which projection.
	projDurationKey     struct{ which, projection string }
	projPartitionKey    struct{ projection, partition string }
	projPartitionSeries struct{ gaps, skipped counter }
	projReasonKey       struct{ projection, reason string }
)

func newProjectionMetrics(cfg *projectionConfig) (*projectionMetrics, error) {
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
	return &projectionMetrics{
		processed: counterVec("projection_events_processed_total",
			"Events handled by projections (projection.process operations; a failed attempt counts as error), by projection and outcome.", "projection", "outcome"),
		process: histogramVec("projection_process_duration_seconds",
			"Duration of projection.process operations (one event's attempt, or a batch in batch span mode), by projection.", "projection"),
		batch: histogramVec("projection_batch_duration_seconds",
			"Duration of a partition's batch from read to commit (projection.partition operations), by projection.", "projection"),
		sink: histogramVec("projection_sink_write_duration_seconds",
			"Duration of the atomic commit of a batch's sink writes and checkpoint (projection_sink.write operations), by projection.", "projection"),
		checkpoints: counterVec("projection_checkpoint_saves_total",
			"Checkpoint saves (checkpoint.save and redis.checkpoint.save operations), by projection and outcome.", "projection", "outcome"),
		gaps: counterVec("projection_gaps_detected_total",
			"Gaps detected: unapplied entries removed from a stream (trimmed or deleted) before the projection applied them, by projection and partition.", "projection", "partition"),
		skipped: counterVec("projection_skipped_entries_total",
			"Entries lost in detected gaps, where they could be counted, by projection and partition.", "projection", "partition"),
		deadLetters: counterVec("projection_events_dead_lettered_total",
			"Events moved to a dead-letter stream after every attempt failed, by projection.", "projection"),
		stops: counterVec("projection_stops_total",
			"Projection workers stopped by a policy, by projection and reason (poison, gap).", "projection", "reason"),
		names:      newLabelSet(cfg.maxProjections),
		partitions: newLabelSet(cfg.maxPartitions),
		outcomes:   newCache[projOutcomeKey, projOutcomeSeries](),
		durations:  newCache[projDurationKey, histogram](),
		perPart:    newCache[projPartitionKey, projPartitionSeries](),
		simple:     newCache[projReasonKey, counter](),
		exemplars:  exemplarRuleOf(cfg.exemplarInterval),
		buckets:    cfg.buckets,
	}, nil
}

func (m *projectionMetrics) collectors() [9]prometheus.Collector {
	return [...]prometheus.Collector{m.processed, m.process, m.batch, m.sink, m.checkpoints, m.gaps, m.skipped, m.deadLetters, m.stops}
}

// Describe implements prometheus.Collector.
func (m *projectionMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *projectionMetrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *projectionMetrics) outcomeSeries(k projOutcomeKey) *projOutcomeSeries {
	if s := m.outcomes.load(k); s != nil {
		return s
	}
	return m.outcomes.store(k, &projOutcomeSeries{
		processed:   m.exemplars.counter(m.processed.WithLabelValues(k.projection, k.outcome)),
		checkpoints: m.exemplars.counter(m.checkpoints.WithLabelValues(k.projection, k.outcome)),
	})
}

func (m *projectionMetrics) duration(which string, projection string) *histogram {
	k := projDurationKey{which: which, projection: projection}
	if s := m.durations.load(k); s != nil {
		return s
	}
	vec := m.process
	switch which {
	case "batch":
		vec = m.batch
	case "sink":
		vec = m.sink
	}
	h := m.exemplars.histogram(vec.WithLabelValues(projection), m.buckets)
	return m.durations.store(k, &h)
}

func (m *projectionMetrics) partitionSeries(k projPartitionKey) *projPartitionSeries {
	if s := m.perPart.load(k); s != nil {
		return s
	}
	return m.perPart.store(k, &projPartitionSeries{
		gaps:    m.exemplars.counter(m.gaps.WithLabelValues(k.projection, k.partition)),
		skipped: m.exemplars.counter(m.skipped.WithLabelValues(k.projection, k.partition)),
	})
}

// reasonSeries returns the dead-letter counter (reason "") or the stop
// counter of a reason.
func (m *projectionMetrics) reasonSeries(k projReasonKey) *counter {
	if s := m.simple.load(k); s != nil {
		return s
	}
	var c counter
	if k.reason == "" {
		c = m.exemplars.counter(m.deadLetters.WithLabelValues(k.projection))
	} else {
		c = m.exemplars.counter(m.stops.WithLabelValues(k.projection, k.reason))
	}
	return m.simple.store(k, &c)
}

// projectionHook is the hook of NewProjectionHook.
type projectionHook struct {
	m           *projectionMetrics
	now         func() time.Time
	logger      *slog.Logger
	observeHook func()
	panics      atomic.Uint64
}

// Around implements hooks.Hook.
func (h *projectionHook) Around(ctx context.Context, op hooks.Operation, next hooks.Next) error {
	name := op.Name
	var which, prefix string
	switch {
	case strings.HasPrefix(name, projProcessPrefix):
		which, prefix = "process", projProcessPrefix
	case strings.HasPrefix(name, projPartitionPrefix):
		which = "batch"
	case strings.HasPrefix(name, projSinkPrefix):
		which, prefix = "sink", projSinkPrefix
	case strings.HasPrefix(name, projCheckpointPrefix):
		which, prefix = "checkpoint", projCheckpointPrefix
	case strings.HasPrefix(name, projRedisCheckpoint):
		which, prefix = "checkpoint", projRedisCheckpoint
	case strings.HasPrefix(name, projGapPrefix), strings.HasPrefix(name, projDeadLetterPrefix), strings.HasPrefix(name, projStoppedPrefix):
		err := next(ctx)
		h.observeNotice(ctx, op)
		return err
	default:
		return next(ctx)
	}
	start := h.now()
	err := next(ctx)
	h.observe(ctx, op, which, prefix, start, h.now(), err)
	return err
}

// projectionLabel is the capped projection label of op: its
// projection_name attribute, else the operation name after prefix.
func (h *projectionHook) projectionLabel(op hooks.Operation, prefix string) string {
	raw := stringAttr(op, attrProjectionName)
	if raw == "" && prefix != "" {
		raw = op.Name[len(prefix):]
	}
	return h.m.names.value(labelValue(raw))
}

func (h *projectionHook) partitionLabel(op hooks.Operation) string {
	i, ok := intAttr(op, attrPartitionIndex)
	if !ok || i < 0 {
		return unknownValue
	}
	return h.m.partitions.value(strconv.FormatInt(i, 10))
}

// observe observes an operation that ran from start to end; end is also
// the time of its exemplar.
func (h *projectionHook) observe(ctx context.Context, op hooks.Operation, which, prefix string, start, end time.Time, err error) {
	defer h.recoverPanic(ctx, op)
	if h.observeHook != nil {
		h.observeHook()
	}
	projection := h.projectionLabel(op, prefix)
	d := end.Sub(start)
	ex := exemplarOf(ctx, end)
	switch which {
	case "checkpoint":
		h.m.outcomeSeries(projOutcomeKey{projection: projection, outcome: outcome(err != nil)}).checkpoints.add(1, &ex)
		return
	case "process":
		n := int64(1)
		if size, ok := intAttr(op, attrProjBatchSize); ok && size > 0 {
			n = size
		}
		h.m.outcomeSeries(projOutcomeKey{projection: projection, outcome: outcome(err != nil)}).processed.add(float64(n), &ex)
	}
	h.m.duration(which, projection).observe(d.Seconds(), &ex)
}

// observeNotice counts gaps, dead letters and stops.
func (h *projectionHook) observeNotice(ctx context.Context, op hooks.Operation) {
	defer h.recoverPanic(ctx, op)
	if h.observeHook != nil {
		h.observeHook()
	}
	switch {
	case strings.HasPrefix(op.Name, projGapPrefix):
		s := h.m.partitionSeries(projPartitionKey{projection: h.projectionLabel(op, projGapPrefix), partition: h.partitionLabel(op)})
		s.gaps.add(1, nil)
		if n, ok := intAttr(op, attrGapSkipped); ok && n > 0 {
			s.skipped.add(float64(n), nil)
		}
	case strings.HasPrefix(op.Name, projDeadLetterPrefix):
		h.m.reasonSeries(projReasonKey{projection: h.projectionLabel(op, projDeadLetterPrefix)}).add(1, nil)
	default:
		reason := stringAttr(op, attrProjectionReason)
		switch reason {
		case projectionReasonGap, projectionReasonPoison:
		case "":
			reason = unknownValue
		default:
			reason = otherValue
		}
		h.m.reasonSeries(projReasonKey{projection: h.projectionLabel(op, projStoppedPrefix), reason: reason}).add(1, nil)
	}
}

// recoverPanic stops a panic of the hook's own observation code. It must
// be deferred directly. Log records are thinned out to the 1st, 2nd, 4th,
// ... panic.
func (h *projectionHook) recoverPanic(ctx context.Context, op hooks.Operation) {
	v := recover()
	if v == nil {
		return
	}
	panics.Recovered()
	n := h.panics.Add(1)
	if n&(n-1) != 0 {
		return
	}
	defer func() { _ = recover() }()
	h.logger.ErrorContext(ctx, "promobs: recovered panic while observing a projection operation; it ran without metrics",
		slog.String("operation", bound.String(op.Name, bound.Attribute)),
		slog.String("panic", bound.String(fmt.Sprint(v), bound.Error)),
		slog.Uint64("panics", n),
		slog.String("stack", bound.String(string(debug.Stack()), 4*bound.Error)),
	)
}
