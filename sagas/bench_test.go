package sagas_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/sagas"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// BenchmarkSagaSteps measures saga steps on one process against the real
// Redis: each op runs one order saga through its four event steps
// (OrderPlaced, StockReserved, PaymentCharged, OrderShipped), each step a
// lock, a load, a save with its commands and history, the publishing of
// the commands and the release, on a RedisStore. The events arrive through
// an EventGroupProcessor on GoChannel, one at a time (the publisher waits
// for the ack), so the figure is the latency of a step; the commands go to
// a publisher that drops them. Steps per second = 4e9 / (ns/op).
//
//   - off: no instrumentation at all.
//   - default_profile: what README sets up: Instrument on the router, the
//     cqrsbus wiring, watermillobs.NewPublisher for the commands, and
//     InstallFrameworkHooks with its default profile (saga.run.*,
//     redis.lock.*, ...) on an always-sampling SDK provider whose batch
//     processor drops the spans.
func BenchmarkSagaSteps(b *testing.B) {
	for _, instrumented := range []bool{false, true} {
		name := "off"
		if instrumented {
			name = "default_profile"
		}
		b.Run(name, func(b *testing.B) { benchSagaSteps(b, instrumented) })
	}
}

func benchSagaSteps(b *testing.B, instrumented bool) {
	client, prefix := testsvc.RedisPrefix(b)
	store, err := sagas.NewRedisStore(client, sagas.RedisStoreConfig{Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	pubSub := gochannel.NewGoChannel(gochannel.Config{BlockPublishUntilSubscriberAck: true}, watermill.NopLogger{})
	b.Cleanup(func() { _ = pubSub.Close() })
	router := testsvc.NewRouter(b)

	reg := hooks.NewRegistry()
	var commands message.Publisher = discardPublisher{}
	egc := cqrs.EventGroupProcessorConfig{
		GenerateSubscribeTopic: func(cqrs.EventGroupProcessorGenerateSubscribeTopicParams) (string, error) {
			return eventsTopic, nil
		},
		SubscriberConstructor: func(cqrs.EventGroupProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return pubSub, nil
		},
		AckOnUnknownEvent: true,
		Marshaler:         marshaler,
	}
	if instrumented {
		tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
		b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
		if _, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{Registry: reg, TracerProvider: tp}); err != nil {
			b.Fatal(err)
		}
		opts := []watermillobs.Option{
			watermillobs.WithTracerProvider(tp),
			watermillobs.WithPropagators(w3c),
			watermillobs.WithHookRegistry(reg),
			watermillobs.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))),
		}
		if err := watermillobs.Instrument(router, watermillobs.InstrumentConfig{}, opts...); err != nil {
			b.Fatal(err)
		}
		commands = watermillobs.NewPublisher(commands, opts...)
		if _, err := cqrsbus.Wire(cqrsbus.WireConfig{
			Instrumentation:     cqrsbus.Config{TracerProvider: tp, Propagator: w3c, Registry: reg},
			EventGroupProcessor: &egc,
		}); err != nil {
			b.Fatal(err)
		}
	}
	group, err := cqrs.NewEventGroupProcessorWithConfig(router, egc)
	if err != nil {
		b.Fatal(err)
	}
	m, err := sagas.NewManager(sagas.Config{
		Store:                store,
		Publisher:            commands,
		Marshaler:            marshaler,
		GenerateCommandTopic: commandTopic,
		Logger:               slog.New(slog.DiscardHandler),
		Registry:             reg,
		Propagator:           w3c,
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := sagas.Register(m, flowSaga(time.Hour)); err != nil {
		b.Fatal(err)
	}
	if err := m.AddTo(group); err != nil {
		b.Fatal(err)
	}
	testsvc.RunRouter(b, router)

	publish := func(event any) {
		msg, err := marshaler.Marshal(event)
		if err != nil {
			b.Fatal(err)
		}
		if err := pubSub.Publish(eventsTopic, msg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("order-%d", i)
		publish(&OrderPlaced{OrderID: id, Amount: 100})
		publish(&StockReserved{OrderID: id})
		publish(&PaymentCharged{OrderID: id})
		publish(&OrderShipped{OrderID: id})
	}
	b.StopTimer()
	// Every saga ended: the benchmark measured whole sagas.
	inst, _, err := store.Load(context.Background(), sagaType, fmt.Sprintf("order-%d", b.N-1))
	if err != nil || inst.Outcome != sagas.OutcomeCompleted {
		b.Fatalf("last saga: %+v, %v; want completed", inst, err)
	}
}

// discardPublisher drops what it is given.
type discardPublisher struct{}

func (discardPublisher) Publish(string, ...*message.Message) error { return nil }
func (discardPublisher) Close() error                              { return nil }
