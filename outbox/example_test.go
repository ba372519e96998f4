package outbox_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log"
	"net/http"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	wmsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/outbox"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// The wiring of an outbox: schema, transactional publisher, forwarder to
// Redis Streams, metrics and a readiness probe. It needs PostgreSQL and
// Redis, so it is compiled but not run.
func Example() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://app@localhost:5432/shop")
	if err != nil {
		log.Fatal(err)
	}
	reg := hooks.NewRegistry()
	if _, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg}); err != nil {
		log.Fatal(err)
	}
	metrics, err := promobs.NewOutboxMetrics(prometheus.DefaultRegisterer, promobs.OutboxMetricsConfig{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := metrics.Register(reg); err != nil {
		log.Fatal(err)
	}

	ob, err := outbox.New(outbox.Config{Registry: reg})
	if err != nil {
		log.Fatal(err)
	}
	// Once, at startup or from a migration: never inside a business
	// transaction.
	if err := ob.CreateSchema(ctx, wmsql.BeginnerFromStdSQL(db)); err != nil {
		log.Fatal(err)
	}

	// The business change and its event, in one transaction.
	placeOrder := func(ctx context.Context, orderID string) error {
		tx, err := db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.ExecContext(ctx, `INSERT INTO orders (id) VALUES ($1)`, orderID); err != nil {
			return err
		}
		event := message.NewMessage(watermill.NewUUID(), []byte(`{"order_id":"`+orderID+`"}`))
		event.SetContext(ctx) // trace, baggage and correlation come from here
		if err := ob.TxPublisher(tx).Publish("orders.placed", event); err != nil {
			return err
		}
		return tx.Commit()
	}
	_ = placeOrder

	// The forwarder: from the outbox table to Redis Streams.
	redisPub, err := redisstream.NewPublisher(redisstream.PublisherConfig{
		Client: redis.NewClient(&redis.Options{Addr: "localhost:6379"}),
	}, watermill.NopLogger{})
	if err != nil {
		log.Fatal(err)
	}
	fwd, err := ob.NewForwarder(outbox.ForwarderConfig{
		DB:        wmsql.BeginnerFromStdSQL(db),
		Publisher: watermillobs.NewPublisher(redisPub),
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() {
		if err := fwd.Run(ctx); err != nil {
			log.Print(err)
		}
	}()

	// Backlog gauges and a readiness probe.
	mon := ob.NewMonitor(wmsql.BeginnerFromStdSQL(db), time.Minute)
	gauges, err := promobs.NewOutboxBacklogCollector(promobs.OutboxBacklogConfig{}, mon)
	if err != nil {
		log.Fatal(err)
	}
	prometheus.MustRegister(gauges)
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := mon.Ready(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
}

// Table names are checked before any SQL runs: they become PostgreSQL
// identifiers, cut at 63 bytes, and watermill-sql splices them into
// queries.
func ExampleValidateTopic() {
	for _, topic := range []string{"orders", "shop.orders-v2", "orders; DROP TABLE x", "a_topic_name_that_is_far_too_long_for_the_offsets_table"} {
		err := outbox.ValidateTopic(topic)
		fmt.Println(topic, "->", err == nil, errors.Is(err, outbox.ErrInvalidTopic))
	}
	// Output:
	// orders -> true false
	// shop.orders-v2 -> true false
	// orders; DROP TABLE x -> false true
	// a_topic_name_that_is_far_too_long_for_the_offsets_table -> false true
}
