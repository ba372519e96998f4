package sagas_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// The order saga of the tests: OrderPlaced -> ReserveStock -> StockReserved
// -> ChargePayment -> PaymentCharged -> ShipOrder -> OrderShipped ->
// completed; or, when the payment never answers, the "payment" timeout ->
// ReleaseStock -> compensated.

type OrderPlaced struct {
	OrderID string
	Amount  int
}
type ReserveStock struct{ OrderID string }
type StockReserved struct{ OrderID string }
type ChargePayment struct {
	OrderID string
	Amount  int
}
type PaymentCharged struct{ OrderID string }
type ShipOrder struct{ OrderID string }
type OrderShipped struct{ OrderID string }
type ReleaseStock struct{ OrderID string }

// OrderState is the saga's state.
type OrderState struct {
	OrderID string
	Amount  int
}

const (
	sagaType = "OrderSaga"
	// slowPayment is an amount the payment service never answers, so that
	// the payment timeout fires.
	slowPayment     = 5000
	paymentDeadline = time.Minute
)

// orderSaga returns the definition; tests change its Step to inject
// failures.
func orderSaga() sagas.Definition[OrderState] {
	return sagas.Definition[OrderState]{
		Type: sagaType,
		Events: []sagas.EventBinding{
			sagas.StartOn(func(e *OrderPlaced) string { return e.OrderID }),
			sagas.On(func(e *StockReserved) string { return e.OrderID }),
			sagas.On(func(e *PaymentCharged) string { return e.OrderID }),
			sagas.On(func(e *OrderShipped) string { return e.OrderID }),
		},
		Step: orderStep,
	}
}

func orderStep(ctx context.Context, s OrderState, in sagas.Input) (sagas.Result[OrderState], error) {
	if in.Timeout != nil {
		return sagas.Result[OrderState]{State: s, Status: "stock_released",
			Commands: []any{&ReleaseStock{OrderID: s.OrderID}}, End: sagas.OutcomeCompensated}, nil
	}
	switch e := in.Event.(type) {
	case *OrderPlaced:
		s = OrderState{OrderID: e.OrderID, Amount: e.Amount}
		return sagas.Result[OrderState]{State: s, Status: "reserving_stock", Commands: []any{&ReserveStock{OrderID: e.OrderID}}}, nil
	case *StockReserved:
		return sagas.Result[OrderState]{State: s, Status: "awaiting_payment",
			Commands: []any{&ChargePayment{OrderID: s.OrderID, Amount: s.Amount}},
			Schedule: []sagas.ScheduleTimeout{{Name: "payment", After: paymentDeadline}}}, nil
	case *PaymentCharged:
		return sagas.Result[OrderState]{State: s, Status: "shipping", Commands: []any{&ShipOrder{OrderID: s.OrderID}}, Cancel: []string{"payment"}}, nil
	case *OrderShipped:
		return sagas.Result[OrderState]{State: s, Status: "shipped", End: sagas.OutcomeCompleted}, nil
	}
	return sagas.Result[OrderState]{}, errors.New("unexpected input")
}

// storeFactories are the stores the integration tests run on.
var storeFactories = map[string]func(t *testing.T) sagas.Store{
	"memory": func(*testing.T) sagas.Store { return sagas.NewMemoryStore() },
	"redis": func(t *testing.T) sagas.Store {
		client, prefix := testsvc.RedisPrefix(t)
		return newRedisStore(t, client, sagas.RedisStoreConfig{Prefix: prefix})
	},
}

// forEachStore runs test once per store.
func forEachStore(t *testing.T, test func(t *testing.T, newStore func(t *testing.T) sagas.Store)) {
	for name, f := range storeFactories {
		t.Run(name, func(t *testing.T) { test(t, f) })
	}
}

var marshaler = cqrs.JSONMarshaler{GenerateName: cqrs.StructName}

const eventsTopic = "events"

func commandTopic(name string) string { return "commands." + name }

// world is the services around the saga: a Pub/Sub, the stock, payment
// and shipping services (command handlers that answer with events) and a
// clock.
type world struct {
	t      *testing.T
	store  sagas.Store
	pubsub *gochannel.GoChannel
	events *cqrs.EventBus
	clock  *clock

	mu       sync.Mutex
	commands []*message.Message // handled commands, in order
}

