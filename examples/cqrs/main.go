// Command cqrs runs one order through Watermill's CQRS component, fully
// instrumented, on an in-process Pub/Sub: PlaceOrder (command) -> OrderPlaced
// (event) -> ReserveStock (command) -> GetOrderStatus (query, request/reply).
// It prints the JSON log line of every handled message, the trace as a tree,
// the causation chain and the kind-aware Prometheus counters.
package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/components/requestreply"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

type (
	PlaceOrder     struct{ OrderID string }
	OrderPlaced    struct{ OrderID string }
	ReserveStock   struct{ OrderID string }
	GetOrderStatus struct{ OrderID string }
	OrderStatus    struct{ Status string }
)

func main() {
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx := context.Background()
	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, logger)
	defer pubSub.Close()

	// Telemetry: spans kept in memory for the tree below, metrics on a fresh
	// registry, JSON logs on stdout.
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))
	defer func() { _ = tp.Shutdown(ctx) }()
	prop := propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
	reg := prometheus.NewRegistry()
	metrics, err := promobs.New(reg)
	if err != nil {
		return err
	}
	opts := []watermillobs.Option{
		watermillobs.WithTracerProvider(tp),
		watermillobs.WithPropagators(prop),
		watermillobs.WithLogger(slog.New(slog.NewJSONHandler(os.Stdout, nil))),
	}

	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		return err
	}

	// Watermill's own CQRS configurations, untouched by observability.
	marshaler := cqrs.JSONMarshaler{GenerateName: cqrs.StructName}
	topic := func(name string) string { return "shop." + name }
	subscriber := func() (message.Subscriber, error) { return pubSub, nil }

	cbc := cqrs.CommandBusConfig{
		GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) { return topic(p.CommandName), nil },
		Marshaler:            marshaler,
	}
	ebc := cqrs.EventBusConfig{
		GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) { return topic(p.EventName), nil },
		Marshaler:            marshaler,
	}
	cpc := cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return topic(p.CommandName), nil
		},
		SubscriberConstructor: func(cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return subscriber()
		},
		Marshaler: marshaler,
	}
	epc := cqrs.EventProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.EventProcessorGenerateSubscribeTopicParams) (string, error) {
			return topic(p.EventName), nil
		},
		SubscriberConstructor: func(cqrs.EventProcessorSubscriberConstructorParams) (message.Subscriber, error) { return subscriber() },
		Marshaler:             marshaler,
	}
	rrc := requestreply.PubSubBackendConfig{
		Publisher:             pubSub,
		SubscriberConstructor: func(requestreply.PubSubBackendSubscribeParams) (message.Subscriber, error) { return subscriber() },
		GeneratePublishTopic: func(p requestreply.PubSubBackendPublishParams) (string, error) {
			return topic("reply." + string(p.OperationID)), nil
		},
		GenerateSubscribeTopic: func(p requestreply.PubSubBackendSubscribeParams) (string, error) {
			return topic("reply." + string(p.OperationID)), nil
		},
	}

	// The observability of the CQRS layer: four lines of this module.
	if err := watermillobs.Instrument(router, watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{metrics}}, opts...); err != nil {
		return err
	}
	pub := watermillobs.NewPublisher(pubSub, opts...)
	rrc.Publisher = pub // the replies' send spans
	cqrsLayer, err := cqrsbus.Wire(cqrsbus.WireConfig{Instrumentation: cqrsbus.Config{TracerProvider: tp, Propagator: prop},
		Publisher: pub, CommandBus: &cbc, EventBus: &ebc, CommandProcessor: &cpc, EventProcessor: &epc, RequestReply: &rrc})
	if err != nil {
		return err
	}
	commands, events := cqrsLayer.CommandBus(), cqrsLayer.EventBus()

	backend, err := requestreply.NewPubSubBackend[OrderStatus](rrc, requestreply.BackendPubsubJSONMarshaler[OrderStatus]{})
	if err != nil {
		return err
	}
	commandProcessor, err := cqrs.NewCommandProcessorWithConfig(router, cpc)
	if err != nil {
		return err
	}
	eventProcessor, err := cqrs.NewEventProcessorWithConfig(router, epc)
	if err != nil {
		return err
	}

	// The handlers: plain CQRS code that passes its context on.
	var mu sync.Mutex
	var chain []string
	note := func(ctx context.Context, handler string) {
		msg := cqrs.OriginalMessageFromCtx(ctx)
		mu.Lock()
		defer mu.Unlock()
		chain = append(chain, fmt.Sprintf("%-16s %-8s uuid=%s causation=%s", handler,
			msg.Metadata.Get(contract.MessageKindKey), msg.UUID[:8], short(msg.Metadata.Get(contract.CausationIDKey))))
	}
	done := make(chan OrderStatus, 1)
	err = commandProcessor.AddHandlers(
		cqrs.NewCommandHandler("place_order", func(ctx context.Context, cmd *PlaceOrder) error {
			note(ctx, "place_order")
			return events.Publish(ctx, &OrderPlaced{OrderID: cmd.OrderID})
		}),
		cqrs.NewCommandHandler("reserve_stock", func(ctx context.Context, cmd *ReserveStock) error {
			note(ctx, "reserve_stock")
			reply, err := requestreply.SendWithReply[OrderStatus](ctx, commands.Queries(), backend, &GetOrderStatus{OrderID: cmd.OrderID})
			if err != nil {
				return err
			}
			done <- reply.HandlerResult
			return reply.Error
		}),
		requestreply.NewCommandHandlerWithResult[GetOrderStatus, OrderStatus]("order_status", backend,
			func(ctx context.Context, q *GetOrderStatus) (OrderStatus, error) {
				note(ctx, "order_status")
				return OrderStatus{Status: "placed"}, nil
			}),
	)
	if err != nil {
		return err
	}
	err = eventProcessor.AddHandlers(cqrs.NewEventHandler("reserve_on_order", func(ctx context.Context, e *OrderPlaced) error {
		note(ctx, "reserve_on_order")
		return commands.Send(ctx, &ReserveStock{OrderID: e.OrderID})
	}))
	if err != nil {
		return err
	}
	go func() { _ = router.Run(ctx) }()
	defer router.Close()
	<-router.Running()

	// The entry point, as an HTTP handler would do it.
	reqCtx, entry := tp.Tracer("http").Start(ctx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
	reqCtx = hooks.WithCorrelationID(reqCtx, hooks.NewCorrelationID())
	if err := commands.Send(reqCtx, &PlaceOrder{OrderID: "42"}); err != nil {
		return err
	}
	entry.End()
	status := <-done
	_ = router.Close()

	fmt.Printf("\norder status: %s, correlation ID: %s\n", status.Status, hooks.CorrelationID(reqCtx))
	fmt.Println("\ncausation chain:")
	mu.Lock()
	for _, c := range chain {
		fmt.Println("  " + c)
	}
	mu.Unlock()
	fmt.Println("\ntrace", entry.SpanContext().TraceID())
	printTree(spans.Ended())
	fmt.Println("\ncqrs_message_total:")
	return printCounters(reg)
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	if id == "" {
		return "-"
	}
	return id
}

// printTree prints the spans as a tree by parent.
func printTree(spans []sdktrace.ReadOnlySpan) {
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	ids := map[trace.SpanID]bool{}
	for _, s := range spans {
		ids[s.SpanContext().SpanID()] = true
	}
	var roots []sdktrace.ReadOnlySpan
	for _, s := range spans {
		if p := s.Parent().SpanID(); p.IsValid() && ids[p] {
			children[p] = append(children[p], s)
		} else {
			roots = append(roots, s)
		}
	}
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		fmt.Printf("  %s%s\n", strings.Repeat("  ", depth), s.Name())
		kids := children[s.SpanContext().SpanID()]
		sort.Slice(kids, func(i, j int) bool { return kids[i].StartTime().Before(kids[j].StartTime()) })
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
}

func printCounters(g prometheus.Gatherer) error {
	mfs, err := g.Gather()
	if err != nil {
		return err
	}
	for _, mf := range mfs {
		if mf.GetName() != "cqrs_message_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			fmt.Printf("  {%s} %v\n", strings.Join(labels, ","), m.GetCounter().GetValue())
		}
	}
	return nil
}
