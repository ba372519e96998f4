package watermillobs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

func handle(t *testing.T, mw message.HandlerMiddleware, msg *message.Message, h message.HandlerFunc) ([]*message.Message, error) {
	t.Helper()
	return mw(h)(msg)
}

func TestTracing_child_of_producer(t *testing.T) {
	rec, tp, opts := newTracing(t)
	producerCtx, producer := startSpan(tp, "send orders")
	msg := message.NewMessage("m-1", []byte(`{"id":1}`))
	inject(producerCtx, msg)
	producer.End()
	msg.SetContext(context.Background()) // as after crossing a broker

	var handlerSpan trace.SpanContext
	_, err := handle(t, watermillobs.Tracing(watermillobs.TracingConfig{}, opts...), msg, func(m *message.Message) ([]*message.Message, error) {
		handlerSpan = trace.SpanContextFromContext(m.Context())
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := spanByName(t, rec, "process")
	if s.SpanKind() != trace.SpanKindConsumer {
		t.Errorf("kind = %v", s.SpanKind())
	}
	if s.Parent().SpanID() != producer.SpanContext().SpanID() || s.SpanContext().TraceID() != producer.SpanContext().TraceID() {
		t.Errorf("process span is not a child of the producer span")
	}
	if handlerSpan.SpanID() != s.SpanContext().SpanID() {
		t.Errorf("handler context does not carry the process span")
	}
	if v, _ := spanAttr(s, "messaging.message.id"); v.AsString() != "m-1" {
		t.Errorf("messaging.message.id = %q", v.AsString())
	}
	if v, _ := spanAttr(s, "messaging.message.conversation_id"); v.AsString() != msg.Metadata.Get("correlation_id") {
		t.Errorf("conversation_id = %q", v.AsString())
	}
	if s.Status().Code != codes.Unset {
		t.Errorf("status = %v on success", s.Status())
	}
}

func TestTracing_links(t *testing.T) {
	tests := []struct {
		name      string
		config    watermillobs.TracingConfig
		age       time.Duration
		wantChild bool
	}{
		{"child by default", watermillobs.TracingConfig{}, time.Hour, true},
		{"link only", watermillobs.TracingConfig{LinkOnly: true}, 0, false},
		{"link after age, young message", watermillobs.TracingConfig{LinkAfter: time.Minute}, time.Second, true},
		{"link after age, old message", watermillobs.TracingConfig{LinkAfter: time.Minute}, time.Hour, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, tp, opts := newTracing(t)
			producerCtx, producer := startSpan(tp, "send")
			msg := message.NewMessage("m", nil)
			msg.Metadata.Set(contract.PublishedAtKey, time.Now().Add(-tt.age).UTC().Format(time.RFC3339Nano))
			inject(producerCtx, msg)
			producer.End()
			msg.SetContext(context.Background())

			_, _ = handle(t, watermillobs.Tracing(tt.config, opts...), msg, func(*message.Message) ([]*message.Message, error) { return nil, nil })
			s := spanByName(t, rec, "process")
			isChild := s.Parent().SpanID() == producer.SpanContext().SpanID()
			if isChild != tt.wantChild {
				t.Fatalf("child of producer = %v, want %v", isChild, tt.wantChild)
			}
			if !tt.wantChild {
				if s.Parent().IsValid() || s.SpanContext().TraceID() == producer.SpanContext().TraceID() {
					t.Errorf("linked span is not a new root")
				}
				if len(s.Links()) != 1 || s.Links()[0].SpanContext.SpanID() != producer.SpanContext().SpanID() {
					t.Errorf("links = %v, want one link to the producer", s.Links())
				}
			}
		})
	}
}

type codedError struct{}

func (codedError) Error() string { return "stock reservation failed" }

func TestTracing_error_and_panic(t *testing.T) {
	t.Run("error", func(t *testing.T) {
		rec, _, opts := newTracing(t)
		wantErr := codedError{}
		_, err := handle(t, watermillobs.Tracing(watermillobs.TracingConfig{}, opts...), message.NewMessage("m", nil), func(*message.Message) ([]*message.Message, error) {
			return nil, wantErr
		})
		if !errors.Is(err, wantErr) {
			t.Fatalf("error = %v, want it unchanged", err)
		}
		s := spanByName(t, rec, "process")
		if s.Status().Code != codes.Error || s.Status().Description != "stock reservation failed" {
			t.Errorf("status = %+v", s.Status())
		}
		if v, ok := spanAttr(s, "error.type"); !ok || !strings.Contains(v.AsString(), "codedError") {
			t.Errorf("error.type = %q", v.AsString())
		}
	})
	t.Run("panic", func(t *testing.T) {
		rec, _, opts := newTracing(t)
		defer func() {
			if v := recover(); v != "handler exploded" {
				t.Errorf("recovered %v, want the handler's panic value", v)
			}
			s := spanByName(t, rec, "process")
			if s.Status().Code != codes.Error {
				t.Errorf("status = %+v", s.Status())
			}
			if v, _ := spanAttr(s, "error.type"); v.AsString() != "panic" {
				t.Errorf("error.type = %q", v.AsString())
			}
		}()
		_, _ = handle(t, watermillobs.Tracing(watermillobs.TracingConfig{}, opts...), message.NewMessage("m", nil), func(*message.Message) ([]*message.Message, error) {
			panic("handler exploded")
		})
		t.Error("panic swallowed")
	})
}

// Through a real router: topic, handler name and messaging.system come from
// the router's context.
func TestTracing_router_attributes(t *testing.T) {
	rec, _, opts := newTracing(t)
	pubSub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		t.Fatal(err)
	}
	router.AddMiddleware(watermillobs.Tracing(watermillobs.TracingConfig{ConsumerGroup: "billing"}, opts...))
	done := make(chan struct{})
	router.AddConsumerHandler("bill_order", "orders", pubSub, func(*message.Message) error {
		close(done)
		return nil
	})
	testsvc.RunRouter(t, router)
	if err := pubSub.Publish("orders", message.NewMessage("m-7", nil)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not run")
	}
	_ = router.Close()
	s := spanByName(t, rec, "process orders")
	for key, want := range map[string]string{
		"messaging.system":              "gochannel",
		"messaging.destination.name":    "orders",
		"messaging.operation.name":      "process",
		"messaging.operation.type":      "process",
		"messaging.consumer.group.name": "billing",
		"watermill.handler.name":        "bill_order",
		"messaging.message.id":          "m-7",
	} {
		if v, _ := spanAttr(s, attributeKey(key)); v.AsString() != want {
			t.Errorf("%s = %q, want %q", key, v.AsString(), want)
		}
	}
}
