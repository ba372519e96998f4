package promobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// ErrNilRegisterer is returned by [New] when it is given a nil
// prometheus.Registerer. The package never falls back to the global
// registry: pass prometheus.DefaultRegisterer explicitly to use it.
var ErrNilRegisterer = errors.New("promobs: nil prometheus.Registerer")

var _ watermillobs.PublisherBackend = (*Metrics)(nil)

// Metrics records Prometheus metrics for the messages handled by Watermill
// handlers and sent through Watermill publishers. Create it with [New] and
// install it with watermillobs.Instrument (InstrumentConfig.Backends), or use
// [Metrics.HandlerMiddleware] and [Metrics.DecoratePublisher] directly.
//
// A Metrics is safe for concurrent use. Metrics created by several calls of
// [New] on the same registry share their collectors, label caps and series.
type Metrics struct {
	c           *collector
	now         func() time.Time
	logger      *slog.Logger
	template    contract.TopicTemplateFunc
	observeHook func()
}

// New creates the collectors described in the package documentation and
// registers them with reg. If reg already holds them, from an earlier New
// with the same namespace and const labels, New reuses them, so that two
// routers sharing a registry count into the same series; the options that
// shape the collectors (buckets, caps) of the first registration then stay
// in effect.
//
// New returns [ErrNilRegisterer] for a nil reg, and an error if the options
// are invalid or registration fails.
func New(reg prometheus.Registerer, opts ...Option) (*Metrics, error) {
	if reg == nil {
		return nil, ErrNilRegisterer
	}
	cfg := newConfig(opts)
	c, err := newCollector(&cfg)
	if err != nil {
		return nil, err
	}
	c, err = registerShared(reg, c, "promobs collector")
	if err != nil {
		return nil, err
	}
	return &Metrics{
		c:           c,
		now:         cfg.now,
		logger:      cfg.log(),
		template:    cfg.template,
		observeHook: cfg.observeHook,
	}, nil
}

// Middleware returns the router middleware of a new [Metrics]; see [New].
// Call New once and use [Metrics.HandlerMiddleware] and
// [Metrics.PublisherDecorator] when both are needed.
func Middleware(reg prometheus.Registerer, opts ...Option) (message.HandlerMiddleware, error) {
	m, err := New(reg, opts...)
	if err != nil {
		return nil, err
	}
	return m.HandlerMiddleware(), nil
}

// PublisherDecorator returns the publisher decorator of a new [Metrics]; see
// [New]. Use it with message.Router.AddPublisherDecorators.
func PublisherDecorator(reg prometheus.Registerer, opts ...Option) (message.PublisherDecorator, error) {
	m, err := New(reg, opts...)
	if err != nil {
		return nil, err
	}
	return m.PublisherDecorator(), nil
}

// collector holds the metric vectors together with the label caps and
// series caches that belong to them. It is registered as one Collector so
// that a second New on the same registry finds it whole through
// prometheus.AlreadyRegisteredError and shares its caps.
type collector struct {
	handledDuration *prometheus.HistogramVec
	handledTotal    *prometheus.CounterVec
	consumedTotal   *prometheus.CounterVec
	timeInQueue     *prometheus.HistogramVec
	publishedTotal  *prometheus.CounterVec
	publishDuration *prometheus.HistogramVec
	internalErrors  prometheus.Counter
	recovered       prometheus.CounterFunc

	types, topics, handlers *labelSet

	handled   *cache[handledKey, handledSeries]
	consumed  *cache[consumedKey, consumedSeries]
	queued    *cache[string, histogram]
	published *cache[publishedKey, publishedSeries]

	// exemplars gates the series' exemplars; buckets and queueBuckets are
	// the histograms' buckets, which the gates go by.
	exemplars             exemplarRule
	buckets, queueBuckets []float64

	// panics counts recovered panics, to thin out their log records.
	panics atomic.Uint64
}

