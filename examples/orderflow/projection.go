package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/projections"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// summaryName names the order-summary projection: its hook operations
// (projection.process.order_summary), its keys and its metrics label.
const summaryName = "order_summary"

// milestonesHash names the read model: one hash per order,
// "milestones/<order ID>", one field per milestone (its event type), so
// that a redelivered event writes the same field again and never moves an
// order back, and a query reads its order's milestones only (one hash for
// every order made each query read them all: the soak run saw the
// workers' heap, RSS and CPU grow with every order placed).
const milestonesHash = "milestones"

// milestonesOf names the hash of orderID's milestones.
func milestonesOf(orderID string) string { return milestonesHash + "/" + orderID }

// The order summaries the projection gives, furthest first.
var summaryOrder = []struct{ event, summary string }{
	{"OrderShipped", "shipped"},
	{"StockReleased", "stock released"},
	{"PaymentFailed", "payment failed"},
	{"PaymentCharged", "paid"},
	{"StockReserved", "stock reserved"},
	{"OrderPlaced", "placed"},
}

// summaryFinal tells whether a summary is one an order ends in.
func summaryFinal(s string) bool { return s == "shipped" || s == "stock released" }

// orderSummary is the order-summary projection: every event of an order
// marks a milestone of it in the read model, committed with the
// checkpoint.
func orderSummary() projections.Projection {
	return projections.NewProjection(summaryName, func(_ context.Context, ev projections.Event, b *projections.Batch) error {
		var e struct{ OrderID string }
		if err := json.Unmarshal(ev.Payload, &e); err != nil {
			return fmt.Errorf("decoding %s: %w", ev.Type(), err)
		}
		if e.OrderID == "" {
			return fmt.Errorf("%s without an order ID", ev.Type())
		}
		b.Set(milestonesOf(e.OrderID), ev.Type(), ev.Time().UTC().Format(time.RFC3339Nano))
		return nil
	})
}

// summaryOf returns the furthest of an order's milestones, "" when the
// projection has seen none of its events yet.
func summaryOf(milestones map[string]string) string {
	for _, s := range summaryOrder {
		if _, ok := milestones[s.event]; ok {
			return s.summary
		}
	}
	return ""
}

// summaryProjection is the order summary of a worker, wired as README
// "Projections on Redis Streams" says: on Redis, workers read the events
// stream themselves from checkpoints in Redis and share its partitions
// under leases; on GoChannel, an in-memory log fed from the events topic
// and an in-memory store.
type summaryProjection struct {
	worker *projections.Worker
	// feed appends the events topic to the in-memory log (GoChannel only).
	feed func(ctx context.Context)
}

// newSummaryProjection builds the projection's worker and registers its
// metrics: the processing hook and the lag gauges.
func (a *app) newSummaryProjection(ctx context.Context) (*summaryProjection, error) {
	sp := &summaryProjection{}
	cfg := projections.Config{
		Projection: orderSummary(),
		Streams:    []string{a.topics.events()},
		Partitions: 2,
		// Every event of an order carries the order's correlation ID: the
		// events of one order stay in one partition, in order.
		Key:        projections.MetadataKey(contract.CorrelationIDKey),
		Block:      200 * time.Millisecond,
		BatchSize:  50,
		Poison:     projections.PoisonDeadLetter,
		Hooks:      a.tel.reg,
		Propagator: a.tel.prop,
		Logger:     a.tel.logger,
		Member:     a.tel.process,
	}
	if client := a.br.redis; client != nil {
		store, err := projections.NewRedisStore(client, a.topics.prefix)
		if err != nil {
			return nil, err
		}
		cfg.Source, cfg.Store, cfg.Leaser = projections.NewRedisSource(client), store, store
	} else {
		log := projections.NewMemoryLog()
		feed, err := feedLog(ctx, a.br.gochannel, log, a.topics.events())
		if err != nil {
			return nil, err
		}
		sp.feed = feed
		cfg.Source, cfg.Store = log, projections.NewMemoryStore()
	}
	w, err := projections.NewWorker(cfg)
	if err != nil {
		return nil, err
	}
	sp.worker = w

	hook, err := promobs.NewProjectionHook(a.tel.prom)
	if err != nil {
		return nil, err
	}
	if _, err := a.tel.reg.Register(hook, hooks.WithOperations(promobs.ProjectionOperations()...), hooks.WithPriority(10)); err != nil {
		return nil, err
	}
	lag, err := promobs.NewProjectionCollector([]promobs.ProjectionSource{w})
	if err != nil {
		return nil, err
	}
	if err := a.tel.prom.Register(lag); err != nil {
		return nil, err
	}
	return sp, nil
}

// feedLog subscribes to topic on ps now, before the first order is placed
// (GoChannel keeps nothing for a later subscriber, so MemoryLog.Feed,
// which subscribes when it starts, could miss the first events), and
// returns the loop that appends what arrives to log until ctx is done.
func feedLog(ctx context.Context, ps *gochannel.GoChannel, log *projections.MemoryLog, topic string) (func(context.Context), error) {
	msgs, err := ps.Subscribe(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("cannot subscribe the projection to %s: %w", topic, err)
	}
	return func(ctx context.Context) {
		for {
			select {
			case <-ctx.Done():
				return
			case msg, ok := <-msgs:
				if !ok {
					return
				}
				log.Append(topic, msg)
				msg.Ack()
			}
		}
	}, nil
}

// run runs the feed (GoChannel) and the worker until ctx is done. The
// worker logs and retries transient errors itself; only a policy stop
// (a gap) ends it early, and that is logged here.
func (sp *summaryProjection) run(ctx context.Context, wg *sync.WaitGroup, logger *slog.Logger) {
	if sp.feed != nil {
		wg.Go(func() { sp.feed(ctx) })
	}
	wg.Go(func() {
		if err := sp.worker.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			logger.ErrorContext(ctx, "order summary projection stopped", "error", err)
		}
	})
}

// summary returns the projection's summary of orderID.
func (sp *summaryProjection) summary(ctx context.Context, orderID string) (string, error) {
	m, err := sp.worker.Hash(ctx, milestonesOf(orderID))
	if err != nil {
		return "", fmt.Errorf("cannot read the order summary: %w", err)
	}
	return summaryOf(m), nil
}
