package readme

import (
	"context"
	stdsql "database/sql"
	"net/http"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/outbox"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// outboxSchema is README "Transactional outbox", the schema.
func outboxSchema(ctx context.Context, db *stdsql.DB, reg *hooks.Registry) (*outbox.Outbox, error) {
	// readme:begin outbox-schema
	ob, err := outbox.New(outbox.Config{Registry: reg}) // tables watermill_outbox, watermill_offsets_outbox, watermill_dead_outbox
	if err != nil {
		return nil, err
	}
	err = ob.CreateSchema(ctx, sql.BeginnerFromStdSQL(db)) // or run ob.SchemaSQL() in your migrations
	// readme:end
	return ob, err
}

// outboxSave is README "Transactional outbox", saving an event.
func outboxSave(ctx context.Context, db *stdsql.DB, ob *outbox.Outbox, id string, payload []byte) error {
	// readme:begin outbox-save
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback() // rolled back: nothing is ever forwarded
	if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id) VALUES ($1)`, id); err != nil {
		return err
	}
	event := message.NewMessage(watermill.NewUUID(), payload)
	event.SetContext(ctx)                                                      // the trace, baggage and correlation ID come from here
	if err := ob.TxPublisher(tx).Publish("orders.placed", event); err != nil { // pgx: ob.PgxTxPublisher(pgxTx)
		return err
	}
	return tx.Commit()
	// readme:end
}

// outboxForward is README "Transactional outbox", the forwarder.
func outboxForward(ctx context.Context, db *stdsql.DB, ob *outbox.Outbox, redisPublisher message.Publisher) error {
	// readme:begin outbox-forward
	fwd, err := ob.NewForwarder(outbox.ForwarderConfig{
		DB:        sql.BeginnerFromStdSQL(db),                // or sql.BeginnerFromPgx(pool)
		Publisher: watermillobs.NewPublisher(redisPublisher), // any message.Publisher
		// Trace: outbox.ForwardChild, // default ForwardLinked: the forward span links to the saved context
	})
	if err != nil {
		return err
	}
	return fwd.Run(ctx)
	// readme:end
}

// outboxBacklog is README "Transactional outbox", backlog, metrics and
// readiness.
func outboxBacklog(db *stdsql.DB, ob *outbox.Outbox, reg *hooks.Registry, promReg prometheus.Registerer) error {
	// readme:begin outbox-backlog
	mon := ob.NewMonitor(sql.BeginnerFromStdSQL(db), time.Minute) // Ready fails past a minute
	// b, err := mon.Backlog(ctx): b.Messages, b.HeldBack, b.Oldest, b.Age(time.Now())

	metrics, err := promobs.NewOutboxMetrics(promReg, promobs.OutboxMetricsConfig{})
	if err != nil {
		return err
	}
	if _, err := metrics.Register(reg); err != nil { // outbox_messages_saved_total, outbox_time_in_outbox_seconds, ...
		return err
	}
	gauges, err := promobs.NewOutboxBacklogCollector(promobs.OutboxBacklogConfig{}, mon)
	if err != nil {
		return err
	}
	promReg.MustRegister(gauges) // outbox_backlog_messages, outbox_backlog_held_back_messages, outbox_oldest_message_age_seconds

	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := mon.Ready(r.Context()); err != nil { // outbox.ErrBacklogTooOld
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	// readme:end
	return nil
}

// The snippets are compiled, never run: this keeps them referenced.
var _ = []any{outboxSchema, outboxSave, outboxForward, outboxBacklog}