func newCollector(cfg *config) (*collector, error) {
	ns, cl := cfg.namespace, cfg.constLabels
	if err := checkNamespace(ns); err != nil {
		return nil, err
	}
	if err := checkHistogram(cfg.buckets, cl); err != nil {
		return nil, fmt.Errorf("cannot use buckets: %w", err)
	}
	if err := checkHistogram(cfg.timeInQueueBuckets, cl); err != nil {
		return nil, fmt.Errorf("cannot use time in queue buckets: %w", err)
	}
	cqrsLabels := []string{"kind", "message_type", "outcome"}
	return &collector{
		handledDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace:   ns,
			Name:        "cqrs_message_duration_seconds",
			Help:        "Time taken by a Watermill handler to handle a message, by message kind, type and outcome.",
			ConstLabels: cl,
			Buckets:     cfg.buckets,
		}, cqrsLabels),
		handledTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   ns,
			Name:        "cqrs_message_total",
			Help:        "Messages handled by Watermill handlers, by message kind, type and outcome.",
			ConstLabels: cl,
		}, cqrsLabels),
		consumedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   ns,
			Name:        "watermill_messages_consumed_total",
			Help:        "Messages handled by Watermill handlers, by subscribed topic, handler and outcome.",
			ConstLabels: cl,
		}, []string{"topic", "handler", "outcome"}),
		timeInQueue: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace:   ns,
			Name:        "watermill_message_time_in_queue_seconds",
			Help:        "Time from a message's published_at metadata to the start of its handling, by subscribed topic.",
			ConstLabels: cl,
			Buckets:     cfg.timeInQueueBuckets,
		}, []string{"topic"}),
		publishedTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace:   ns,
			Name:        "watermill_messages_published_total",
			Help:        "Messages passed to Watermill publishers, by topic and outcome of the Publish call.",
			ConstLabels: cl,
		}, []string{"topic", "outcome"}),
		publishDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace:   ns,
			Name:        "watermill_publish_duration_seconds",
			Help:        "Duration of Watermill Publish calls, by topic.",
			ConstLabels: cl,
			Buckets:     cfg.buckets,
		}, []string{"topic"}),
		internalErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace:   ns,
			Name:        "promobs_internal_errors_total",
			Help:        "Panics recovered inside promobs while observing; the messages concerned were processed without metrics.",
			ConstLabels: cl,
		}),
		recovered: prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace:   ns,
			Name:        "watermill_observability_recovered_panics_total",
			Help:        "Panics recovered anywhere in watermill-observability's own code (span pipeline, log handlers, Sentry, hooks, metrics); the messages concerned were processed as if uninstrumented.",
			ConstLabels: cl,
		}, func() float64 { return float64(panics.Count()) }),
		types:     newLabelSet(cfg.maxMessageTypes),
		topics:    newLabelSet(cfg.maxTopics),
		handlers:  newLabelSet(cfg.maxTopics),
		handled:   newCache[handledKey, handledSeries](),
		consumed:  newCache[consumedKey, consumedSeries](),
		queued:    newCache[string, histogram](),
		published: newCache[publishedKey, publishedSeries](),

		exemplars:    exemplarRuleOf(cfg.exemplarInterval),
		buckets:      cfg.buckets,
		queueBuckets: cfg.timeInQueueBuckets,
	}, nil
}

// checkNamespace reports an error unless ns keeps metric names in the
// classic character set, which every scraper and query language accepts
// unquoted.
func checkNamespace(ns string) error {
	for i := 0; i < len(ns); i++ {
		c := ns[i]
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (i == 0 || c < '0' || c > '9') {
			return fmt.Errorf("cannot use namespace %q: want letters, digits and underscores, not starting with a digit", ns)
		}
	}
	return nil
}

// checkHistogram reports the problems for which client_golang panics, lazily,
// when the first series of a histogram vector is created: buckets that are
// not strictly increasing, or a const label named "le". It also rejects NaN,
// which client_golang lets through.
func checkHistogram(buckets []float64, constLabels prometheus.Labels) (err error) {
	if slices.ContainsFunc(buckets, math.IsNaN) {
		return errors.New("bucket is NaN")
	}
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("%v", v)
		}
	}()
	prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:        "promobs_check",
		Help:        "check",
		ConstLabels: constLabels,
		Buckets:     buckets,
	})
	return nil
}

