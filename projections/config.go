package projections

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"go.opentelemetry.io/otel/propagation"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// SpanMode says how the hook operation projection.process.{name}, and so
// the span of the span hook, is cut.
type SpanMode uint8

const (
	// SpanPerEvent runs one projection.process operation per event (per
	// attempt), continuing the trace of the message the event was
	// published with (see Config.LinkTraces).
	SpanPerEvent SpanMode = iota
	// SpanPerBatch runs one projection.process operation per batch, a new
	// root linked to the trace of the batch's first traced event: the span
	// hook takes a single link (contract.WithLink).
	SpanPerBatch
)

// PoisonPolicy says what happens to an event whose handler failed every
// attempt of the [RetryPolicy]. It is never skipped silently.
type PoisonPolicy uint8

const (
	// PoisonStop stops the worker: Run returns a [*PoisonError], the
	// checkpoint stays before the event, the operation projection.stopped
	// runs and an Error record is logged.
	PoisonStop PoisonPolicy = iota
	// PoisonDeadLetter moves the event, with its error, to the partition's
	// dead-letter stream, in the same commit as the checkpoint that passes
	// it, runs the operation projection.dead_letter and logs a Warn record.
	PoisonDeadLetter
)

// GapPolicy says what happens when unapplied entries were removed from a
// stream (trimmed or deleted before the projection applied them).
type GapPolicy uint8

const (
	// GapStop stops the worker: Run returns a [*GapError].
	GapStop GapPolicy = iota
	// GapContinue counts the skipped entries and goes on.
	GapContinue
)

// RetryPolicy retries a failing handler with exponential backoff.
type RetryPolicy struct {
	// Attempts is the number of attempts per event, the first included.
	// If not set, 3 is used.
	Attempts int
	// Initial is the wait after the first failure, doubled after each
	// further one up to Max. If not set, 100ms and 5s are used.
	Initial, Max time.Duration
}

// Config configures a [Worker].
type Config struct {
	// Projection is the projection to run. It is required.
	Projection Projection
	// Streams are the streams to read, in entry ID order across them. It
	// is required.
	Streams []string
	// Source reads the streams. It is required.
	Source Source
	// Store keeps checkpoints and the read model. It is required.
	Store Store

	// Partitions is the number of partitions. If not set, 1 is used.
	Partitions int
	// Key gives the partition key of an event. It is required when
	// Partitions is above 1.
	Key KeyFunc
	// Leaser spreads the partitions over the processes that run this
	// projection, each partition owned by one at a time. If not set, this
	// worker runs every partition (run it in one process only).
	Leaser Leaser
	// LeaseTTL is how long a lease lasts without renewal: the longest time
	// a dead owner's partitions stay unowned. If not set, 10s is used.
	LeaseTTL time.Duration
	// Member names this process among the workers of the projection. If
	// not set, a random ID is used.
	Member string

	// BatchSize is the most entries read and committed at once. If not
	// set, 100 is used.
	BatchSize int
	// Block is the longest wait for new entries in one read. If not set,
	// 1s is used.
	Block time.Duration
	// CountLimit bounds the entries counted with XRANGE where deletions
	// make lag and gap sizes ambiguous. If not set, 100000 is used.
	CountLimit int64

	// Spans cuts the projection.process operations. If not set,
	// SpanPerEvent is used.
	Spans SpanMode
	// LinkTraces makes each per-event operation the root of a new trace
	// linked to the event's, instead of its child. If not set, the
	// operation continues the event's trace.
	LinkTraces bool
	// Retry is the retry policy of failing handlers. If not set, see
	// RetryPolicy.
	Retry RetryPolicy
	// Poison is the policy for events that fail every attempt. If not set,
	// PoisonStop is used.
	Poison PoisonPolicy
	// Gaps is the policy for removed, unapplied entries. If not set,
	// GapStop is used.
	Gaps GapPolicy

	// Hooks is the registry the worker's operations run through. If not
	// set, hooks.FromContext of Run's context is used.
	Hooks *hooks.Registry
	// Propagator reads the trace context of events. If not set, the
	// contract's default (the global propagator, W3C when none is set) is
	// used.
	Propagator propagation.TextMapPropagator
	// Logger receives gaps, poison events and errors. If not set,
	// slog.Default is used.
	Logger *slog.Logger
}

var validName = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,128}$`)

func (c *Config) setDefaults() {
	if c.Partitions == 0 {
		c.Partitions = 1
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = 10 * time.Second
	}
	if c.BatchSize == 0 {
		c.BatchSize = 100
	}
	if c.Block == 0 {
		c.Block = time.Second
	}
	if c.CountLimit == 0 {
		c.CountLimit = 100_000
	}
	if c.Retry.Attempts == 0 {
		c.Retry.Attempts = 3
	}
	if c.Retry.Initial == 0 {
		c.Retry.Initial = 100 * time.Millisecond
	}
	if c.Retry.Max == 0 {
		c.Retry.Max = 5 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem of c.
func (c Config) Validate() (err error) {
	if c.Projection == nil {
		err = errors.Join(err, errors.New("missing Projection"))
	} else if !validName.MatchString(c.Projection.Name()) {
		err = errors.Join(err, fmt.Errorf("invalid projection name %q: want 1 to 128 letters, digits, '_', '-' or '.'", c.Projection.Name()))
	}
	if len(c.Streams) == 0 {
		err = errors.Join(err, errors.New("missing Streams"))
	}
	seen := make(map[string]bool, len(c.Streams))
	for _, s := range c.Streams {
		if s == "" || seen[s] {
			err = errors.Join(err, fmt.Errorf("empty or repeated stream %q", s))
		}
		seen[s] = true
	}
	if c.Source == nil {
		err = errors.Join(err, errors.New("missing Source"))
	}
	if c.Store == nil {
		err = errors.Join(err, errors.New("missing Store"))
	}
	if c.Partitions < 0 || c.Partitions > 4096 {
		err = errors.Join(err, fmt.Errorf("invalid Partitions %d: want 1 to 4096", c.Partitions))
	}
	if c.Partitions > 1 && c.Key == nil {
		err = errors.Join(err, errors.New("missing Key: required with more than one partition"))
	}
	if c.BatchSize < 0 || c.Block < 0 || c.LeaseTTL < 0 || c.CountLimit < 0 || c.Retry.Attempts < 0 {
		err = errors.Join(err, errors.New("negative BatchSize, Block, LeaseTTL, CountLimit or Retry.Attempts"))
	}
	if c.Poison > PoisonDeadLetter || c.Gaps > GapContinue || c.Spans > SpanPerBatch {
		err = errors.Join(err, errors.New("unknown Poison, Gaps or Spans value"))
	}
	return err
}
