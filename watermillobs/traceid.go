package watermillobs

import (
	"context"

	"go.opentelemetry.io/otel/trace"
)

// TraceID returns the hex trace ID of the span in ctx, or "" if ctx has no
// valid span context.
func TraceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// SpanID returns the hex ID of the span in ctx, or "" if ctx has no valid
// span context.
func SpanID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasSpanID() {
		return ""
	}
	return sc.SpanID().String()
}
