package watermillobs_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// One call instruments a router: correlation, tracing, logging and hook
// operations for every handler, and the metadata contract on every message
// the handlers return.
func ExampleInstrument() {
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	opts := []watermillobs.Option{
		watermillobs.WithTracerProvider(tp),
		watermillobs.WithPropagators(propagation.TraceContext{}),
		watermillobs.WithLogger(slog.New(slog.NewJSONHandler(io.Discard, nil))),
	}

	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	router, _ := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err := watermillobs.Instrument(router, watermillobs.InstrumentConfig{}, opts...); err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan *message.Message, 1)
	router.AddHandler("place_order", "orders", pubSub, "order_events", pubSub,
		func(msg *message.Message) ([]*message.Message, error) {
			return []*message.Message{message.NewMessage(watermill.NewUUID(), []byte(`{}`))}, nil
		})
	router.AddConsumerHandler("notify", "order_events", pubSub, func(msg *message.Message) error {
		done <- msg
		return nil
	})
	go func() { _ = router.Run(context.Background()) }()
	<-router.Running()

	// The entry point: publish with the request's correlation ID through an
	// instrumented publisher.
	pub := watermillobs.NewPublisher(pubSub, opts...)
	in := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	in.SetContext(hooks.WithCorrelationID(context.Background(), "order-4711"))
	_ = pub.Publish("orders", in)

	select {
	case out := <-done:
		fmt.Println("correlation:", out.Metadata.Get(contract.CorrelationIDKey))
		fmt.Println("caused by the first message:", out.Metadata.Get(contract.CausationIDKey) == in.UUID)
	case <-time.After(5 * time.Second):
		fmt.Println("timed out")
	}
	_ = router.Close()

	var names []string
	traces := map[string]bool{}
	for _, s := range spans.Ended() {
		names = append(names, s.Name())
		traces[s.SpanContext().TraceID().String()] = true
	}
	slices.Sort(names)
	fmt.Println(names)
	fmt.Println("traces:", len(traces))
	// Output:
	// correlation: order-4711
	// caused by the first message: true
	// [process order_events process orders send order_events send orders]
	// traces: 1
}

// A publisher used outside a router (an HTTP handler, a job) is wrapped
// once; every message then carries the correlation ID, the trace context and
// the publish time.
func ExampleNewPublisher() {
	tp := sdktrace.NewTracerProvider()
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	pub := watermillobs.NewPublisher(pubSub,
		watermillobs.WithTracerProvider(tp),
		watermillobs.WithPropagators(propagation.TraceContext{}))

	ctx, span := tp.Tracer("http").Start(context.Background(), "POST /orders")
	ctx = hooks.WithCorrelationID(ctx, "order-4711")
	msg := message.NewMessage(watermill.NewUUID(), []byte(`{}`))
	msg.SetContext(ctx)
	_ = pub.Publish("orders", msg)
	span.End()

	_, hasTrace := msg.Metadata[contract.TraceparentKey]
	_, hasTime := contract.PublishedAt(msg)
	fmt.Println(msg.Metadata.Get(contract.CorrelationIDKey), hasTrace, hasTime)
	// Output:
	// order-4711 true true
}

// The decorator form plugs into a router's publisher chain (Instrument
// adds it for you).
func ExamplePublisherDecorator() {
	router, _ := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	router.AddPublisherDecorators(watermillobs.PublisherDecorator())

	_, err := watermillobs.PublisherDecorator()(nil)
	fmt.Println(err)
	// Output:
	// watermillobs: nil publisher
}
