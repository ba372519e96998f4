package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/forwarder"
	"github.com/ThreeDotsLabs/watermill/message"
)

// ForwardTrace says how the span of a forward relates to the trace context
// saved with the message.
type ForwardTrace int

const (
	// ForwardLinked makes each forward span the root of a trace of its own,
	// linked to the saved context: a message that waited in the outbox does
	// not stretch the request's trace. The default.
	ForwardLinked ForwardTrace = iota
	// ForwardChild makes each forward span a child of the saved context,
	// in the request's trace.
	ForwardChild
)

// Defaults of [ForwarderConfig].
const (
	DefaultRetention       = 24 * time.Hour
	DefaultCleanupInterval = time.Minute
	DefaultAckDeadline     = 30 * time.Second
)

// ForwarderConfig configures a [Forwarder].
type ForwarderConfig struct {
	// DB is where the outbox lives, for example
	// sql.BeginnerFromStdSQL(db) or sql.BeginnerFromPgx(pool) of
	// watermill-sql. It is required.
	DB wmsql.Beginner

	// Publisher publishes the forwarded messages to the broker. It is
	// required. Decorate it with watermillobs.NewPublisher for send spans:
	// the saved trace context in the metadata is kept, so the consumer
	// still continues the transaction's trace.
	Publisher message.Publisher

	// Trace relates the forward spans to the saved context. If not set,
	// [ForwardLinked] is used.
	Trace ForwardTrace

	// PollInterval is the wait between reads of an empty outbox. If not
	// set, watermill-sql's default (1 s) is used.
	PollInterval time.Duration

	// ResendInterval is the wait before a message whose forward failed is
	// tried again. If not set, watermill-sql's default (1 s) is used.
	ResendInterval time.Duration

	// RetryInterval is the wait after a database error (PostgreSQL
	// unreachable) before reading again. If not set, watermill-sql's
	// default (1 s) is used.
	RetryInterval time.Duration

	// AckDeadline bounds how long one message may take to be forwarded,
	// retries included, before its batch ends and it is read again in a
	// new one. The batch's transaction stays open meanwhile, which holds
	// back PostgreSQL's snapshot horizon, so keep it short. If not set,
	// [DefaultAckDeadline] is used.
	AckDeadline time.Duration

	// Retention is how long forwarded rows are kept before the forwarder
	// deletes them (see [Outbox.Cleanup]). A negative value keeps them
	// forever. If not set, [DefaultRetention] is used.
	Retention time.Duration

	// CleanupInterval is the time between two cleanups. If not set,
	// [DefaultCleanupInterval] is used.
	CleanupInterval time.Duration

	// CloseTimeout bounds how long Close waits for the message being
	// forwarded. If not set, Watermill's forwarder default (30 s) is used.
	CloseTimeout time.Duration

	// WatermillLogger receives the logs of watermill-sql's subscriber and
	// of the forwarder's router. If not set, they are discarded: the
	// outbox reports what matters through Config.Logger and its hook
	// operations.
	WatermillLogger watermill.LoggerAdapter
}

