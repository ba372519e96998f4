package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"go.opentelemetry.io/otel/propagation"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

// DefaultTopic is the outbox topic used when Config.Topic is not set.
const DefaultTopic = "outbox"

// DefaultSubscribeBatchSize is the number of rows the forwarder reads in one
// SQL transaction when Config.SubscribeBatchSize is not set; it is
// watermill-sql's default.
const DefaultSubscribeBatchSize = 100

// Config configures an [Outbox]: which tables hold it and how its operations
// are observed. The zero value is valid.
type Config struct {
	// Topic names the outbox: its rows live in table watermill_{Topic}, the
	// forwarder's position in watermill_offsets_{Topic}, and envelopes that
	// cannot be decoded in watermill_dead_{Topic} (see [ValidateTopic]). It is
	// the forwarder topic of Watermill's forwarder, not a destination: every
	// message, whatever its destination topic, goes into this one table.
	// If not set, [DefaultTopic] is used.
	Topic string

	// Schema qualifies the table names with a PostgreSQL schema (see
	// [ValidateSchema]). If not set, the names are unqualified and found
	// through each connection's search_path.
	Schema string

	// ConsumerGroup is the forwarder's row in the offsets table. Forwarders
	// of one outbox share it, so that each message is forwarded by one of
	// them. If not set, "" is used, as watermill-sql does.
	ConsumerGroup string

	// SubscribeBatchSize is the number of rows the forwarder reads in one
	// SQL transaction; the forwarder's position is saved once per such
	// batch, so a larger batch means more redelivery after a crash. If not
	// set, [DefaultSubscribeBatchSize] is used.
	SubscribeBatchSize int

	// Registry runs the hook operations of this outbox (outbox.save_events,
	// outbox.process_batch, ...). If not set, hooks.FromContext of each
	// operation's context is used.
	Registry *hooks.Registry

	// Propagator writes and reads the trace context and baggage in the
	// saved messages' metadata. If not set, the global propagator is used,
	// as by contract.PropagationConfig.
	Propagator propagation.TextMapPropagator

	// Logger receives the problems the outbox reports (an envelope that
	// cannot be decoded, a hook that panicked). If not set, slog.Default
	// is used.
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.SubscribeBatchSize == 0 {
		c.SubscribeBatchSize = DefaultSubscribeBatchSize
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports every problem of c, joined.
func (c Config) Validate() (err error) {
	if e := ValidateTopic(c.Topic); e != nil {
		err = errors.Join(err, e)
	}
	if e := ValidateSchema(c.Schema); e != nil {
		err = errors.Join(err, e)
	}
	if c.SubscribeBatchSize < 0 {
		err = errors.Join(err, fmt.Errorf("negative SubscribeBatchSize %d", c.SubscribeBatchSize))
	}
	if len(c.ConsumerGroup) > 255 {
		err = errors.Join(err, errors.New("ConsumerGroup is longer than 255 bytes, the column's size"))
	}
	return err
}

// Outbox is one transactional outbox on PostgreSQL: the tables that hold it,
// and the instrumentation of saving into it and forwarding from it. Create
// it with [New]; its methods are safe for concurrent use.
type Outbox struct {
	cfg     Config
	tables  tables
	schema  wmsql.DefaultPostgreSQLSchema
	offsets wmsql.DefaultPostgreSQLOffsetsAdapter
	prop    *contract.Propagation
}

// New returns the Outbox configured by cfg. It checks the table names but
// touches no database: create the tables with [Outbox.CreateSchema] or the
// SQL of [Outbox.SchemaSQL].
func New(cfg Config) (*Outbox, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	t := newTables(cfg.Schema, cfg.Topic)
	return &Outbox{
		cfg:    cfg,
		tables: t,
		schema: wmsql.DefaultPostgreSQLSchema{
			GenerateMessagesTableName: func(string) string { return t.messages },
			SubscribeBatchSize:        cfg.SubscribeBatchSize,
		},
		offsets: wmsql.DefaultPostgreSQLOffsetsAdapter{
			GenerateMessagesOffsetsTableName: func(string) string { return t.offsets },
		},
		prop: contract.NewPropagation(contract.PropagationConfig{Propagator: cfg.Propagator, Logger: cfg.Logger}),
	}, nil
}

// Topic returns the outbox topic, which names its tables.
func (o *Outbox) Topic() string { return o.cfg.Topic }

// registry returns the configured registry, else the one of ctx.
func (o *Outbox) registry(ctx context.Context) *hooks.Registry {
	if o.cfg.Registry != nil {
		return o.cfg.Registry
	}
	return hooks.FromContext(ctx)
}

// hookPanicked logs a hook that panicked around one of the outbox's
// operations; the operation itself ran as if unobserved.
func (o *Outbox) hookPanicked(ctx context.Context, e *hooks.HookPanicError) {
	panics.Report(ctx, o.cfg.Logger, "outbox: hook panicked; operation ran without hooks", e.Value,
		slog.String("hook", e.Hook), slog.String("operation", e.Operation))
}
