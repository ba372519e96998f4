package cqrsbus_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// Example wires a command bus, an event bus and their processors on one
// instrumented router: a command handler publishes an event, and the event
// handler sees the conversation of the request that started it all.
func Example() {
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, logger)
	defer pubSub.Close()

	// Hook operations: print the name of every one (an audit trail, say).
	reg := hooks.NewRegistry()
	var mu sync.Mutex
	var ops []string
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		mu.Lock()
		ops = append(ops, op.Name)
		mu.Unlock()
		return next(ctx)
	}))

	// 1. The router: transport spans, correlation, logs (and, with
	// InstrumentConfig.Backends, Prometheus and Sentry) for every CQRS handler.
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		panic(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := watermillobs.Instrument(router, watermillobs.InstrumentConfig{}, watermillobs.WithLogger(quiet)); err != nil {
		panic(err)
	}
	pub := watermillobs.NewPublisher(pubSub) // send spans and the metadata contract

	// 2. Watermill's own CQRS configurations.
	marshaler := cqrs.JSONMarshaler{GenerateName: cqrs.StructName}
	busConfig := cqrs.CommandBusConfig{
		GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) {
			return "commands." + p.CommandName, nil
		},
		Marshaler: marshaler,
	}
	eventBusConfig := cqrs.EventBusConfig{
		GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) {
			return "events." + p.EventName, nil
		},
		Marshaler: marshaler,
	}
	commandProcessorConfig := cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return "commands." + p.CommandName, nil
		},
		SubscriberConstructor: func(cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return pubSub, nil
		},
		Marshaler: marshaler,
	}
	eventProcessorConfig := cqrs.EventProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.EventProcessorGenerateSubscribeTopicParams) (string, error) {
			return "events." + p.EventName, nil
		},
		SubscriberConstructor: func(cqrs.EventProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return pubSub, nil
		},
		Marshaler: marshaler,
	}

	// 3. One call instruments them all and builds the buses.
	cqrsLayer, err := cqrsbus.Wire(cqrsbus.WireConfig{
		Instrumentation:  cqrsbus.Config{Registry: reg},
		Publisher:        pub,
		CommandBus:       &busConfig,
		EventBus:         &eventBusConfig,
		CommandProcessor: &commandProcessorConfig,
		EventProcessor:   &eventProcessorConfig,
	})
	if err != nil {
		panic(err)
	}
	commands, events := cqrsLayer.CommandBus(), cqrsLayer.EventBus()

	// 4. Handlers: nothing observability-specific in them.
	commandProcessor, err := cqrs.NewCommandProcessorWithConfig(router, commandProcessorConfig)
	if err != nil {
		panic(err)
	}
	eventProcessor, err := cqrs.NewEventProcessorWithConfig(router, eventProcessorConfig)
	if err != nil {
		panic(err)
	}
	var placeOrderUUID string
	done := make(chan struct{})
	err = commandProcessor.AddHandlers(cqrs.NewCommandHandler("place_order", func(ctx context.Context, cmd *PlaceOrder) error {
		placeOrderUUID = cqrs.OriginalMessageFromCtx(ctx).UUID
		return events.Publish(ctx, &OrderPlaced{OrderID: cmd.OrderID})
	}))
	if err != nil {
		panic(err)
	}
	err = eventProcessor.AddHandlers(cqrs.NewEventHandler("notify_customer", func(ctx context.Context, e *OrderPlaced) error {
		msg := cqrs.OriginalMessageFromCtx(ctx)
		fmt.Println("kind:", msg.Metadata.Get(contract.MessageKindKey))
		fmt.Println("correlation:", hooks.CorrelationID(ctx))
		fmt.Println("caused by PlaceOrder:", msg.Metadata.Get(contract.CausationIDKey) == placeOrderUUID)
		close(done)
		return nil
	}))
	if err != nil {
		panic(err)
	}
	go func() { _ = router.Run(context.Background()) }()
	defer router.Close()
	<-router.Running()

	// 5. The entry point: a request with its correlation ID.
	ctx := hooks.WithCorrelationID(context.Background(), "req-42")
	if err := commands.Send(ctx, &PlaceOrder{OrderID: "42"}); err != nil {
		panic(err)
	}
	<-done

	mu.Lock()
	for _, op := range ops {
		fmt.Println("operation:", op)
	}
	mu.Unlock()
	// Output:
	// kind: event
	// correlation: req-42
	// caused by PlaceOrder: true
	// operation: command.send.PlaceOrder
	// operation: command.handle.PlaceOrder
	// operation: event.publish.OrderPlaced
	// operation: event.dispatch.OrderPlaced
	// operation: event.handler.OrderPlaced.notify_customer
}

// ExampleInstrumentation_OnSend chains the instrumentation in front of an
// OnSend function the configuration already had: that function still runs,
// once, and sees the stamped metadata.
func ExampleInstrumentation_OnSend() {
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	defer pubSub.Close()
	config := cqrs.CommandBusConfig{
		GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) {
			return p.CommandName, nil
		},
		Marshaler: cqrs.JSONMarshaler{GenerateName: cqrs.StructName},
		OnSend: func(p cqrs.CommandBusOnSendParams) error { // the application's own hook
			md := p.Message.Metadata
			fmt.Println("kind:", md.Get(contract.MessageKindKey))
			fmt.Println("name:", md.Get(contract.NameKey))
			fmt.Println("correlation:", md.Get(contract.CorrelationIDKey))
			fmt.Println("causation:", md.Get(contract.CausationIDKey))
			return nil
		},
	}
	cqrsbus.New(cqrsbus.Config{}).InstrumentCommandBusConfig(&config)
	bus, err := cqrs.NewCommandBusWithConfig(pubSub, config)
	if err != nil {
		panic(err)
	}

	// As inside a handler of message "msg-7" of conversation "req-42".
	ctx := hooks.WithCausationID(hooks.WithCorrelationID(context.Background(), "req-42"), "msg-7")
	if err := bus.Send(ctx, &PlaceOrder{OrderID: "42"}); err != nil {
		panic(err)
	}
	// Output:
	// kind: command
	// name: PlaceOrder
	// correlation: req-42
	// causation: msg-7
}
