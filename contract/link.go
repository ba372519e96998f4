package contract

import (
	"context"

	"go.opentelemetry.io/otel/trace"
)

// linkKey is the context key of the span context that the next hook
// operation's span links to.
type linkKey struct{}

// WithLink returns ctx marked so that the span the span hook starts for the
// next hook operation run with it is the root of a new trace with a link to
// sc, instead of a child of the span in ctx. A runtime uses it where a step
// resumes work saved long ago (a saga timeout, a replayed event) and the
// user asked for linked traces rather than one trace stretched over hours.
// Operations nested inside that span are its children as usual. An invalid
// sc returns ctx unchanged.
func WithLink(ctx context.Context, sc trace.SpanContext) context.Context {
	if !sc.IsValid() {
		return ctx
	}
	return context.WithValue(ctx, linkKey{}, sc)
}

// Link returns the span context that [WithLink] put in ctx, and whether
// there is one. A span hook that honours it starts a new root with a link to
// it and passes its inner operations a context without it (see
// [WithoutLink]).
func Link(ctx context.Context) (trace.SpanContext, bool) {
	sc, ok := ctx.Value(linkKey{}).(trace.SpanContext)
	return sc, ok && sc.IsValid()
}

// WithoutLink returns ctx without the mark of [WithLink], for the
// operations nested inside the span that honoured it.
func WithoutLink(ctx context.Context) context.Context {
	if _, ok := Link(ctx); !ok {
		return ctx
	}
	return context.WithValue(ctx, linkKey{}, trace.SpanContext{})
}