func (c *ForwarderConfig) setDefaults() {
	if c.AckDeadline == 0 {
		c.AckDeadline = DefaultAckDeadline
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.CleanupInterval == 0 {
		c.CleanupInterval = DefaultCleanupInterval
	}
	if c.WatermillLogger == nil {
		c.WatermillLogger = watermill.NopLogger{}
	}
}

// Validate reports every problem of c, joined.
func (c ForwarderConfig) Validate() (err error) {
	if c.DB == nil {
		err = errors.Join(err, errors.New("missing DB"))
	}
	if c.Publisher == nil {
		err = errors.Join(err, errors.New("missing Publisher"))
	}
	if c.Trace != ForwardLinked && c.Trace != ForwardChild {
		err = errors.Join(err, fmt.Errorf("unknown Trace %d", c.Trace))
	}
	for name, d := range map[string]time.Duration{
		"PollInterval": c.PollInterval, "ResendInterval": c.ResendInterval, "RetryInterval": c.RetryInterval,
		"AckDeadline": c.AckDeadline, "CleanupInterval": c.CleanupInterval, "CloseTimeout": c.CloseTimeout,
	} {
		if d < 0 {
			err = errors.Join(err, fmt.Errorf("negative %s %s", name, d))
		}
	}
	return err
}

// Forwarder moves saved messages from the outbox to the broker: Watermill's
// forwarder (components/forwarder) reading the outbox table through
// watermill-sql's PostgreSQL subscriber, with the outbox's instrumentation
// around it. See the package documentation for what it guarantees and
// which operations it runs.
type Forwarder struct {
	o   *Outbox
	cfg ForwarderConfig
	fwd *forwarder.Forwarder
	sub *wmsql.Subscriber

	// failed holds the envelope UUIDs whose last forward failed, so that
	// their next attempt runs as OpRetryFailed.
	failed failedSet

	closeOnce sync.Once
	closed    chan struct{}

	// dbDown is set while the database cannot be reached.
	dbDown atomic.Bool
}

// ErrDatabaseUnreachable is wrapped by the error the forwarder logs when
// it cannot begin a transaction on the outbox's database.
var ErrDatabaseUnreachable = errors.New("outbox: database unreachable")

// dbState logs a change of the database's reachability: err != nil when a
// transaction could not begin.
func (f *Forwarder) dbState(ctx context.Context, err error) {
	if err != nil {
		if f.dbDown.CompareAndSwap(false, true) {
			f.o.cfg.Logger.ErrorContext(ctx, "outbox: forwarder cannot read the outbox; retrying every RetryInterval",
				slog.String(AttrOutboxTopic, f.o.cfg.Topic), slog.Any("error", fmt.Errorf("%w: %w", ErrDatabaseUnreachable, err)))
		}
		return
	}
	if f.dbDown.CompareAndSwap(true, false) {
		f.o.cfg.Logger.InfoContext(ctx, "outbox: forwarder reads the outbox again", slog.String(AttrOutboxTopic, f.o.cfg.Topic))
	}
}

// NewForwarder returns a Forwarder of the outbox configured by cfg. It
// touches no database until Run.
func (o *Outbox) NewForwarder(cfg ForwarderConfig) (*Forwarder, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid forwarder config: %w", err)
	}
	f := &Forwarder{o: o, cfg: cfg, failed: newFailedSet(maxFailedTracked), closed: make(chan struct{})}
	ack := cfg.AckDeadline
	sub, err := wmsql.NewSubscriber(batchBeginner{Beginner: cfg.DB, f: f}, wmsql.SubscriberConfig{
		ConsumerGroup:  o.cfg.ConsumerGroup,
		AckDeadline:    &ack,
		PollInterval:   cfg.PollInterval,
		ResendInterval: cfg.ResendInterval,
		RetryInterval:  cfg.RetryInterval,
		SchemaAdapter:  tolerantSchema{o.schema},
		OffsetsAdapter: o.offsets,
	}, cfg.WatermillLogger)
	if err != nil {
		return nil, fmt.Errorf("cannot create outbox subscriber: %w", err)
	}
	fwd, err := forwarder.NewForwarder(sub, &forwardPublisher{f: f, pub: cfg.Publisher}, cfg.WatermillLogger, forwarder.Config{
		ForwarderTopic: o.cfg.Topic,
		Middlewares:    []message.HandlerMiddleware{f.middleware},
		CloseTimeout:   cfg.CloseTimeout,
		// Envelopes that cannot be decoded never reach the forwarder's own
		// unwrapping: the middleware moves them to the dead-letter table.
		AckWhenCannotUnwrap: false,
	})
	if err != nil {
		_ = sub.Close()
		return nil, fmt.Errorf("cannot create forwarder: %w", err)
	}
	f.sub, f.fwd = sub, fwd
	return f, nil
}

// Run forwards messages until ctx is cancelled or Close is called, and
// deletes forwarded rows past the retention meanwhile. A database or broker
// that is unreachable does not end Run: reading and forwarding are retried
// until they succeed. A Forwarder runs once; start a new one to resume.
func (f *Forwarder) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-f.closed:
			cancel()
		case <-ctx.Done():
		}
	})
	if f.cfg.Retention > 0 {
		wg.Go(func() { f.cleanupLoop(ctx) })
	}
	if err := f.waitForDatabase(ctx); err != nil {
		cancel()
		wg.Wait()
		return nil // cancelled or closed while waiting: nothing ran
	}
	err := f.fwd.Run(ctx)
	cancel()
	wg.Wait()
	return err
}

// waitForDatabase writes the forwarder's starting position (the row that
// watermill-sql's Subscribe would insert) until it succeeds, so that a
// database unreachable at startup delays Run instead of ending it. It
// returns ctx's error if ctx ends first.
func (f *Forwarder) waitForDatabase(ctx context.Context) error {
	retry := f.cfg.RetryInterval
	if retry <= 0 {
		retry = time.Second
	}
	q := `INSERT INTO ` + f.o.tables.offsets + ` (consumer_group, offset_acked, last_processed_transaction_id) VALUES ($1, 0, '0') ON CONFLICT DO NOTHING`
	for {
		_, err := f.cfg.DB.ExecContext(ctx, q, f.o.cfg.ConsumerGroup)
		if err == nil {
			f.dbState(ctx, nil)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f.dbState(ctx, err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(retry):
		}
	}
}

// Running is closed once the forwarder reads the outbox.
func (f *Forwarder) Running() <-chan struct{} { return f.fwd.Running() }

// Close stops the forwarder, waiting up to CloseTimeout for the message
// being forwarded. Messages of an unfinished batch are forwarded again by
// the next forwarder (at-least-once, with their UUIDs).
func (f *Forwarder) Close() error {
	var err error
	f.closeOnce.Do(func() {
		close(f.closed)
		err = errors.Join(f.fwd.Close(), f.sub.Close())
	})
	return err
}

func (f *Forwarder) cleanupLoop(ctx context.Context) {
	t := time.NewTicker(f.cfg.CleanupInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := f.o.Cleanup(ctx, f.cfg.DB, f.cfg.Retention); err != nil && ctx.Err() == nil {
			f.o.cfg.Logger.WarnContext(ctx, "outbox: cleanup of forwarded rows failed; retrying at the next interval",
				slog.String(AttrOutboxTopic, f.o.cfg.Topic), slog.Any("error", err))
		}
	}
}