func (c *collector) collectors() [8]prometheus.Collector {
	return [...]prometheus.Collector{
		c.handledDuration, c.handledTotal, c.consumedTotal, c.timeInQueue,
		c.publishedTotal, c.publishDuration, c.internalErrors, c.recovered,
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.collectors() {
		m.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.collectors() {
		m.Collect(ch)
	}
}

// Series caches. Keys hold capped label values; values hold the children
// resolved once with WithLabelValues.
type (
	handledKey    struct{ kind, typ, outcome string }
	handledSeries struct {
		duration histogram
		total    counter
	}
	consumedKey     struct{ topic, handler, outcome string }
	consumedSeries  struct{ total counter }
	publishedKey    struct{ topic, outcome string }
	publishedSeries struct {
		total    counter
		duration histogram
	}
)

func (c *collector) handledSeries(kind, typ, outcome string) *handledSeries {
	k := handledKey{kind, typ, outcome}
	if s := c.handled.load(k); s != nil {
		return s
	}
	k.typ = c.types.value(typ)
	if s := c.handled.load(k); s != nil {
		return s
	}
	return c.handled.store(k, &handledSeries{
		duration: c.exemplars.histogram(c.handledDuration.WithLabelValues(k.kind, k.typ, k.outcome), c.buckets),
		total:    c.exemplars.counter(c.handledTotal.WithLabelValues(k.kind, k.typ, k.outcome)),
	})
}

func (c *collector) consumedSeries(topic, handler, outcome string) *consumedSeries {
	k := consumedKey{topic, handler, outcome}
	if s := c.consumed.load(k); s != nil {
		return s
	}
	k.topic, k.handler = c.topics.value(topic), c.handlers.value(handler)
	if s := c.consumed.load(k); s != nil {
		return s
	}
	return c.consumed.store(k, &consumedSeries{
		total: c.exemplars.counter(c.consumedTotal.WithLabelValues(k.topic, k.handler, k.outcome)),
	})
}

// queueSeries is created only for topics whose messages carry a valid
// published_at, so that other topics export no empty histograms.
func (c *collector) queueSeries(topic string) *histogram {
	if s := c.queued.load(topic); s != nil {
		return s
	}
	topic = c.topics.value(topic)
	if s := c.queued.load(topic); s != nil {
		return s
	}
	h := c.exemplars.histogram(c.timeInQueue.WithLabelValues(topic), c.queueBuckets)
	return c.queued.store(topic, &h)
}

func (c *collector) publishedSeries(topic, outcome string) *publishedSeries {
	k := publishedKey{topic, outcome}
	if s := c.published.load(k); s != nil {
		return s
	}
	k.topic = c.topics.value(topic)
	if s := c.published.load(k); s != nil {
		return s
	}
	return c.published.store(k, &publishedSeries{
		total:    c.exemplars.counter(c.publishedTotal.WithLabelValues(k.topic, k.outcome)),
		duration: c.exemplars.histogram(c.publishDuration.WithLabelValues(k.topic), c.buckets),
	})
}

func outcome(failed bool) string {
	if failed {
		return contract.OutcomeError
	}
	return contract.OutcomeSuccess
}

// recoverPanic stops a panic raised by the package's own observation code,
// so that a bug here never fails a message. It must be deferred directly.
// Log records are thinned out to the 1st, 2nd, 4th, 8th, ... panic, so that
// a systematic failure cannot flood the logs; the counter has them all.
func (m *Metrics) recoverPanic(ctx context.Context) {
	v := recover()
	if v == nil {
		return
	}
	m.c.internalErrors.Inc()
	panics.Recovered()
	n := m.c.panics.Add(1)
	if n&(n-1) != 0 {
		return
	}
	defer func() { _ = recover() }() // a broken log handler must not fail the message either
	m.logger.ErrorContext(ctx, "promobs: recovered panic while observing; the message was processed without metrics",
		slog.String("panic", bound.String(fmt.Sprint(v), bound.Error)),
		slog.Uint64("panics", n),
		slog.String("stack", bound.String(string(debug.Stack()), 4*bound.Error)),
	)
}

// topicLabel is the topic label of a message sent to or consumed from
// topic: its template when it is a per-request destination.
func (m *Metrics) topicLabel(topic string, msg *message.Message) string {
	dest, _ := contract.Destination(m.template, topic, msg)
	return labelValue(dest)
}
