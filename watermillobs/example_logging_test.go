package watermillobs_test

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/cqrs-ddd/watermill-observability/contract"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// exampleLogOptions drop the fields that change from run to run.
var exampleLogOptions = &slog.HandlerOptions{
	ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
		if len(groups) == 0 && (a.Key == slog.TimeKey || a.Key == "duration_ms") {
			return slog.Attr{}
		}
		return a
	},
}

// Logging writes one record per handled message.
func ExampleLogging() {
	logger := slog.New(slog.NewJSONHandler(os.Stdout, exampleLogOptions))
	// In a program: router.AddMiddleware(watermillobs.Logging(watermillobs.WithLogger(logger))).
	logging := watermillobs.Logging(watermillobs.WithLogger(logger))

	msg := message.NewMessage("msg-1", []byte(`{"order_id":"o-1"}`))
	msg.Metadata.Set(contract.NameKey, "PlaceOrder")
	msg.Metadata.Set(contract.MessageKindKey, contract.KindCommand)
	msg.Metadata.Set(contract.CorrelationIDKey, "corr-1")

	_, _ = logging(func(*message.Message) ([]*message.Message, error) {
		return nil, nil
	})(msg)
	_, _ = logging(func(*message.Message) ([]*message.Message, error) {
		return nil, errors.New("out of stock")
	})(msg)
	// Output:
	// {"level":"INFO","msg":"message handled","kind":"command","message_type":"PlaceOrder","outcome":"success","message_uuid":"msg-1","correlation_id":"corr-1"}
	// {"level":"ERROR","msg":"message handled","kind":"command","message_type":"PlaceOrder","outcome":"error","message_uuid":"msg-1","correlation_id":"corr-1","error":"out of stock"}
}

// NewLogHandler adds the trace and correlation of the context to any record
// logged with it, at the top level even inside a group.
func ExampleNewLogHandler() {
	logger := slog.New(watermillobs.NewLogHandler(slog.NewJSONHandler(os.Stdout, exampleLogOptions)))

	// A handler's context, as the tracing and correlation middlewares leave it.
	traceID, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	spanID, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	ctx := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: traceID, SpanID: spanID, TraceFlags: trace.FlagsSampled,
	}))
	ctx = hooks.WithCorrelationID(ctx, "corr-1")
	ctx = watermillobs.WithFields(ctx, slog.String("tenant", "acme"))

	logger.WithGroup("order").InfoContext(ctx, "stock reserved", "id", "o-1")
	logger.Info("no context, no fields")
	// Output:
	// {"level":"INFO","msg":"stock reserved","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","span_id":"00f067aa0ba902b7","correlation_id":"corr-1","tenant":"acme","order":{"id":"o-1"}}
	// {"level":"INFO","msg":"no context, no fields"}
}
