package watermillobs

import (
	"context"
	"log/slog"

	"go.opentelemetry.io/otel/trace"
)

// noopSpan stands in for a span the SDK failed to start.
var noopSpan = trace.SpanFromContext(context.Background())

// startSpan starts a span. A panic inside the tracing pipeline (a broken
// span processor or sampler) is logged and yields a non-recording span, so
// the message is processed as if uninstrumented.
func startSpan(ctx context.Context, tracer trace.Tracer, logger *slog.Logger, name string, opts ...trace.SpanStartOption) (spanCtx context.Context, span trace.Span) {
	defer func() {
		if v := recover(); v != nil {
			logInternalPanic(ctx, logger, "start span", v)
			spanCtx, span = ctx, noopSpan
		}
	}()
	return tracer.Start(ctx, name, opts...)
}

// endSpan ends span; a panic of a span processor or of a synchronous
// exporter is logged, never passed to the message.
func endSpan(ctx context.Context, span trace.Span, logger *slog.Logger) {
	defer func() {
		if v := recover(); v != nil {
			logInternalPanic(ctx, logger, "end span", v)
		}
	}()
	span.End()
}

func logInternalPanic(ctx context.Context, logger *slog.Logger, what string, v any) {
	if logger == nil {
		logger = slog.Default()
	}
	defer func() { _ = recover() }() // a broken log handler must not matter either
	logger.LogAttrs(ctx, slog.LevelError, "watermillobs: recovered panic in tracing pipeline",
		slog.String("during", what), slog.Any("panic", v))
}
