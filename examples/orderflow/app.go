package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/sagas"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/sentryobs"
)

// The roles of a process.
const (
	roleAll    = "all"
	roleAPI    = "api"
	roleWorker = "worker"
)

// marshaler names every message by its struct name ("OrderPlaced").
var marshaler = cqrs.JSONMarshaler{GenerateName: cqrs.StructName}

// app is one process of the order system: a router instrumented as README
// "Instrument a router" and "Instrument CQRS" say, the buses and
// processors wired by cqrsbus, and the handlers of its role.
type app struct {
	cfg    config
	tel    *telemetry
	br     *broker
	topics topics

	router   *message.Router
	commands *cqrsbus.CommandBus
	events   *cqrsbus.EventBus
	backend  requestreply.Backend[OrderStatus]
	manager  *sagas.Manager     // nil in the api
	summary  *summaryProjection // nil in the api
	outbox   *orderOutbox       // nil without POSTGRES_DSN
	effects  effectLog

	// failedOnce remembers the ChargePayment commands whose first attempt
	// the scripted gateway failed.
	failedOnce sync.Map
}

func (a *app) hasAPI() bool    { return a.cfg.role != roleWorker }
func (a *app) hasWorker() bool { return a.cfg.role != roleAPI }

// newApp builds the router, the CQRS layer and the handlers of the role.
func newApp(ctx context.Context, cfg config, tel *telemetry, br *broker, ob *orderOutbox) (*app, error) {
	a := &app{cfg: cfg, tel: tel, br: br, topics: topics{cfg.prefix}, outbox: ob, effects: &memoryEffects{}}
	if br.redis != nil {
		a.effects = redisEffects{client: br.redis, prefix: cfg.prefix}
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, tel.wmlog)
	if err != nil {
		return nil, err
	}
	a.router = router

	// Step 2 of "Instrument a router": correlation, process spans, one
	// "message handled" line per message, the Prometheus metrics, the
	// consume hooks.
	backends := []watermillobs.Backend{tel.metrics}
	if tel.sentry {
		backends = append(backends, sentryobs.New(sentryobs.WithLogger(tel.logger)))
	}
	if err := watermillobs.Instrument(router, watermillobs.InstrumentConfig{
		Backends: backends,
	}, tel.opts...); err != nil {
		return nil, err
	}

	// Watermill's own CQRS configurations.
	t := a.topics
	cbc := cqrs.CommandBusConfig{
		GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) {
			return t.command(p.CommandName), nil
		},
		Marshaler: marshaler,
		Logger:    tel.wmlog,
	}
	ebc := cqrs.EventBusConfig{
		// One topic for every event: the saga's handlers group reads one.
		GeneratePublishTopic: func(cqrs.GenerateEventPublishTopicParams) (string, error) { return t.events(), nil },
		Marshaler:            marshaler,
		Logger:               tel.wmlog,
	}
	cpc := cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return t.command(p.CommandName), nil
		},
		SubscriberConstructor: func(p cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return br.subscriber(p.HandlerName)
		},
		Marshaler: marshaler,
		Logger:    tel.wmlog,
	}
	egc := cqrs.EventGroupProcessorConfig{
		GenerateSubscribeTopic: func(cqrs.EventGroupProcessorGenerateSubscribeTopicParams) (string, error) {
			return t.events(), nil
		},
		SubscriberConstructor: func(p cqrs.EventGroupProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return br.subscriber(p.EventGroupName) // "OrderSaga": one consumer group per saga type
		},
		AckOnUnknownEvent: true, // StockReleased shares the topic
		Marshaler:         marshaler,
		Logger:            tel.wmlog,
	}
	var replies replySubscribers
	replyTimeout := 10 * time.Second
	rrc := requestreply.PubSubBackendConfig{
		SubscriberConstructor: func(p requestreply.PubSubBackendSubscribeParams) (message.Subscriber, error) {
			sub, err := br.replySubscriber()
			if err != nil {
				return nil, err
			}
			// The reply's receive span and conversation (README "Instrument
			// CQRS", notes).
			wrapped := watermillobs.NewSubscriber(sub, tel.opts...)
			replies.add(string(p.OperationID), wrapped)
			return wrapped, nil
		},
		GeneratePublishTopic: func(p requestreply.PubSubBackendPublishParams) (string, error) {
			return t.reply(string(p.OperationID)), nil
		},
		GenerateSubscribeTopic: func(p requestreply.PubSubBackendSubscribeParams) (string, error) {
			return t.reply(string(p.OperationID)), nil
		},
		OnListenForReplyFinished: func(_ context.Context, p requestreply.PubSubBackendSubscribeParams) {
			replies.done(string(p.OperationID))
		},
		ListenForReplyTimeout: &replyTimeout,
		Logger:                tel.wmlog,
	}

	// Step 3: the publisher the buses (and the replies) use, then cqrsbus.
	pub := watermillobs.NewPublisher(tel.metrics.DecoratePublisher(br.publisher), tel.opts...)
	rrc.Publisher = pub
	wire := cqrsbus.WireConfig{
		Instrumentation:  cqrsbus.Config{TracerProvider: tel.tp, Propagator: tel.prop, Registry: tel.reg, Logger: tel.logger},
		Publisher:        pub,
		CommandBus:       &cbc,
		EventBus:         &ebc,
		CommandProcessor: &cpc,
		RequestReply:     &rrc,
	}
	if a.hasWorker() {
		wire.EventGroupProcessor = &egc
	}
	layer, err := cqrsbus.Wire(wire)
	if err != nil {
		return nil, err
	}
	a.commands, a.events = layer.CommandBus(), layer.EventBus()
	backend, err := requestreply.NewPubSubBackend[OrderStatus](rrc, requestreply.BackendPubsubJSONMarshaler[OrderStatus]{})
	if err != nil {
		return nil, err
	}
	a.backend = backend

	commandProcessor, err := cqrs.NewCommandProcessorWithConfig(router, cpc)
	if err != nil {
		return nil, err
	}
	if a.hasAPI() {
		if err := commandProcessor.AddHandlers(a.apiHandlers()...); err != nil {
			return nil, err
		}
	}
	if a.hasWorker() {
		if err := commandProcessor.AddHandlers(a.workerHandlers()...); err != nil {
			return nil, err
		}
		group, err := cqrs.NewEventGroupProcessorWithConfig(router, egc)
		if err != nil {
			return nil, err
		}
		if err := a.addSaga(ctx, pub, group); err != nil {
			return nil, err
		}
		if a.summary, err = a.newSummaryProjection(ctx); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// addSaga wires the order saga as README "Trace a saga across Redis
// Streams" does: its manager on the store of the broker, its handlers group
// on the events topic, its metrics.
func (a *app) addSaga(ctx context.Context, pub message.Publisher, group *cqrs.EventGroupProcessor) error {
	manager, err := sagas.NewManager(sagas.Config{
		Store:                a.br.store,
		Publisher:            pub,
		Marshaler:            marshaler,
		GenerateCommandTopic: a.topics.command,
		Process:              a.tel.process,
		Logger:               a.tel.logger,
		Registry:             a.tel.reg,
		Propagator:           a.tel.prop,
		RecoveryInterval:     200 * time.Millisecond,
	})
	if err != nil {
		return err
	}
	if err := sagas.Register(manager, orderSaga(a.cfg.paymentTimeout)); err != nil {
		return err
	}
	if err := manager.AddTo(group); err != nil {
		return err
	}
	sagaMetrics, err := promobs.NewSagaHook(a.tel.prom)
	if err != nil {
		return err
	}
	if _, err := a.tel.reg.Register(sagaMetrics, hooks.WithOperations(promobs.SagaOperations()...), hooks.WithPriority(10)); err != nil {
		return err
	}
	active, err := promobs.NewSagaCollector(manager)
	if err != nil {
		return err
	}
	if err := a.tel.prom.Register(active); err != nil {
		return err
	}
	a.manager = manager
	return nil
}

// apiHandlers are the orders service: PlaceOrder saves the order and
// publishes OrderPlaced, through the outbox when there is one.
func (a *app) apiHandlers() []cqrs.CommandHandler {
	return []cqrs.CommandHandler{
		cqrs.NewCommandHandler("orders", func(ctx context.Context, c *PlaceOrder) error {
			e := &OrderPlaced{OrderID: c.OrderID, Amount: c.Amount, Card: c.Card}
			if a.outbox != nil {
				return a.outbox.placeOrder(ctx, e, a.topics.events())
			}
			return a.events.Publish(ctx, e)
		}),
	}
}

// GatewayUnavailableError is the scripted transient failure of the
// payment gateway: the command is nacked and redelivered. Its type names
// the failure on the span (error.type).
type GatewayUnavailableError struct{ OrderID string }

func (e *GatewayUnavailableError) Error() string {
	return "charging order " + e.OrderID + ": payment gateway unavailable"
}

// workerHandlers are the stock, payment and shipping services and the
// order-status query. Each service records its effect in the effect log,
// once per command UUID, then answers: a command delivered again is
// answered again without a second effect.
func (a *app) workerHandlers() []cqrs.CommandHandler {
	return []cqrs.CommandHandler{
		cqrs.NewCommandHandler("stock", func(ctx context.Context, c *ReserveStock) error {
			if err := a.effect(ctx, effectReserve, c.OrderID); err != nil {
				return err
			}
			return a.events.Publish(ctx, &StockReserved{OrderID: c.OrderID})
		}),
		cqrs.NewCommandHandler("payment", func(ctx context.Context, c *ChargePayment) error {
			switch c.Card {
			case cardUnresponsive:
				return nil // the answer never comes: the saga's timeout compensates
			case cardDeclined:
				uuid := cqrs.OriginalMessageFromCtx(ctx).UUID
				if _, failed := a.failedOnce.LoadOrStore(uuid, true); !failed {
					return &GatewayUnavailableError{OrderID: c.OrderID}
				}
				a.failedOnce.Delete(uuid)
				return a.events.Publish(ctx, &PaymentFailed{OrderID: c.OrderID, Reason: "card declined"})
			}
			if err := a.effect(ctx, effectCharge, c.OrderID); err != nil {
				return err
			}
			return a.events.Publish(ctx, &PaymentCharged{OrderID: c.OrderID})
		}),
		cqrs.NewCommandHandler("shipping", func(ctx context.Context, c *ShipOrder) error {
			if err := a.effect(ctx, effectShip, c.OrderID); err != nil {
				return err
			}
			return a.events.Publish(ctx, &OrderShipped{OrderID: c.OrderID})
		}),
		cqrs.NewCommandHandler("release", func(ctx context.Context, c *ReleaseStock) error {
			if err := a.effect(ctx, effectRelease, c.OrderID); err != nil {
				return err
			}
			return a.events.Publish(ctx, &StockReleased{OrderID: c.OrderID})
		}),
		requestreply.NewCommandHandlerWithResult[GetOrderStatus, OrderStatus]("order_status", a.backend,
			func(ctx context.Context, q *GetOrderStatus) (OrderStatus, error) {
				status, err := statusOf(ctx, a.br.store, q.OrderID)
				if err != nil {
					return status, err
				}
				status.Summary, err = a.summary.summary(ctx, q.OrderID)
				return status, err
			}),
	}
}

// effect records the effect of the command being handled on orderID in
// the effect log; applied before, it is not applied again.
func (a *app) effect(ctx context.Context, kind, orderID string) error {
	uuid := cqrs.OriginalMessageFromCtx(ctx).UUID
	if _, err := a.effects.apply(ctx, kind, orderID, uuid, a.tel.process); err != nil {
		return fmt.Errorf("cannot record %s of order %s: %w", kind, orderID, err)
	}
	return nil
}

// statusOf reads an order's status from the saga store.
func statusOf(ctx context.Context, store sagas.Store, orderID string) (OrderStatus, error) {
	inst, found, err := store.Load(ctx, sagaType, orderID)
	if err != nil {
		return OrderStatus{}, err
	}
	if !found {
		return OrderStatus{OrderID: orderID, Status: "unknown"}, nil
	}
	return OrderStatus{OrderID: orderID, Status: inst.Status, Outcome: inst.Outcome}, nil
}

// run runs the router (and the saga recovery worker and the order-summary
// projection) until ctx is done.
func (a *app) run(ctx context.Context) (wait func() error, err error) {
	runErr := make(chan error, 1)
	go func() { runErr <- a.router.Run(ctx) }()
	var workers sync.WaitGroup
	if a.manager != nil {
		workers.Go(func() { _ = a.manager.RunRecovery(ctx) }) // timeouts, and what a dead process left
	}
	if a.summary != nil {
		a.summary.run(ctx, &workers, a.tel.logger)
	}
	select {
	case <-a.router.Running():
	case err := <-runErr:
		return nil, fmt.Errorf("router stopped before running: %w", err)
	}
	return func() error {
		err := <-runErr
		workers.Wait()
		return err
	}, nil
}
