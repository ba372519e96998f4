package promobs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

// ErrNoProjectionSource is returned by [NewProjectionCollector] when it is
// given no [ProjectionSource] or a nil one.
var ErrNoProjectionSource = errors.New("promobs: nil or no ProjectionSource")

// ProjectionSource reports the lag of a projection's partitions, read at
// scrape time. The workers of package projections satisfy it.
//
// ProjectionLag calls fn once per partition: events is the number of
// entries behind, seconds the age of the oldest entry not yet applied (0
// when caught up). fn must not be called concurrently, nor after
// ProjectionLag returns. ProjectionLag should give up when ctx is done.
type ProjectionSource interface {
	ProjectionLag(ctx context.Context, fn func(projection string, partition int, events int64, seconds float64)) error
}

// ReplaySource reports the replays running in a projection's worker. A
// [ProjectionSource] that implements it too (the workers of package
// projections do) also feeds projection_replay_progress_ratio.
//
// ReplayStatus calls fn once per running replay: done entries of total
// rebuilt so far. It follows the rules of ProjectionLag.
type ReplaySource interface {
	ReplayStatus(ctx context.Context, fn func(projection string, done, total int64)) error
}

// NewProjectionCollector returns a collector that, at every scrape, asks
// each of srcs for the lag of its partitions and exports
// projection_lag_events and projection_lag_seconds, and, for sources that
// are also a [ReplaySource], projection_replay_progress_ratio while a
// replay runs (see the package documentation). Register it once per registry with every projection's
// source.
//
// A scrape waits for the sources at most [CollectTimeout]. When a source
// fails, times out or panics, the scrape leaves its gauges out, counts the
// failure in projection_lag_collect_errors_total and logs it. Only one read
// of the sources runs at a time: concurrent scrapes share it.
//
// Its options are [WithNamespace], [WithConstLabels], [WithMaxProjections],
// [WithMaxPartitions] (values past the caps are summed under "other",
// seconds as the largest) and [WithLogger]. It returns
// [ErrNoProjectionSource] for no or a nil source and an error for an
// invalid namespace.
func NewProjectionCollector(srcs []ProjectionSource, opts ...ProjectionOption) (prometheus.Collector, error) {
	if len(srcs) == 0 {
		return nil, ErrNoProjectionSource
	}
	for _, s := range srcs {
		if s == nil {
			return nil, ErrNoProjectionSource
		}
	}
	cfg := newProjectionConfig(opts)
	ns, cl := cfg.namespace, cfg.constLabels
	if err := checkNamespace(ns); err != nil {
		return nil, err
	}
	c := &projectionCollector{
		srcs:       append([]ProjectionSource(nil), srcs...),
		logger:     cfg.log(),
		names:      newLabelSet(cfg.maxProjections),
		partitions: newLabelSet(cfg.maxPartitions),
		events: prometheus.NewDesc(prometheus.BuildFQName(ns, "", "projection_lag_events"),
			"Stream entries after the partition's checkpoint not yet applied, read at scrape time, by projection and partition.",
			[]string{"projection", "partition"}, cl),
		seconds: prometheus.NewDesc(prometheus.BuildFQName(ns, "", "projection_lag_seconds"),
			"Age by the Redis clock of the oldest entry the partition has not applied; 0 when caught up, by projection and partition.",
			[]string{"projection", "partition"}, cl),
		replay: prometheus.NewDesc(prometheus.BuildFQName(ns, "", "projection_replay_progress_ratio"),
			"Progress of a running replay, entries rebuilt over entries in the streams (0 to 1), by projection; absent when none runs.",
			[]string{"projection"}, cl),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace:   ns,
			Name:        "projection_lag_collect_errors_total",
			Help:        "Scrapes that could not read the lag of a projection (error, timeout, panic) and left its gauges out.",
			ConstLabels: cl,
		}),
	}
	c.reads.timeout = cfg.scrapeTimeout()
	c.reads.read = c.readSources
	return c, nil
}

type projectionCollector struct {
	srcs              []ProjectionSource
	logger            *slog.Logger
	names, partitions *labelSet
	events, seconds   *prometheus.Desc
	replay            *prometheus.Desc
	errors            prometheus.Counter

	reads    sharedRead[lagRead]
	failures atomic.Uint64
}

type lagKey struct{ projection, partition string }

type lagRow struct {
	events  int64
	seconds float64
}

type replayRow struct{ done, total int64 }