func newWorld(t *testing.T, store sagas.Store) *world {
	t.Helper()
	w := &world{t: t, store: store, clock: &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}}
	w.pubsub = gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = w.pubsub.Close() })
	var err error
	w.events, err = cqrs.NewEventBusWithConfig(w.pubsub, cqrs.EventBusConfig{
		GeneratePublishTopic: func(cqrs.GenerateEventPublishTopicParams) (string, error) { return eventsTopic, nil },
		OnPublish: func(p cqrs.OnEventSendParams) error {
			// The services keep the conversation: the command's
			// correlation ID goes on the event.
			if id := hooks.CorrelationID(p.Message.Context()); id != "" {
				p.Message.Metadata.Set("correlation_id", id)
			}
			return nil
		},
		Marshaler: marshaler,
	})
	if err != nil {
		t.Fatal(err)
	}
	router := testsvc.NewRouter(t)
	proc, err := cqrs.NewCommandProcessorWithConfig(router, cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return commandTopic(p.CommandName), nil
		},
		SubscriberConstructor: func(cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return w.pubsub, nil
		},
		Marshaler: marshaler,
	})
	if err != nil {
		t.Fatal(err)
	}
	answer := func(reply func(id string) any) func(ctx context.Context, id string) error {
		return func(ctx context.Context, id string) error {
			msg := cqrs.OriginalMessageFromCtx(ctx)
			w.mu.Lock()
			w.commands = append(w.commands, msg.Copy())
			w.mu.Unlock()
			if reply == nil {
				return nil
			}
			ev := reply(id)
			if ev == nil {
				return nil
			}
			return w.events.Publish(hooks.WithCorrelationID(ctx, msg.Metadata.Get("correlation_id")), ev)
		}
	}
	reserve := answer(func(id string) any { return &StockReserved{OrderID: id} })
	charge := answer(func(id string) any { return &PaymentCharged{OrderID: id} })
	noAnswer := answer(nil)
	ship := answer(func(id string) any { return &OrderShipped{OrderID: id} })
	release := answer(nil)
	err = proc.AddHandlers(
		cqrs.NewCommandHandler("stock", func(ctx context.Context, c *ReserveStock) error { return reserve(ctx, c.OrderID) }),
		cqrs.NewCommandHandler("payment", func(ctx context.Context, c *ChargePayment) error {
			if c.Amount == slowPayment {
				return noAnswer(ctx, c.OrderID)
			}
			return charge(ctx, c.OrderID)
		}),
		cqrs.NewCommandHandler("shipping", func(ctx context.Context, c *ShipOrder) error { return ship(ctx, c.OrderID) }),
		cqrs.NewCommandHandler("release", func(ctx context.Context, c *ReleaseStock) error { return release(ctx, c.OrderID) }),
	)
	if err != nil {
		t.Fatal(err)
	}
	testsvc.RunRouter(t, router)
	return w
}

// config returns a manager configuration on w, fast for tests.
func (w *world) config() sagas.Config {
	return sagas.Config{
		Store:                w.store,
		Publisher:            w.pubsub,
		Marshaler:            marshaler,
		GenerateCommandTopic: commandTopic,
		Process:              "test-process",
		Logger:               slog.New(slog.DiscardHandler),
		Registry:             hooks.NewRegistry(),
		RetryBackoff:         time.Millisecond,
		MaxRetryBackoff:      5 * time.Millisecond,
		Now:                  w.clock.Now,
	}
}

