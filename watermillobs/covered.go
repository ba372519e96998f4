package watermillobs

import (
	"context"

	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// coveredKey marks, in the context a hook operation runs with, that a
// transport span (send or process) already stands for the operation, so
// that the span hook does not open a second span for the same message hop.
// Other hooks (metrics, audit, rate limits) still run.
type coveredKey struct{}

// coverage names the operation and the span that covers it. Keying on the
// span as well keeps the mark from applying to another hop whose context
// happens to inherit it (in-process pub/subs pass contexts along).
type coverage struct {
	op   string
	span trace.SpanID
}

// withCoverage returns ctx marked as covering the operation op by the span
// active in ctx, or ctx unchanged when no local span is active.
func withCoverage(ctx context.Context, op string) context.Context {
	span, ok := localSpan(ctx)
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, coveredKey{}, coverage{op: op, span: span})
}

// localSpan returns the ID of the span active in ctx when it is valid and
// started in this process: the span that can cover an operation.
func localSpan(ctx context.Context) (trace.SpanID, bool) {
	sc := trace.SpanContextFromContext(ctx)
	return sc.SpanID(), sc.IsValid() && !sc.IsRemote()
}

// observedBesidesSpanHook reports whether an operation of the family prefix,
// run in ctx, would be observed by more than span hooks ([NewSpanHook]).
// When a local span is active, withCoverage will mark the operation covered
// and a span hook would pass it through, so the caller need not build it
// unless another hook is enabled for the family.
func observedBesidesSpanHook(ctx context.Context, reg *hooks.Registry, prefix string) bool {
	if !reg.EnabledPrefix(prefix) {
		return false
	}
	if _, ok := localSpan(ctx); !ok {
		return true
	}
	return reg.EnabledPrefixBesides(prefix, isSpanHook)
}

// isSpanHook reports whether h is a span hook of [NewSpanHook], which
// passes covered operations through.
func isSpanHook(h hooks.Hook) bool {
	_, ok := h.(*spanHook)
	return ok
}

// covered reports whether a transport span already covers op in ctx.
func covered(ctx context.Context, op string) bool {
	c, ok := ctx.Value(coveredKey{}).(coverage)
	return ok && c.op == op && c.span == trace.SpanContextFromContext(ctx).SpanID()
}
