package promobs

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

// The outbox's hook operations and attributes that [OutboxMetrics] reads.
// They are the outbox package's contract; promobs names them itself so that
// a program importing promobs does not link watermill-sql.
const (
	outboxOpSave          = "outbox.save_events"
	outboxOpBatch         = "outbox.process_batch"
	outboxOpRetry         = "outbox.retry_failed"
	outboxOpDeadLetter    = "outbox.dead_letter"
	outboxOpBuffered      = "outbox.buffered.publish"
	outboxOpForwardPrefix = "outbox.forward."

	outboxAttrTopic        = "topic"
	outboxAttrEventCount   = "outbox.event_count"
	outboxAttrBatchSize    = "outbox.batch_size"
	outboxAttrTimeInOutbox = "outbox.time_in_outbox"
)

// DefaultOutboxBatchBuckets are the buckets of outbox_batch_messages.
var DefaultOutboxBatchBuckets = []float64{1, 2, 5, 10, 25, 50, 100, 250, 500, 1000}

// OutboxMetricsConfig configures [NewOutboxMetrics]. The zero value is
// valid.
type OutboxMetricsConfig struct {
	// Namespace prefixes every metric name with it and an underscore
	// (letters, digits and underscores, not starting with a digit). If not
	// set, the names are those of [OutboxMetrics].
	Namespace string
	// ConstLabels are added to every metric. If not set, there are none.
	ConstLabels prometheus.Labels
	// MaxTopics caps the distinct values of the topic label; further
	// topics count under "other". If not set, [DefaultMaxTopics] is used.
	MaxTopics int
	// DurationBuckets are the buckets, in seconds, of the duration
	// histograms. If not set, prometheus.DefBuckets is used.
	DurationBuckets []float64
	// TimeInOutboxBuckets are the buckets, in seconds, of
	// outbox_time_in_outbox_seconds. If not set,
	// [DefaultTimeInQueueBuckets] is used.
	TimeInOutboxBuckets []float64
	// ExemplarInterval is how often, at most, a series (a bucket of a
	// histogram) takes a new exemplar, as [WithExemplarInterval] sets it
	// for the message metrics. A negative interval attaches an exemplar to
	// every observation of a sampled span. If not set,
	// [DefaultExemplarInterval] is used.
	ExemplarInterval time.Duration
	// Logger reports panics recovered while observing. If not set,
	// slog.Default is used.
	Logger *slog.Logger
}

// OutboxMetrics is a hook (hooks.Hook) that turns the outbox package's
// operations into Prometheus metrics, reading the operations' attributes:
//
//   - outbox_messages_saved_total (counter), labels topic and outcome: the
//     messages a transactional publisher inserted (outbox.save_events, by its
//     outbox.event_count). A transaction rolled back afterwards still counts:
//     compare with outbox_messages_forwarded_total for what was committed.
//   - outbox_messages_forwarded_total (counter), labels topic and outcome:
//     one per attempt to publish a saved message to the broker
//     (outbox.forward.{topic}).
//   - outbox_forward_duration_seconds (histogram), label topic: the duration
//     of those attempts.
//   - outbox_time_in_outbox_seconds (histogram), label topic: from saving to
//     a successful forward (outbox.time_in_outbox).
//   - outbox_batches_total (counter), label outcome; outbox_batch_messages
//     (histogram): the rows read per forwarder batch (outbox.batch_size);
//     outbox_batch_duration_seconds (histogram).
//   - outbox_retries_total (counter), label outcome: new attempts at a
//     message whose forward failed (outbox.retry_failed).
//   - outbox_dead_letters_total (counter), label outcome: envelopes that
//     could not be decoded, moved to the dead-letter table.
//   - outbox_buffered_publishes_total (counter), label outcome, and
//     outbox_buffered_publish_duration_seconds (histogram): calls of the
//     buffered publisher, until their group commit ended.
//
// Register it with [OutboxMetrics.Register], or with your own
// hooks.WithOperations("outbox.*"). Gauges of the backlog come from
// [NewOutboxBacklogCollector].
type OutboxMetrics struct {
	c      *outboxCollector
	logger *slog.Logger
}

var _ hooks.Hook = (*OutboxMetrics)(nil)