// manager returns a manager of cfg running def. With subscribe, it
// consumes the events topic through an EventGroupProcessor on a router of
// its own, whose handler results are recorded in the returned results.
func (w *world) manager(cfg sagas.Config, def sagas.Definition[OrderState], subscribe bool) (*sagas.Manager, *results) {
	t := w.t
	t.Helper()
	m, err := sagas.NewManager(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := sagas.Register(m, def); err != nil {
		t.Fatal(err)
	}
	res := &results{}
	if !subscribe {
		return m, res
	}
	router := testsvc.NewRouter(t)
	router.AddMiddleware(res.middleware)
	proc, err := cqrs.NewEventGroupProcessorWithConfig(router, cqrs.EventGroupProcessorConfig{
		GenerateSubscribeTopic: func(cqrs.EventGroupProcessorGenerateSubscribeTopicParams) (string, error) {
			return eventsTopic, nil
		},
		SubscriberConstructor: func(cqrs.EventGroupProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return w.pubsub, nil
		},
		AckOnUnknownEvent: true,
		Marshaler:         marshaler,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.AddTo(proc); err != nil {
		t.Fatal(err)
	}
	testsvc.RunRouter(t, router)
	return m, res
}

// publish publishes event as a message with the given UUID and
// correlation ID.
func (w *world) publish(uuid, correlationID string, event any) {
	w.t.Helper()
	msg, err := marshaler.Marshal(event)
	if err != nil {
		w.t.Fatal(err)
	}
	msg.UUID = uuid
	msg.Metadata.Set("correlation_id", correlationID)
	if err := w.pubsub.Publish(eventsTopic, msg); err != nil {
		w.t.Fatal(err)
	}
}

// handled returns the commands handled of the given type.
func (w *world) handled(name string) []*message.Message {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*message.Message
	for _, m := range w.commands {
		if m.Metadata.Get("name") == name {
			out = append(out, m)
		}
	}
	return out
}

// waitFor waits until the instance satisfies ok, and returns it.
func (w *world) waitFor(id, what string, ok func(sagas.Instance) bool) sagas.Instance {
	w.t.Helper()
	var inst sagas.Instance
	eventually(w.t, what, func() bool {
		var found bool
		var err error
		inst, found, err = w.store.Load(context.Background(), sagaType, id)
		if err != nil {
			w.t.Fatal(err)
		}
		return found && ok(inst)
	})
	return inst
}

func (w *world) waitStatus(id, status string) sagas.Instance {
	w.t.Helper()
	return w.waitFor(id, "status "+status, func(i sagas.Instance) bool { return i.Status == status && len(i.Pending) == 0 })
}

func (w *world) waitHandled(name string, n int) []*message.Message {
	w.t.Helper()
	eventually(w.t, name+" handled", func() bool { return len(w.handled(name)) >= n })
	return w.handled(name)
}

// eventually polls cond until it holds or 10 s have passed.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// results records what the saga handlers returned per message UUID: nil
// (ack) or the error (nack).
type results struct {
	mu  sync.Mutex
	out map[string][]error
}

func (r *results) middleware(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		msgs, err := h(msg)
		r.mu.Lock()
		if r.out == nil {
			r.out = make(map[string][]error)
		}
		r.out[msg.UUID] = append(r.out[msg.UUID], err)
		r.mu.Unlock()
		return msgs, err
	}
}

func (r *results) of(uuid string) []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.out[uuid])
}

// acked reports whether the message's last handling returned nil.
func (r *results) acked(uuid string) bool {
	o := r.of(uuid)
	return len(o) > 0 && o[len(o)-1] == nil
}

// flakyPublisher fails while fail is set.
type flakyPublisher struct {
	message.Publisher
	fail atomic.Bool
}

func (p *flakyPublisher) Publish(topic string, msgs ...*message.Message) error {
	if p.fail.Load() {
		return errors.New("broker down")
	}
	return p.Publisher.Publish(topic, msgs...)
}

// logBuffer is a concurrency-safe buffer for a JSON slog handler.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// opRecorder records the hook operations it observes.
type opRecorder struct {
	mu  sync.Mutex
	ops []hooks.Operation
}

func (r *opRecorder) hook(ctx context.Context, op hooks.Operation, next hooks.Next) error {
	r.mu.Lock()
	r.ops = append(r.ops, op)
	r.mu.Unlock()
	return next(ctx)
}

func (r *opRecorder) named(name string) []hooks.Operation {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []hooks.Operation
	for _, op := range r.ops {
		if op.Name == name {
			out = append(out, op)
		}
	}
	return out
}
