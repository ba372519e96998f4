package cqrsbus_test

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/cqrsbus"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// transport is the Pub/Sub a service runs on.
type transport struct {
	pub message.Publisher
	// sub returns the subscriber of a handler (a consumer group per
	// handler on Redis).
	sub func(t testing.TB, handler string) message.Subscriber
	// prefix makes topic names unique.
	prefix string
}

func goChannelTransport(t testing.TB) transport {
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubsub.Close() })
	return transport{
		pub: pubsub,
		sub: func(testing.TB, string) message.Subscriber { return pubsub },
	}
}

// serviceOptions change the service under test.
type serviceOptions struct {
	// outer middlewares go before (outside) watermillobs' ones.
	outer             []message.HandlerMiddleware
	ackOnUnknownEvent bool
	userOnHandle      cqrs.CommandProcessorOnHandleFn
}

// service is one process: an instrumented router, instrumented buses and
// processors, and in-memory telemetry.
type service struct {
	tr       transport
	router   *message.Router
	commands *cqrsbus.CommandBus
	events   *cqrsbus.EventBus
	cmdProc  *cqrs.CommandProcessor
	evtProc  *cqrs.EventProcessor
	group    *cqrs.EventGroupProcessor
	obs      *cqrsbus.Instrumentation

	tp      *sdktrace.TracerProvider
	spans   *tracetest.SpanRecorder
	metrics *prometheus.Registry
	logs    *logBuffer
	ops     *opRecorder
}

func (s *service) topic(name string) string { return s.tr.prefix + name }

func newService(t testing.TB, tr transport, o serviceOptions) *service {
	t.Helper()
	s := &service{tr: tr, logs: &logBuffer{}}
	s.tp, s.spans = newTracing(t)
	var reg *hooks.Registry
	reg, s.ops = newOpRecorder(t)
	s.metrics = prometheus.NewPedanticRegistry()
	m, err := promobs.New(s.metrics)
	if err != nil {
		t.Fatal(err)
	}
	wopts := []watermillobs.Option{
		watermillobs.WithTracerProvider(s.tp),
		watermillobs.WithPropagators(propagator()),
		watermillobs.WithLogger(s.logs.logger()),
		watermillobs.WithHookRegistry(hooks.NewRegistry()),
	}
	s.obs = cqrsbus.New(cqrsbus.Config{
		TracerProvider: s.tp, Propagator: propagator(), Registry: reg, Logger: s.logs.logger(),
	})

	s.router = testsvc.NewRouter(t)
	s.router.AddMiddleware(o.outer...)
	if err := watermillobs.Instrument(s.router, watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{m}}, wopts...); err != nil {
		t.Fatal(err)
	}
	pub := watermillobs.NewPublisher(tr.pub, wopts...)

	cbc := cqrs.CommandBusConfig{
		GeneratePublishTopic: func(p cqrs.CommandBusGeneratePublishTopicParams) (string, error) {
			return s.topic("commands." + p.CommandName), nil
		},
		Marshaler: marshaler,
	}
	s.obs.InstrumentCommandBusConfig(&cbc)
	cb, err := cqrs.NewCommandBusWithConfig(pub, cbc)
	if err != nil {
		t.Fatal(err)
	}
	if s.commands, err = cqrsbus.NewCommandBus(cb, cqrsbus.CommandBusConfig{Marshaler: marshaler, Registry: reg}); err != nil {
		t.Fatal(err)
	}
	ebc := cqrs.EventBusConfig{
		GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) {
			return s.topic("events." + p.EventName), nil
		},
		Marshaler: marshaler,
	}
	s.obs.InstrumentEventBusConfig(&ebc)
	eb, err := cqrs.NewEventBusWithConfig(pub, ebc)
	if err != nil {
		t.Fatal(err)
	}
	if s.events, err = cqrsbus.NewEventBus(eb, cqrsbus.EventBusConfig{Marshaler: marshaler, Registry: reg}); err != nil {
		t.Fatal(err)
	}

	cpc := cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			return s.topic("commands." + p.CommandName), nil
		},
		SubscriberConstructor: func(p cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return tr.sub(t, p.HandlerName), nil
		},
		OnHandle:  o.userOnHandle,
		Marshaler: marshaler,
	}
	s.obs.InstrumentCommandProcessorConfig(&cpc)
	if s.cmdProc, err = cqrs.NewCommandProcessorWithConfig(s.router, cpc); err != nil {
		t.Fatal(err)
	}
	epc := cqrs.EventProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.EventProcessorGenerateSubscribeTopicParams) (string, error) {
			return s.topic("events." + p.EventName), nil
		},
		SubscriberConstructor: func(p cqrs.EventProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return tr.sub(t, p.HandlerName), nil
		},
		AckOnUnknownEvent: o.ackOnUnknownEvent,
		Marshaler:         marshaler,
	}
	s.obs.InstrumentEventProcessorConfig(&epc)
	if s.evtProc, err = cqrs.NewEventProcessorWithConfig(s.router, epc); err != nil {
		t.Fatal(err)
	}
	gpc := cqrs.EventGroupProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.EventGroupProcessorGenerateSubscribeTopicParams) (string, error) {
			// Every group of these tests follows OrderPlaced.
			return s.topic("events.OrderPlaced"), nil
		},
		SubscriberConstructor: func(p cqrs.EventGroupProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return tr.sub(t, "group_"+p.EventGroupName), nil
		},
		AckOnUnknownEvent: o.ackOnUnknownEvent,
		Marshaler:         marshaler,
	}
	s.obs.InstrumentEventGroupProcessorConfig(&gpc)
	if s.group, err = cqrs.NewEventGroupProcessorWithConfig(s.router, gpc); err != nil {
		t.Fatal(err)
	}
	return s
}

// handledTotal returns cqrs_message_total for the labels.
func (s *service) handledTotal(t testing.TB, kind, typ, outcome string) float64 {
	t.Helper()
	mfs, err := s.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "cqrs_message_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["message_type"] == typ && labels["outcome"] == outcome {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// kindTotal sums cqrs_message_total over the series of kind.
func (s *service) kindTotal(t testing.TB, kind string) float64 {
	t.Helper()
	mfs, err := s.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "cqrs_message_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == kind {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

func (s *service) lint(t testing.TB) {
	t.Helper()
	problems, err := testutil.GatherAndLint(s.metrics)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric lint: %s: %s", p.Metric, p.Text)
	}
}
