package promobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

// CollectTimeout is how long a scrape of [NewSagaCollector] waits for its
// [SagaSource]. When the time is up the scrape goes on without the saga
// gauges, well within Prometheus' default scrape timeout of 10s.
const CollectTimeout = 5 * time.Second

// scrapeTimeout is how long a scrape waits for a collector's sources:
// CollectTimeout unless a test set it.
func (c *config) scrapeTimeout() time.Duration {
	if c.collectTimeout > 0 {
		return c.collectTimeout
	}
	return CollectTimeout
}

// ErrNilSagaSource is returned by [NewSagaCollector] when it is given a nil
// [SagaSource].
var ErrNilSagaSource = errors.New("promobs: nil SagaSource")

// SagaSource reports the active saga instances, read at scrape time. The
// saga manager of package sagas satisfies it.
//
// ActiveSagas calls fn once per saga type that has active instances (or
// that the source knows of, with count 0): count is the number of active
// instances, oldest the start time of the oldest of them, the zero time
// when there is none. fn must not be called concurrently, nor after
// ActiveSagas returns. ActiveSagas should give up when ctx is done.
type SagaSource interface {
	ActiveSagas(ctx context.Context, fn func(sagaType string, count int64, oldest time.Time)) error
}

// NewSagaCollector returns a collector that, at every scrape, asks src for
// the active saga instances and exports saga_active_instances and
// saga_oldest_active_age_seconds (see the package documentation). Register
// it with a prometheus.Registerer; one registry holds one of them, fed by a
// source that reports every saga type.
//
// A scrape waits for src at most [CollectTimeout], and
// src's context ends then too. When src fails, times out or panics, the
// scrape leaves the two gauges out (rather than failing the whole scrape,
// as prometheus.NewInvalidMetric would), counts the failure in
// saga_active_collect_errors_total and logs it. Only one read of src runs
// at a time: concurrent scrapes share it, and a source that hangs despite
// its context costs one goroutine, not one per scrape.
//
// Its options are [WithNamespace], [WithConstLabels], [WithMaxSagaTypes]
// (types past the cap are summed under "other") and [WithLogger]; a scrape
// waits at most [CollectTimeout] for src. It returns
// [ErrNilSagaSource] for a nil src and an error for an invalid namespace.
func NewSagaCollector(src SagaSource, opts ...SagaOption) (prometheus.Collector, error) {
	if src == nil {
		return nil, ErrNilSagaSource
	}
	cfg := newSagaConfig(opts)
	ns, cl := cfg.namespace, cfg.constLabels
	if err := checkNamespace(ns); err != nil {
		return nil, err
	}
	c := &sagaCollector{
		src:    src,
		now:    cfg.now,
		logger: cfg.log(),
		types:  newLabelSet(cfg.sagaTypes()),
		active: prometheus.NewDesc(prometheus.BuildFQName(ns, "", "saga_active_instances"),
			"Saga instances that have started and not ended, by saga type, read at scrape time.",
			[]string{"saga_type"}, cl),
		oldest: prometheus.NewDesc(prometheus.BuildFQName(ns, "", "saga_oldest_active_age_seconds"),
			"Time since the oldest active saga instance started, by saga type; 0 when none is active.",
			[]string{"saga_type"}, cl),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace:   ns,
			Name:        "saga_active_collect_errors_total",
			Help:        "Scrapes that could not read the active saga instances (error, timeout, panic or a read still running) and left the saga gauges out.",
			ConstLabels: cl,
		}),
	}
	c.reads.timeout = cfg.scrapeTimeout()
	c.reads.read = func(ctx context.Context) sagaRead {
		rows, err := c.readSource(ctx)
		return sagaRead{rows, err}
	}
	return c, nil
}

// sagaCollector is the collector of NewSagaCollector.
type sagaCollector struct {
	src            SagaSource
	now            func() time.Time
	logger         *slog.Logger
	types          *labelSet
	active, oldest *prometheus.Desc
	errors         prometheus.Counter

	reads sharedRead[sagaRead]
	// failures counts consecutive failed scrapes, to thin out their logs.
	failures atomic.Uint64
}

// activeRow is what a scrape exports for one saga_type label value.
type activeRow struct {
	count  int64
	oldest time.Time
}

// Describe implements prometheus.Collector.
func (c *sagaCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.active
	ch <- c.oldest
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *sagaCollector) Collect(ch chan<- prometheus.Metric) {
	rows, err := c.read()
	if err != nil {
		c.fail(err)
	} else {
		c.failures.Store(0)
		now := c.now()
		for typ, r := range rows {
			age := 0.0
			if !r.oldest.IsZero() && now.After(r.oldest) {
				age = now.Sub(r.oldest).Seconds()
			}
			c.send(ch, c.active, float64(r.count), typ)
			c.send(ch, c.oldest, age, typ)
		}
	}
	c.errors.Collect(ch)
}

func (c *sagaCollector) send(ch chan<- prometheus.Metric, desc *prometheus.Desc, v float64, typ string) {
	if m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, v, typ); err == nil {
		ch <- m
	}
}

// sagaRead is the result of one read of the source.
type sagaRead struct {
	rows map[string]activeRow
	err  error
}

// read returns the active sagas per label value, read once for the
// scrapes that run at the same time, within the collect timeout.
func (c *sagaCollector) read() (map[string]activeRow, error) {
	r, ok := c.reads.get()
	if !ok {
		return nil, fmt.Errorf("no answer within %v", c.reads.timeout)
	}
	return r.rows, r.err
}

// readSource calls the source and sums its rows per capped label value.
// The rows stay local to the reading goroutine until it returns them.
func (c *sagaCollector) readSource(ctx context.Context) (rows map[string]activeRow, err error) {
	defer func() {
		if v := recover(); v != nil {
			panics.Recovered()
			rows, err = nil, fmt.Errorf("SagaSource panicked: %v", v)
		}
	}()
	rows = make(map[string]activeRow)
	err = c.src.ActiveSagas(ctx, func(sagaType string, count int64, oldest time.Time) {
		typ := c.types.value(labelValue(sagaType))
		r := rows[typ]
		r.count += max(count, 0)
		if !oldest.IsZero() && (r.oldest.IsZero() || oldest.Before(r.oldest)) {
			r.oldest = oldest
		}
		rows[typ] = r
	})
	if err != nil {
		return nil, err
	}
	return rows, nil
}

// fail counts a failed scrape and logs it, thinned out to the 1st, 2nd,
// 4th, ... failure in a row so that a Redis outage does not flood the logs.
func (c *sagaCollector) fail(err error) {
	c.errors.Inc()
	n := c.failures.Add(1)
	if n&(n-1) != 0 {
		return
	}
	defer func() { _ = recover() }() // a broken log handler must not fail the scrape
	c.logger.Warn("promobs: cannot read the active sagas; the scrape goes on without the saga gauges",
		slog.String("error", bound.String(err.Error(), bound.Error)),
		slog.Uint64("failures_in_a_row", n),
	)
}
