package promobs

import (
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/prometheus/client_golang/prometheus"
)

// Default cardinality caps and buckets.
const (
	// DefaultMaxMessageTypes is the default number of distinct message_type
	// label values; see [WithMaxMessageTypes].
	DefaultMaxMessageTypes = 1000
	// DefaultMaxTopics is the default number of distinct topic (and handler)
	// label values; see [WithMaxTopics].
	DefaultMaxTopics = 1000
)

// DefaultTimeInQueueBuckets are the default buckets, in seconds, of
// watermill_message_time_in_queue_seconds. They reach further than
// prometheus.DefBuckets because messages may wait in a broker, an outbox or
// a retry queue for minutes or hours.
var DefaultTimeInQueueBuckets = []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600}

// config holds the resolved options; New copies what it needs.
type config struct {
	namespace          string
	maxMessageTypes    int
	maxTopics          int
	buckets            []float64
	timeInQueueBuckets []float64
	constLabels        prometheus.Labels
	exemplarInterval   time.Duration
	logger             *slog.Logger
	template           contract.TopicTemplateFunc
	// maxSagaTypes concerns the saga metrics only; zero means
	// DefaultMaxSagaTypes. collectTimeout is CollectTimeout unless a test
	// sets it.
	maxSagaTypes   int
	collectTimeout time.Duration

	// now and observeHook are set only by tests (export_test.go).
	now         func() time.Time
	observeHook func()
}

func newConfig(opts []Option) config {
	c := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.apply(&c)
		}
	}
	return c
}

// newSagaConfig is newConfig for the saga metrics.
func newSagaConfig(opts []SagaOption) config {
	c := defaultConfig()
	for _, o := range opts {
		if o != nil {
			o.applySaga(&c)
		}
	}
	return c
}

func defaultConfig() config {
	return config{
		maxMessageTypes:    DefaultMaxMessageTypes,
		maxTopics:          DefaultMaxTopics,
		buckets:            prometheus.DefBuckets,
		timeInQueueBuckets: DefaultTimeInQueueBuckets,
		now:                time.Now,
	}
}

func (c *config) log() *slog.Logger {
	if c.logger != nil {
		return c.logger
	}
	return slog.Default()
}

// An Option configures the message metrics of [New], [Middleware] and
// [PublisherDecorator].
type Option interface{ apply(*config) }

// A SagaOption configures the saga metrics of [NewSagaHook] and
// [NewSagaCollector].
type SagaOption interface{ applySaga(*config) }

// A SharedOption configures the message, the saga and the projection
// metrics alike (namespace, const labels, buckets, exemplar interval,
// logger). Options that concern only one of them are an Option, a
// SagaOption or a ProjectionOption, so that no constructor can be given a
// setting it would ignore.
type SharedOption interface {
	Option
	SagaOption
	ProjectionOption
}

type optionFunc func(*config)

func (f optionFunc) apply(c *config)     { f(c) }
func (f optionFunc) applySaga(c *config) { f(c) }

// WithNamespace prefixes every metric name with namespace and an underscore,
// e.g. "shop" gives shop_cqrs_message_total. It may hold letters, digits
// and underscores and must not start with a digit; [New] reports an error
// otherwise. If not set, the names are exactly those listed in the package
// documentation.
func WithNamespace(namespace string) SharedOption {
	return optionFunc(func(c *config) { c.namespace = namespace })
}

// WithMaxMessageTypes caps the number of distinct message_type label values.
// Once n values have been seen, further types are counted under "other", so
// that a producer inventing type names cannot exhaust Prometheus' memory.
// Values below 1 are ignored. If not set, [DefaultMaxMessageTypes] is used.
func WithMaxMessageTypes(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxMessageTypes = n
		}
	})
}

// WithMaxTopics caps the number of distinct topic label values, and
// separately the number of distinct handler label values. Once n values have
// been seen, further ones are counted under "other". Values below 1 are
// ignored. If not set, [DefaultMaxTopics] is used.
func WithMaxTopics(n int) Option {
	return optionFunc(func(c *config) {
		if n > 0 {
			c.maxTopics = n
		}
	})
}

// WithBuckets sets the buckets, in seconds, of the handler and publish
// duration histograms, and of the saga step and lock wait histograms of
// [NewSagaHook]. They must be strictly increasing; [New] reports an
// error otherwise (NewSagaHook too). An empty slice is ignored. If not set,
// prometheus.DefBuckets (5 ms to 10 s) is used.
//
// Buckets are not part of a metric's identity: when the collectors are
// already registered, the buckets of the first registration stay in effect.
func WithBuckets(buckets []float64) SharedOption {
	return optionFunc(func(c *config) {
		if len(buckets) > 0 {
			c.buckets = slices.Clone(buckets)
		}
	})
}

// WithTimeInQueueBuckets sets the buckets, in seconds, of
// watermill_message_time_in_queue_seconds, under the same rules as
// [WithBuckets]. If not set, [DefaultTimeInQueueBuckets] is used.
func WithTimeInQueueBuckets(buckets []float64) Option {
	return optionFunc(func(c *config) {
		if len(buckets) > 0 {
			c.timeInQueueBuckets = slices.Clone(buckets)
		}
	})
}

// WithConstLabels adds labels with fixed values to every metric, for
// example the name of a service when several share a registry. Prefer
// target labels set by Prometheus where possible: const labels cannot
// change at run time. Labels set by an earlier WithConstLabels are kept
// unless overwritten. If not set, metrics have no const labels.
func WithConstLabels(labels prometheus.Labels) SharedOption {
	return optionFunc(func(c *config) {
		if len(labels) == 0 {
			return
		}
		if c.constLabels == nil {
			c.constLabels = make(prometheus.Labels, len(labels))
		}
		maps.Copy(c.constLabels, labels)
	})
}

// WithExemplarInterval sets how often, at most, one series takes a new
// exemplar: a counter once per d, a histogram once per d in each bucket.
// Prometheus keeps only the exemplar present at a scrape, so an interval
// well under the scrape interval shows the same exemplars as attaching one
// to every observation, without building one per message; per bucket, a
// rare slow observation always gets its exemplar. A negative d attaches
// an exemplar to every observation of a sampled span. Zero is ignored. If
// not set, [DefaultExemplarInterval] is used.
//
// Like buckets, the interval belongs to the collectors: when they are
// already registered, the interval of the first registration stays in
// effect.
func WithExemplarInterval(d time.Duration) SharedOption {
	return optionFunc(func(c *config) {
		if d != 0 {
			c.exemplarInterval = d
		}
	})
}

// WithLogger sets the logger that reports problems inside this package,
// such as a recovered panic while observing a message. A nil logger is
// ignored. If not set, slog.Default is used.
func WithLogger(l *slog.Logger) SharedOption {
	return optionFunc(func(c *config) {
		if l != nil {
			c.logger = l
		}
	})
}

// WithTopicTemplate sets the function that maps per-request topics to the
// template that stands in for them in the topic label (see
// contract.TopicTemplateFunc), so that replies on a topic per request
// do not take the slots that [WithMaxTopics] keeps for real topics. Give
// watermillobs the same function (watermillobs.WithTopicTemplate) so that
// span names agree. Messages of kind reply use
// contract.TemporaryDestination when fn does not map their topic. A nil
// fn is ignored. If not set, only replies are templated.
func WithTopicTemplate(fn contract.TopicTemplateFunc) Option {
	return optionFunc(func(c *config) {
		if fn != nil {
			c.template = fn
		}
	})
}
