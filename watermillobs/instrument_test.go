package watermillobs_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/payloadtrace"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// probeBackend records what a backend sees from its place in the chain.
type probeBackend struct {
	mu               sync.Mutex
	handlerSawSpan   bool
	handlerSawCorr   string
	publishSawTrace  string
	publishSawCorr   string
	publishSawCause  string
	publishedSpanCtx trace.SpanContext
}

func (p *probeBackend) HandlerMiddleware() message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			p.mu.Lock()
			p.handlerSawSpan = trace.SpanContextFromContext(msg.Context()).IsValid()
			p.handlerSawCorr = hooks.CorrelationID(msg.Context())
			p.mu.Unlock()
			return h(msg)
		}
	}
}

func (p *probeBackend) PublisherDecorator() message.PublisherDecorator {
	return func(pub message.Publisher) (message.Publisher, error) {
		return probePublisher{pub, p}, nil
	}
}

type probePublisher struct {
	message.Publisher
	p *probeBackend
}

func (pp probePublisher) Publish(topic string, msgs ...*message.Message) error {
	pp.p.mu.Lock()
	m := msgs[0]
	pp.p.publishSawTrace = m.Metadata.Get(contract.TraceparentKey)
	pp.p.publishSawCorr = m.Metadata.Get(contract.CorrelationIDKey)
	pp.p.publishSawCause = m.Metadata.Get(contract.CausationIDKey)
	pp.p.publishedSpanCtx = trace.SpanContextFromContext(m.Context())
	pp.p.mu.Unlock()
	return pp.Publisher.Publish(topic, msgs...)
}

func TestInstrument_nil_router(t *testing.T) {
	if err := watermillobs.Instrument(nil, watermillobs.InstrumentConfig{}); !errors.Is(err, watermillobs.ErrNilRouter) {
		t.Errorf("error = %v", err)
	}
}

func TestInstrument_recommended_set(t *testing.T) {
	rec, _, opts := newTracing(t)
	var logs loggingBuffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	reg := hooks.NewRegistry()
	var consumed []string
	var consumedMu sync.Mutex
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		consumedMu.Lock()
		consumed = append(consumed, op.Name)
		consumedMu.Unlock()
		return next(ctx)
	}), hooks.WithOperations("consumer.consume.*"))
	probe := &probeBackend{}

	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	err = watermillobs.Instrument(router, watermillobs.InstrumentConfig{
		Backends:       []watermillobs.Backend{probe, nil},
		PayloadTracing: &payloadtrace.Tracing{IncludeFields: []string{"order_id"}},
	}, append(opts,
		watermillobs.WithLogger(logger),
		watermillobs.WithHookRegistry(reg),
	)...)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	router.AddHandler("place_order", "orders", pubSub, "order_events", pubSub, func(msg *message.Message) ([]*message.Message, error) {
		out := message.NewMessage("out-1", []byte(`{}`))
		out.Metadata.Set(contract.NameKey, "OrderPlaced")
		return []*message.Message{out}, nil
	})
	router.AddConsumerHandler("audit", "order_events", pubSub, func(*message.Message) error {
		close(done)
		return nil
	})
	testsvc.RunRouter(t, router)

	in := message.NewMessage("in-1", []byte(`{"order_id":"o-1","email":"a@b.c"}`))
	in.Metadata.Set(contract.NameKey, "PlaceOrder")
	in.Metadata.Set(contract.MessageKindKey, contract.KindCommand)
	in.Metadata.Set(contract.CorrelationIDKey, "corr-77")
	if err := pubSub.Publish("orders", in); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the produced message was not consumed")
	}
	if err := router.Close(); err != nil {
		t.Fatal(err)
	}

	probe.mu.Lock()
	defer probe.mu.Unlock()
	if !probe.handlerSawSpan || probe.handlerSawCorr != "corr-77" {
		t.Errorf("backend middleware saw span %v, correlation %q: it must run inside tracing and correlation", probe.handlerSawSpan, probe.handlerSawCorr)
	}
	if probe.publishSawTrace == "" || probe.publishSawCorr != "corr-77" || probe.publishSawCause != "in-1" {
		t.Errorf("backend publisher saw traceparent %q, correlation %q, causation %q: it must run inside the tracing decorator",
			probe.publishSawTrace, probe.publishSawCorr, probe.publishSawCause)
	}
	send := spanByName(t, rec, "send order_events")
	if probe.publishedSpanCtx.SpanID() != send.SpanContext().SpanID() {
		t.Errorf("backend publisher does not see the send span")
	}

	process := spanByName(t, rec, "process orders")
	var payload string
	for _, e := range process.Events() {
		if e.Name == "cqrs.command_payload" {
			for _, a := range e.Attributes {
				if a.Key == "payload" {
					payload = a.Value.AsString()
				}
			}
		}
	}
	if payload != `{"order_id":"o-1"}` {
		t.Errorf("payload event = %q", payload)
	}

	consumedMu.Lock()
	if strings.Join(consumed, ",") != "consumer.consume.PlaceOrder,consumer.consume.OrderPlaced" {
		t.Errorf("consume operations = %q", consumed)
	}
	consumedMu.Unlock()

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d log lines, want one per handled message:\n%s", len(lines), logs.String())
	}
	var first map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"kind": "command", "message_type": "PlaceOrder", "outcome": "success",
		"correlation_id": "corr-77", "handler": "place_order", "topic": "orders",
		"trace_id": process.SpanContext().TraceID().String(),
	} {
		if first[k] != want {
			t.Errorf("log field %s = %v, want %v", k, first[k], want)
		}
	}
	if _, ok := first["duration_ms"].(float64); !ok {
		t.Errorf("duration_ms = %v, want a number", first["duration_ms"])
	}
}
