package main

import (
	"context"
	stdsql "database/sql"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/outbox"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// outboxTopic names the demo's outbox tables (watermill_orderflow, ...).
const outboxTopic = "orderflow"

// ordersTable is the business table the outbox rows commit with.
const ordersTable = "orderflow_orders"

// orderOutbox is README "Transactional outbox" in the orders service:
// OrderPlaced is saved in the transaction that inserts the order row, and
// a forwarder moves it to the broker.
type orderOutbox struct {
	db *stdsql.DB
	ob *outbox.Outbox
}

// openOutbox connects to PostgreSQL at dsn, creates the outbox tables and
// the orders table, and registers the outbox metrics.
func openOutbox(ctx context.Context, dsn string, tel *telemetry) (*orderOutbox, error) {
	db, err := stdsql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("cannot open POSTGRES_DSN: %w", err)
	}
	pingCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("cannot reach PostgreSQL (POSTGRES_DSN): %w", err)
	}
	ob, err := outbox.New(outbox.Config{Topic: outboxTopic, Registry: tel.reg, Propagator: tel.prop, Logger: tel.logger})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := ob.CreateSchema(ctx, sql.BeginnerFromStdSQL(db)); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("cannot create the outbox tables: %w", err)
	}
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+ordersTable+` (
		id text PRIMARY KEY, amount integer NOT NULL, created_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("cannot create the orders table: %w", err)
	}
	metrics, err := promobs.NewOutboxMetrics(tel.prom, promobs.OutboxMetricsConfig{})
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	if _, err := metrics.Register(tel.reg); err != nil {
		_ = db.Close()
		return nil, err
	}
	gauges, err := promobs.NewOutboxBacklogCollector(promobs.OutboxBacklogConfig{}, ob.NewMonitor(sql.BeginnerFromStdSQL(db), time.Minute))
	if err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := tel.prom.Register(gauges); err != nil {
		_ = db.Close()
		return nil, err
	}
	return &orderOutbox{db: db, ob: ob}, nil
}

// placeOrder inserts the order row and saves OrderPlaced for topic in one
// transaction. A PlaceOrder delivered again finds its row and saves
// nothing: the order is placed once.
func (o *orderOutbox) placeOrder(ctx context.Context, e *OrderPlaced, topic string) error {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }() // rolled back: nothing is ever forwarded
	res, err := tx.ExecContext(ctx, `INSERT INTO `+ordersTable+` (id, amount) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING`, e.OrderID, e.Amount)
	if err != nil {
		return fmt.Errorf("cannot insert order %s: %w", e.OrderID, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return nil // placed by an earlier delivery
	}
	event, err := marshaler.Marshal(e)
	if err != nil {
		return err
	}
	event.Metadata.Set(contract.MessageKindKey, contract.KindEvent)
	event.SetContext(ctx) // the trace, baggage and correlation ID come from here
	if err := o.ob.TxPublisher(tx).Publish(topic, event); err != nil {
		return err
	}
	return tx.Commit()
}

// forward runs the forwarder to pub until ctx is done.
func (o *orderOutbox) forward(ctx context.Context, tel *telemetry, pub *watermillobs.Publisher) (*outbox.Forwarder, error) {
	fwd, err := o.ob.NewForwarder(outbox.ForwarderConfig{
		DB:              sql.BeginnerFromStdSQL(o.db),
		Publisher:       pub, // the saved trace context is kept: consumers continue the transaction's trace
		PollInterval:    50 * time.Millisecond,
		WatermillLogger: tel.wmlog,
	})
	if err != nil {
		return nil, err
	}
	go func() {
		if err := fwd.Run(ctx); err != nil && ctx.Err() == nil {
			tel.logger.Error("outbox forwarder stopped", "error", err)
		}
	}()
	return fwd, nil
}

func (o *orderOutbox) close() error { return o.db.Close() }