// NewOutboxMetrics creates the outbox metrics and registers them with reg.
// When reg already holds them (an earlier call with the same namespace and
// const labels), they are reused. A nil reg is [ErrNilRegisterer].
func NewOutboxMetrics(reg prometheus.Registerer, cfg OutboxMetricsConfig) (*OutboxMetrics, error) {
	if reg == nil {
		return nil, ErrNilRegisterer
	}
	c, err := newOutboxCollector(cfg)
	if err != nil {
		return nil, err
	}
	c, err = registerShared(reg, c, "outbox metrics")
	if err != nil {
		return nil, err
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	return &OutboxMetrics{c: c, logger: logger}, nil
}

// OutboxHookName is the registration name [OutboxMetrics.Register] uses.
const OutboxHookName = "promobs.outbox"

// Register registers m with r for the operations "outbox.*".
func (m *OutboxMetrics) Register(r *hooks.Registry) (*hooks.Registration, error) {
	g, err := r.Register(m, hooks.WithOperations("outbox.*"), hooks.WithName(OutboxHookName))
	if err != nil {
		return nil, fmt.Errorf("cannot register outbox metrics hook: %w", err)
	}
	return g, nil
}

// Around runs the operation and observes it. It never changes the
// operation's result; a panic of its own is recovered, logged and counted.
func (m *OutboxMetrics) Around(ctx context.Context, op hooks.Operation, next hooks.Next) error {
	start := time.Now()
	err := next(ctx)
	m.observe(ctx, op, start, time.Now(), err)
	return err
}

// observe observes an operation that ran from start to end; end is also
// the time of its exemplar.
func (m *OutboxMetrics) observe(ctx context.Context, op hooks.Operation, start, end time.Time, err error) {
	defer func() {
		if v := recover(); v != nil {
			m.c.internalErrors.Inc()
			panics.Report(ctx, m.logger, "promobs: recovered panic while observing an outbox operation", v,
				slog.String("operation", op.Name))
		}
	}()
	d, out := end.Sub(start), outcome(err != nil)
	ex := exemplarOf(ctx, end)
	switch {
	case op.Name == outboxOpSave:
		n, ok := intAttr(op, outboxAttrEventCount)
		if !ok {
			n = 1
		}
		m.c.saved.WithLabelValues(m.topic(op), out).Add(float64(n))
	case strings.HasPrefix(op.Name, outboxOpForwardPrefix):
		topic := m.topic(op)
		m.c.forwardedSeries(topic, out).add(1, &ex)
		m.c.forwardDurationSeries(topic).observe(d.Seconds(), &ex)
		if v, ok := op.Attr(outboxAttrTimeInOutbox); ok && err == nil && v.Kind() == slog.KindDuration && v.Duration() >= 0 {
			m.c.timeInOutboxSeries(topic).observe(v.Duration().Seconds(), &ex)
		}
	case op.Name == outboxOpBatch:
		m.c.batches.WithLabelValues(out).Inc()
		m.c.batchTimes.observe(d.Seconds(), &ex)
		if n, ok := intAttr(op, outboxAttrBatchSize); ok {
			m.c.batchSize.Observe(float64(n))
		}
	case op.Name == outboxOpRetry:
		m.c.retries.WithLabelValues(out).Inc()
	case op.Name == outboxOpDeadLetter:
		m.c.deadLetters.WithLabelValues(out).Inc()
	case op.Name == outboxOpBuffered:
		m.c.buffered.WithLabelValues(out).Inc()
		m.c.bufferTimes.observe(d.Seconds(), &ex)
	}
}

// topic is the bounded, capped topic label of op.
func (m *OutboxMetrics) topic(op hooks.Operation) string {
	v, ok := op.Attr(outboxAttrTopic)
	if !ok || v.Kind() != slog.KindString {
		return unknownValue
	}
	return m.c.topics.value(labelValue(v.String()))
}

// outboxCollector holds the outbox metrics as one Collector, so that a
// second NewOutboxMetrics on a registry finds and shares it whole.
type outboxCollector struct {
	saved, forwarded                *prometheus.CounterVec
	forwardDuration, timeInOutbox   *prometheus.HistogramVec
	batches, retries, deadLetters   *prometheus.CounterVec
	buffered                        *prometheus.CounterVec
	batchSize                       prometheus.Histogram
	batchDuration, bufferedDuration prometheus.Histogram
	internalErrors                  prometheus.Counter
	topics                          *labelSet

	// The per-topic series, resolved once; keys hold capped label values.
	exemplars               exemplarRule
	durations, inOutbox     []float64
	forwards                *cache[[2]string, counter] // topic, outcome
	forwardTimes, waitTimes *cache[string, histogram]
	batchTimes, bufferTimes histogram // of batchDuration, bufferedDuration
}

func (c *outboxCollector) forwardedSeries(topic, outcome string) *counter {
	k := [2]string{topic, outcome}
	if s := c.forwards.load(k); s != nil {
		return s
	}
	ctr := c.exemplars.counter(c.forwarded.WithLabelValues(topic, outcome))
	return c.forwards.store(k, &ctr)
}

func (c *outboxCollector) forwardDurationSeries(topic string) *histogram {
	if s := c.forwardTimes.load(topic); s != nil {
		return s
	}
	h := c.exemplars.histogram(c.forwardDuration.WithLabelValues(topic), c.durations)
	return c.forwardTimes.store(topic, &h)
}

// timeInOutboxSeries is created only for topics whose forwards report a
// time in the outbox, so that other topics export no empty histograms.
func (c *outboxCollector) timeInOutboxSeries(topic string) *histogram {
	if s := c.waitTimes.load(topic); s != nil {
		return s
	}
	h := c.exemplars.histogram(c.timeInOutbox.WithLabelValues(topic), c.inOutbox)
	return c.waitTimes.store(topic, &h)
}

func newOutboxCollector(cfg OutboxMetricsConfig) (*outboxCollector, error) {
	ns, cl := cfg.Namespace, cfg.ConstLabels
	if err := checkNamespace(ns); err != nil {
		return nil, err
	}
	durations := prometheus.DefBuckets
	if len(cfg.DurationBuckets) > 0 {
		durations = slices.Clone(cfg.DurationBuckets)
	}
	inOutbox := DefaultTimeInQueueBuckets
	if len(cfg.TimeInOutboxBuckets) > 0 {
		inOutbox = slices.Clone(cfg.TimeInOutboxBuckets)
	}
	if err := checkHistogram(durations, cl); err != nil {
		return nil, fmt.Errorf("cannot use duration buckets: %w", err)
	}
	if err := checkHistogram(inOutbox, cl); err != nil {
		return nil, fmt.Errorf("cannot use time in outbox buckets: %w", err)
	}
	maxTopics := cfg.MaxTopics
	if maxTopics <= 0 {
		maxTopics = DefaultMaxTopics
	}
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help, ConstLabels: cl}, labels)
	}
	plainHistogram := func(name, help string, buckets []float64) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: name, Help: help, ConstLabels: cl, Buckets: buckets})
	}
	c := &outboxCollector{
		saved: counterVec("outbox_messages_saved_total",
			"Messages inserted into the outbox by transactional publishers, by destination topic and outcome of the insert; a transaction rolled back later still counts.", "topic", "outcome"),
		forwarded: counterVec("outbox_messages_forwarded_total",
			"Attempts to publish a saved message to the broker, by destination topic and outcome.", "topic", "outcome"),
		forwardDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "outbox_forward_duration_seconds",
			Help: "Duration of publishing one saved message to the broker, by destination topic.", ConstLabels: cl, Buckets: durations}, []string{"topic"}),
		timeInOutbox: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "outbox_time_in_outbox_seconds",
			Help: "Time from saving a message in the outbox to its successful forward, by destination topic.", ConstLabels: cl, Buckets: inOutbox}, []string{"topic"}),
		batches: counterVec("outbox_batches_total",
			"Forwarder batches (the rows read in one SQL transaction), by outcome: error when the batch ended before all its messages were forwarded.", "outcome"),
		batchSize:     plainHistogram("outbox_batch_messages", "Rows read per forwarder batch.", DefaultOutboxBatchBuckets),
		batchDuration: plainHistogram("outbox_batch_duration_seconds", "Duration of forwarder batches, from the first message to the end of the transaction.", durations),
		retries: counterVec("outbox_retries_total",
			"New attempts to forward a message whose forward failed, by outcome.", "outcome"),
		deadLetters: counterVec("outbox_dead_letters_total",
			"Outbox rows that could not be decoded and were moved to the dead-letter table, by outcome of the move.", "outcome"),
		buffered: counterVec("outbox_buffered_publishes_total",
			"Publish calls of buffered outbox publishers, by outcome of their group commit.", "outcome"),
		bufferedDuration: plainHistogram("outbox_buffered_publish_duration_seconds",
			"Duration of buffered outbox Publish calls, from enqueueing to the end of their group commit.", durations),
		internalErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "promobs_outbox_internal_errors_total",
			Help: "Panics recovered inside promobs while observing outbox operations.", ConstLabels: cl}),
		topics: newLabelSet(maxTopics),

		exemplars:    exemplarRuleOf(cfg.ExemplarInterval),
		durations:    durations,
		inOutbox:     inOutbox,
		forwards:     newCache[[2]string, counter](),
		forwardTimes: newCache[string, histogram](),
		waitTimes:    newCache[string, histogram](),
	}
	c.batchTimes = c.exemplars.histogram(c.batchDuration, durations)
	c.bufferTimes = c.exemplars.histogram(c.bufferedDuration, durations)
	return c, nil
}

func (c *outboxCollector) collectors() []prometheus.Collector {
	return []prometheus.Collector{
		c.saved, c.forwarded, c.forwardDuration, c.timeInOutbox, c.batches, c.batchSize, c.batchDuration,
		c.retries, c.deadLetters, c.buffered, c.bufferedDuration, c.internalErrors,
	}
}

// Describe implements prometheus.Collector.
func (c *outboxCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.collectors() {
		m.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (c *outboxCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.collectors() {
		m.Collect(ch)
	}
}
