package promobs

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// OutboxBacklogSource reports the backlog of one outbox in plain Go types.
// outbox.Monitor implements it; promobs defines it so that a program
// importing promobs does not link the outbox package, watermill-sql or a
// PostgreSQL driver.
type OutboxBacklogSource interface {
	// OutboxTopic names the outbox, the value of the "outbox" label.
	OutboxTopic() string
	// OutboxBacklog returns the committed messages not yet forwarded, how
	// many of those the forwarder cannot read yet because an older
	// transaction is still open, and the save time of the oldest (the zero
	// time when there is none).
	OutboxBacklog(ctx context.Context) (messages, heldBack int64, oldest time.Time, err error)
}

// DefaultOutboxBacklogTimeout bounds one backlog query during a scrape when
// OutboxBacklogConfig.Timeout is not set.
const DefaultOutboxBacklogTimeout = 5 * time.Second

// OutboxBacklogConfig configures [NewOutboxBacklogCollector]. The zero value
// is valid.
type OutboxBacklogConfig struct {
	// Namespace prefixes the metric names, as for [OutboxMetricsConfig]. If
	// not set, the names are those of [NewOutboxBacklogCollector].
	Namespace string
	// ConstLabels are added to every metric. If not set, there are none.
	ConstLabels prometheus.Labels
	// Timeout bounds each source's query per scrape. If not set,
	// [DefaultOutboxBacklogTimeout] is used.
	Timeout time.Duration
	// Logger reports failed queries (once per run of failures). If not set,
	// slog.Default is used.
	Logger *slog.Logger
}

// NewOutboxBacklogCollector returns a Collector that queries each source at
// scrape time (the query is the source's: one cheap SQL statement for
// outbox.Monitor) and exposes, labelled by "outbox":
//
//   - outbox_backlog_messages (gauge): committed messages not yet forwarded;
//   - outbox_backlog_held_back_messages (gauge): of those, the ones the
//     forwarder cannot read yet because an older transaction is open;
//   - outbox_oldest_message_age_seconds (gauge): how long the oldest of
//     them has waited, 0 when there is none;
//   - outbox_backlog_query_errors_total (counter): failed queries. The
//     gauges of a source whose query failed are left out of that scrape,
//     rather than reported as 0, so that alerts see missing data, not an
//     empty outbox.
//
// Register it with a prometheus.Registerer of your choice.
func NewOutboxBacklogCollector(cfg OutboxBacklogConfig, sources ...OutboxBacklogSource) (prometheus.Collector, error) {
	if err := checkNamespace(cfg.Namespace); err != nil {
		return nil, err
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultOutboxBacklogTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(cfg.Namespace, "", name), help, []string{"outbox"}, cfg.ConstLabels)
	}
	c := &backlogCollector{
		cfg: cfg,
		messages: desc("outbox_backlog_messages",
			"Committed outbox messages not yet forwarded (counted from the forwarder's saved position, which moves once per batch)."),
		heldBack: desc("outbox_backlog_held_back_messages",
			"Unforwarded outbox messages the forwarder cannot read yet because an older transaction is still open."),
		age: desc("outbox_oldest_message_age_seconds",
			"Age of the oldest unforwarded outbox message, 0 when there is none."),
		errs: desc("outbox_backlog_query_errors_total",
			"Failed outbox backlog queries at scrape time."),
	}
	for _, s := range sources {
		if s != nil {
			c.sources = append(c.sources, &backlogSource{src: s, label: labelValue(s.OutboxTopic())})
		}
	}
	return c, nil
}

type backlogCollector struct {
	cfg                           OutboxBacklogConfig
	messages, heldBack, age, errs *prometheus.Desc
	sources                       []*backlogSource
}

type backlogSource struct {
	src    OutboxBacklogSource
	label  string
	errs   atomic.Uint64
	failed atomic.Bool
}

// Describe implements prometheus.Collector.
func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.messages
	ch <- c.heldBack
	ch <- c.age
	ch <- c.errs
}

// Collect implements prometheus.Collector: one query per source.
func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.sources {
		c.collect(ch, s)
	}
}

func (c *backlogCollector) collect(ch chan<- prometheus.Metric, s *backlogSource) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	messages, heldBack, oldest, err := s.src.OutboxBacklog(ctx)
	if err != nil {
		s.errs.Add(1)
		if s.failed.CompareAndSwap(false, true) {
			c.cfg.Logger.Warn("promobs: outbox backlog query failed; its gauges are left out until it succeeds",
				slog.String("outbox", s.label), slog.Any("error", err))
		}
	} else {
		s.failed.Store(false)
		age := 0.0
		if !oldest.IsZero() {
			age = max(time.Since(oldest).Seconds(), 0)
		}
		ch <- prometheus.MustNewConstMetric(c.messages, prometheus.GaugeValue, float64(messages), s.label)
		ch <- prometheus.MustNewConstMetric(c.heldBack, prometheus.GaugeValue, float64(heldBack), s.label)
		ch <- prometheus.MustNewConstMetric(c.age, prometheus.GaugeValue, age, s.label)
	}
	ch <- prometheus.MustNewConstMetric(c.errs, prometheus.CounterValue, float64(s.errs.Load()), s.label)
}
