package promobs_test

import (
	"context"
	"fmt"
	"log"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// A router whose handlers and publishers are measured. With the rest of
// watermillobs, pass the Metrics to watermillobs.Instrument through
// watermillobs.InstrumentConfig.Backends instead of adding its middleware and decorator
// by hand; that also gives the observations trace-ID exemplars.
func Example() {
	reg := prometheus.NewRegistry()
	metrics, err := promobs.New(reg)
	if err != nil {
		log.Fatal(err)
	}

	logger := watermill.NopLogger{}
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, logger)
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		log.Fatal(err)
	}
	router.AddMiddleware(metrics.HandlerMiddleware())
	router.AddPublisherDecorators(metrics.PublisherDecorator())

	handled := make(chan struct{})
	router.AddConsumerHandler("order_projector", "orders", pubSub, func(msg *message.Message) error {
		close(handled)
		return nil
	})
	go func() { _ = router.Run(context.Background()) }()
	<-router.Running()

	msg := message.NewMessage(watermill.NewUUID(), []byte(`{"order_id":"42"}`))
	msg.Metadata.Set("name", "OrderPlaced")
	msg.Metadata.Set("message_kind", "event")
	if err := pubSub.Publish("orders", msg); err != nil {
		log.Fatal(err)
	}
	<-handled
	_ = router.Close() // waits for the handler, and so for its observation

	printSeries(reg, "cqrs_message_total", "watermill_messages_consumed_total")
	// Output:
	// cqrs_message_total{kind="event",message_type="OrderPlaced",outcome="success"} 1
	// watermill_messages_consumed_total{handler="order_projector",outcome="success",topic="orders"} 1
}

func ExampleMetrics_DecoratePublisher() {
	reg := prometheus.NewRegistry()
	metrics, err := promobs.New(reg, promobs.WithNamespace("shop"))
	if err != nil {
		log.Fatal(err)
	}
	pub := metrics.DecoratePublisher(gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{}))

	err = pub.Publish("orders",
		message.NewMessage(watermill.NewUUID(), nil),
		message.NewMessage(watermill.NewUUID(), nil),
	)
	if err != nil {
		log.Fatal(err)
	}

	printSeries(reg, "shop_watermill_messages_published_total")
	// Output:
	// shop_watermill_messages_published_total{outcome="success",topic="orders"} 2
}

// printSeries prints the counters of the named families, one series a line.
func printSeries(g prometheus.Gatherer, names ...string) {
	mfs, err := g.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs {
		for _, name := range names {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := make([]string, 0, len(m.GetLabel()))
				for _, lp := range m.GetLabel() {
					labels = append(labels, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
				}
				fmt.Printf("%s{%s} %v\n", name, strings.Join(labels, ","), m.GetCounter().GetValue())
			}
		}
	}
}

// Exemplars are thinned out per series: with an interval of a minute, two
// sampled messages published a moment apart leave the first one's trace ID
// on the counter, which still counts both.
func ExampleWithExemplarInterval() {
	reg := prometheus.NewRegistry()
	metrics, err := promobs.New(reg, promobs.WithExemplarInterval(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	pub := metrics.DecoratePublisher(gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{}))

	for _, id := range []string{"4bf92f3577b34da6a3ce929d0e0e4736", "0af7651916cd43dd8448eb211c80319c"} {
		tid, _ := trace.TraceIDFromHex(id)
		span := trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    tid,
			SpanID:     trace.SpanID{1},
			TraceFlags: trace.FlagsSampled,
		})
		msg := message.NewMessage(watermill.NewUUID(), nil)
		msg.SetContext(trace.ContextWithSpanContext(context.Background(), span))
		if err := pub.Publish("orders", msg); err != nil {
			log.Fatal(err)
		}
	}

	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "watermill_messages_published_total" {
			c := mf.GetMetric()[0].GetCounter()
			ex := c.GetExemplar().GetLabel()[0]
			fmt.Printf("%v messages, exemplar %s=%s\n", c.GetValue(), ex.GetName(), ex.GetValue())
		}
	}
	// Output:
	// 2 messages, exemplar trace_id=4bf92f3577b34da6a3ce929d0e0e4736
}
