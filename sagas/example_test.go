package sagas_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// CheckoutStarted starts a checkout saga.
type CheckoutStarted struct {
	CartID string
	Cents  int
}

// ChargeCard is the command the saga sends to the payment service.
type ChargeCard struct {
	CartID string
	Cents  int
}

// CardCharged is the payment service's answer.
type CardCharged struct{ CartID string }

// Checkout is the saga's state.
type Checkout struct {
	CartID string
	Cents  int
}

// checkoutSaga reads as a state machine: started -> awaiting_payment ->
// paid, or, when the card is not charged in time, payment_timed_out.
var checkoutSaga = sagas.Definition[Checkout]{
	Type: "CheckoutSaga",
	Events: []sagas.EventBinding{
		sagas.StartOn(func(e *CheckoutStarted) string { return e.CartID }),
		sagas.On(func(e *CardCharged) string { return e.CartID }),
	},
	Step: func(ctx context.Context, s Checkout, in sagas.Input) (sagas.Result[Checkout], error) {
		if in.Timeout != nil {
			return sagas.Result[Checkout]{State: s, Status: "payment_timed_out", End: sagas.OutcomeTimedOut}, nil
		}
		switch e := in.Event.(type) {
		case *CheckoutStarted:
			s = Checkout{CartID: e.CartID, Cents: e.Cents}
			return sagas.Result[Checkout]{
				State:    s,
				Status:   "awaiting_payment",
				Commands: []any{&ChargeCard{CartID: e.CartID, Cents: e.Cents}},
				Schedule: []sagas.ScheduleTimeout{{Name: "payment", After: 15 * time.Minute}},
			}, nil
		case *CardCharged:
			return sagas.Result[Checkout]{State: s, Status: "paid", Cancel: []string{"payment"}, End: sagas.OutcomeCompleted}, nil
		}
		return sagas.Result[Checkout]{}, fmt.Errorf("unexpected %s", in.EventType)
	},
}

// A checkout saga on the in-memory store and Pub/Sub: the saga's events
// arrive through an EventGroupProcessor (one group per saga type), its
// command reaches a command handler that answers with an event.
func ExampleRegister() {
	ctx := context.Background()
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	marshaler := cqrs.JSONMarshaler{GenerateName: cqrs.StructName}
	router, _ := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})

	manager, err := sagas.NewManager(sagas.Config{
		Store:                sagas.NewMemoryStore(),
		Publisher:            pubsub,
		Marshaler:            marshaler,
		GenerateCommandTopic: func(name string) string { return "commands." + name },
		Logger:               slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	if err := sagas.Register(manager, checkoutSaga); err != nil {
		panic(err)
	}

	// The saga's events: every event on one topic, consumed by one
	// handlers group per saga type (on Redis: one consumer group).
	events, _ := cqrs.NewEventGroupProcessorWithConfig(router, cqrs.EventGroupProcessorConfig{
		GenerateSubscribeTopic: func(cqrs.EventGroupProcessorGenerateSubscribeTopicParams) (string, error) {
			return "events", nil
		},
		SubscriberConstructor: func(cqrs.EventGroupProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return pubsub, nil
		},
		AckOnUnknownEvent: true, // events of other sagas share the topic
		Marshaler:         marshaler,
	})
	if err := manager.AddTo(events); err != nil {
		panic(err)
	}

	// The payment service.
	eventBus, _ := cqrs.NewEventBusWithConfig(pubsub, cqrs.EventBusConfig{
		GeneratePublishTopic: func(cqrs.GenerateEventPublishTopicParams) (string, error) { return "events", nil },
		Marshaler:            marshaler,
	})
	commands, _ := cqrs.NewCommandProcessorWithConfig(router, cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return "commands." + p.CommandName, nil
		},
		SubscriberConstructor: func(cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return pubsub, nil
		},
		Marshaler: marshaler,
	})
	_ = commands.AddHandlers(cqrs.NewCommandHandler("payment", func(ctx context.Context, c *ChargeCard) error {
		return eventBus.Publish(ctx, &CardCharged{CartID: c.CartID})
	}))

	go func() { _ = router.Run(ctx) }()
	defer func() { _ = router.Close() }()
	<-router.Running()

	if err := eventBus.Publish(ctx, &CheckoutStarted{CartID: "cart-1", Cents: 4200}); err != nil {
		panic(err)
	}

	// Wait for the end of the saga, then read what happened.
	var steps []sagas.StepRecord
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		steps, _ = manager.History(ctx, "CheckoutSaga", "cart-1")
		if len(steps) == 2 {
			break
		}
	}
	for _, s := range steps {
		fmt.Printf("%d %s %s: %q -> %q (%s)", s.Version, s.Trigger, s.EventType, s.FromState, s.ToState, s.Outcome)
		for _, c := range s.Commands {
			fmt.Printf(" sends %s", c.Type)
		}
		fmt.Println()
	}
	// Output:
	// 1 event CheckoutStarted: "" -> "awaiting_payment" (running) sends ChargeCard
	// 2 event CardCharged: "awaiting_payment" -> "paid" (completed)
}
