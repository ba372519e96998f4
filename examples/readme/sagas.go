package readme

import (
	"context"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/sagas"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// The events, commands and state of README "Trace a saga across Redis
// Streams".
type (
	OrderPlaced struct {
		OrderID string
		Amount  int
	}
	StockReserved  struct{ OrderID string }
	PaymentCharged struct{ OrderID string }
	OrderShipped   struct{ OrderID string }
	ReserveStock   struct{ OrderID string }
	ChargePayment  struct {
		OrderID string
		Amount  int
	}
	ShipOrder    struct{ OrderID string }
	ReleaseStock struct{ OrderID string }
	Order        struct {
		ID     string
		Amount int
	}
)

// orderSaga is README "Trace a saga across Redis Streams", the definition.
func orderSaga() sagas.Definition[Order] {
	// readme:begin saga-definition
	return sagas.Definition[Order]{
		Type: "OrderSaga",
		Events: []sagas.EventBinding{
			sagas.StartOn(func(e *OrderPlaced) string { return e.OrderID }),
			sagas.On(func(e *StockReserved) string { return e.OrderID }),
			sagas.On(func(e *PaymentCharged) string { return e.OrderID }),
			sagas.On(func(e *OrderShipped) string { return e.OrderID }),
		},
		Step: func(ctx context.Context, o Order, in sagas.Input) (sagas.Result[Order], error) {
			if in.Timeout != nil { // "payment" fired: compensate
				return sagas.Result[Order]{State: o, Status: "stock_released",
					Commands: []any{&ReleaseStock{OrderID: o.ID}}, End: sagas.OutcomeCompensated}, nil
			}
			switch e := in.Event.(type) {
			case *OrderPlaced:
				return sagas.Result[Order]{State: Order{ID: e.OrderID, Amount: e.Amount}, Status: "reserving_stock",
					Commands: []any{&ReserveStock{OrderID: e.OrderID}}}, nil
			case *StockReserved:
				return sagas.Result[Order]{State: o, Status: "awaiting_payment",
					Commands: []any{&ChargePayment{OrderID: o.ID, Amount: o.Amount}},
					Schedule: []sagas.ScheduleTimeout{{Name: "payment", After: 15 * time.Minute}}}, nil
			case *PaymentCharged:
				return sagas.Result[Order]{State: o, Status: "shipping",
					Commands: []any{&ShipOrder{OrderID: o.ID}}, Cancel: []string{"payment"}}, nil
			case *OrderShipped:
				return sagas.Result[Order]{State: o, Status: "shipped", End: sagas.OutcomeCompleted}, nil
			}
			return sagas.Result[Order]{State: o}, nil // a late duplicate: nothing to do
		},
	}
	// readme:end
}

// runSagas is README "Trace a saga across Redis Streams", the wiring.
func runSagas(ctx context.Context, router *message.Router, rdb redis.UniversalClient, logger watermill.LoggerAdapter,
	commandsPublisher message.Publisher, marshaler cqrs.CommandEventMarshaler, reg *hooks.Registry) error {
	// readme:begin saga-wiring
	// Spans for saga.run.*, saga.recovery.* and redis.lock.* (the default profile).
	if _, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg}); err != nil {
		return err
	}
	store, err := sagas.NewRedisStore(rdb, sagas.RedisStoreConfig{})
	if err != nil {
		return err
	}
	manager, err := sagas.NewManager(sagas.Config{
		Store:                store,
		Publisher:            watermillobs.NewPublisher(commandsPublisher, watermillobs.WithHookRegistry(reg)),
		Marshaler:            marshaler,
		GenerateCommandTopic: func(name string) string { return "commands." + name },
		Registry:             reg,
	})
	if err != nil {
		return err
	}
	if err := sagas.Register(manager, orderSaga()); err != nil {
		return err
	}
	// One consumer group per saga type on the shared events stream: every
	// process running the saga shares its events.
	group, err := cqrs.NewEventGroupProcessorWithConfig(router, cqrs.EventGroupProcessorConfig{
		GenerateSubscribeTopic: func(cqrs.EventGroupProcessorGenerateSubscribeTopicParams) (string, error) {
			return "events", nil
		},
		SubscriberConstructor: func(p cqrs.EventGroupProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return redisstream.NewSubscriber(redisstream.SubscriberConfig{
				Client:          rdb,
				ConsumerGroup:   p.EventGroupName, // "OrderSaga"
				NackResendSleep: 100 * time.Millisecond,
			}, logger)
		},
		AckOnUnknownEvent: true,
		Marshaler:         marshaler,
	})
	if err != nil {
		return err
	}
	if err := manager.AddTo(group); err != nil {
		return err
	}
	go func() { _ = manager.RunRecovery(ctx) }() // timeouts, and what a dead process left

	// Metrics: a hook over the saga operations, gauges read at scrape time.
	sagaMetrics, err := promobs.NewSagaHook(prometheus.DefaultRegisterer)
	if err != nil {
		return err
	}
	reg.MustRegister(sagaMetrics, hooks.WithOperations(promobs.SagaOperations()...), hooks.WithPriority(10))
	active, err := promobs.NewSagaCollector(manager)
	if err != nil {
		return err
	}
	prometheus.MustRegister(active)
	// readme:end

	// History: every step of one saga, with the trace and span of each.
	steps, err := manager.History(ctx, "OrderSaga", "order-42")
	for _, s := range steps {
		slog.Info("step", "version", s.Version, "to", s.ToState, "process", s.Process, "trace_id", s.TraceID)
	}
	return err
}

// The snippets are compiled, never run: this keeps them referenced.
var _ = []any{orderSaga, runSagas}
