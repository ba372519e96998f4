package payloadtrace_test

import (
	"context"
	"fmt"

	"github.com/ThreeDotsLabs/watermill/message"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/watermillobs/payloadtrace"
)

// PayloadTracing records what a handler was asked to do on the message's
// span: here only allowlisted fields, with the customer ID hashed and the
// listed email redacted anyway because it is a default sensitive field.
func ExampleTracing() {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))

	payloads := payloadtrace.Tracing{
		IncludeFields: []string{"order_id", "customer_id", "email", "sku"},
		HashFields:    []string{"customer_id"},
	}
	// In a program: router.AddMiddleware(watermillobs.Tracing(...), payloads.Middleware).
	handler := payloads.Middleware(func(*message.Message) ([]*message.Message, error) {
		return nil, nil
	})

	// The tracing middleware would start this span.
	ctx, span := tp.Tracer("example").Start(context.Background(), "process orders")
	msg := message.NewMessage("msg-1", []byte(`{
		"order_id": "o-1",
		"customer_id": "c-42",
		"email": "ann@example.com",
		"items": [{"sku": "s-1", "price": 10}, {"sku": "s-2", "price": 5}]
	}`))
	msg.SetContext(ctx)
	_, _ = handler(msg)
	span.End()

	s := rec.Ended()[0]
	for _, kv := range s.Attributes() {
		fmt.Println(kv.Key, kv.Value.String())
	}
	for _, e := range s.Events() {
		fmt.Println(e.Name, e.Attributes[0].Value.AsString())
	}
	// Output:
	// cqrs.payload_present true
	// cqrs.payload_truncated false
	// cqrs.payload_size 149
	// cqrs.command_payload {"order_id":"o-1","customer_id":"sha256:8fb7893be928286e8d0617fa09ec51245e34b241ab02c9ad75356bf303a45053","email":"[REDACTED]","items":[{"sku":"s-1"},{"sku":"s-2"}]}
}