// lagRead is the result of one read of every source.
type lagRead struct {
	rows    map[lagKey]lagRow
	replays map[string]replayRow
	failed  []error
}

// Describe implements prometheus.Collector.
func (c *projectionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.events
	ch <- c.seconds
	ch <- c.replay
	c.errors.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *projectionCollector) Collect(ch chan<- prometheus.Metric) {
	rows, replays, failed := c.read()
	for _, err := range failed {
		c.fail(err)
	}
	if len(failed) == 0 {
		c.failures.Store(0)
	}
	for k, r := range rows {
		if m, err := prometheus.NewConstMetric(c.events, prometheus.GaugeValue, float64(r.events), k.projection, k.partition); err == nil {
			ch <- m
		}
		if m, err := prometheus.NewConstMetric(c.seconds, prometheus.GaugeValue, r.seconds, k.projection, k.partition); err == nil {
			ch <- m
		}
	}
	for projection, r := range replays {
		ratio := 1.0
		if r.total > 0 {
			ratio = min(float64(r.done)/float64(r.total), 1)
		}
		if m, err := prometheus.NewConstMetric(c.replay, prometheus.GaugeValue, ratio, projection); err == nil {
			ch <- m
		}
	}
	c.errors.Collect(ch)
}

// read returns the lag and replay rows of every source, read once for the
// scrapes that run at the same time, within the collect timeout, and the
// failures of the sources that left their gauges out.
func (c *projectionCollector) read() (map[lagKey]lagRow, map[string]replayRow, []error) {
	r, ok := c.reads.get()
	if !ok {
		return nil, nil, []error{fmt.Errorf("no answer within %v", c.reads.timeout)}
	}
	return r.rows, r.replays, r.failed
}

// readSources reads every source and merges their rows.
func (c *projectionCollector) readSources(ctx context.Context) lagRead {
	r := lagRead{rows: make(map[lagKey]lagRow), replays: make(map[string]replayRow)}
	for _, src := range c.srcs {
		rows, replays, err := c.readSource(ctx, src)
		if err != nil {
			r.failed = append(r.failed, err)
			continue
		}
		for k, row := range rows {
			old := r.rows[k]
			r.rows[k] = lagRow{events: old.events + row.events, seconds: max(old.seconds, row.seconds)}
		}
		for k, row := range replays {
			old := r.replays[k]
			r.replays[k] = replayRow{done: old.done + row.done, total: old.total + row.total}
		}
	}
	return r
}

// readSource reads one source; its rows are kept only if it succeeds, so
// that a failing source leaves out its own gauges, not the others'.
func (c *projectionCollector) readSource(ctx context.Context, src ProjectionSource) (rows map[lagKey]lagRow, replays map[string]replayRow, err error) {
	defer func() {
		if v := recover(); v != nil {
			panics.Recovered()
			rows, replays, err = nil, nil, fmt.Errorf("ProjectionSource panicked: %v", v)
		}
	}()
	rows = make(map[lagKey]lagRow)
	err = src.ProjectionLag(ctx, func(projection string, partition int, events int64, seconds float64) {
		part := unknownValue
		if partition >= 0 {
			part = c.partitions.value(strconv.Itoa(partition))
		}
		k := lagKey{projection: c.names.value(labelValue(projection)), partition: part}
		r := rows[k]
		rows[k] = lagRow{events: r.events + max(events, 0), seconds: max(r.seconds, seconds)}
	})
	if err != nil {
		return nil, nil, err
	}
	replays = make(map[string]replayRow)
	if rs, ok := src.(ReplaySource); ok {
		err = rs.ReplayStatus(ctx, func(projection string, done, total int64) {
			k := c.names.value(labelValue(projection))
			r := replays[k]
			replays[k] = replayRow{done: r.done + max(done, 0), total: r.total + max(total, 0)}
		})
		if err != nil {
			return nil, nil, err
		}
	}
	return rows, replays, nil
}

// fail counts a failed read and logs it, thinned out to the 1st, 2nd, 4th,
// ... failure in a row.
func (c *projectionCollector) fail(err error) {
	c.errors.Inc()
	n := c.failures.Add(1)
	if n&(n-1) != 0 {
		return
	}
	defer func() { _ = recover() }()
	c.logger.Warn("promobs: cannot read the lag of a projection; the scrape goes on without its gauges",
		slog.String("error", bound.String(err.Error(), bound.Error)),
		slog.Uint64("failures_in_a_row", n),
	)
}
