package contract

import (
	"context"

	"go.opentelemetry.io/otel/trace"
)

// linkKey is the context key of the span contexts that the next hook
// operation's span links to.
type linkKey struct{}

// maxLinks bounds the links one span gets from WithLinks: a batch of
// thousands of events must not make a span of thousands of links (the SDK
// drops links past its own limit, 128 by default, after building them).
const maxLinks = 128

// WithLink returns ctx marked so that the span the span hook starts for the
// next hook operation run with it is the root of a new trace with a link to
// sc, instead of a child of the span in ctx. A runtime uses it where a step
// resumes work saved long ago (a saga timeout, a replayed event) and the
// user asked for linked traces rather than one trace stretched over hours.
// Operations nested inside that span are its children as usual. An invalid
// sc returns ctx unchanged.
func WithLink(ctx context.Context, sc trace.SpanContext) context.Context {
	return WithLinks(ctx, []trace.SpanContext{sc})
}

// WithLinks is [WithLink] for several span contexts, such as the messages
// of a batch that one span stands for: the span links to each valid one, up
// to 128. With none valid it returns ctx unchanged.
func WithLinks(ctx context.Context, scs []trace.SpanContext) context.Context {
	valid := make([]trace.SpanContext, 0, min(len(scs), maxLinks))
	for _, sc := range scs {
		if sc.IsValid() && len(valid) < maxLinks {
			valid = append(valid, sc)
		}
	}
	if len(valid) == 0 {
		return ctx
	}
	return context.WithValue(ctx, linkKey{}, valid)
}

// Link returns the first span context that [WithLink] or [WithLinks] put
// in ctx, and whether there is one.
func Link(ctx context.Context) (trace.SpanContext, bool) {
	if scs := Links(ctx); len(scs) > 0 {
		return scs[0], true
	}
	return trace.SpanContext{}, false
}

// Links returns the span contexts that [WithLink] or [WithLinks] put in
// ctx. A span hook that honours them starts a new root with a link to each
// and passes its inner operations a context without them (see
// [WithoutLink]). The slice must not be modified.
func Links(ctx context.Context) []trace.SpanContext {
	scs, _ := ctx.Value(linkKey{}).([]trace.SpanContext)
	return scs
}

// WithoutLink returns ctx without the mark of [WithLink], for the
// operations nested inside the span that honoured it.
func WithoutLink(ctx context.Context) context.Context {
	if len(Links(ctx)) == 0 {
		return ctx
	}
	return context.WithValue(ctx, linkKey{}, []trace.SpanContext(nil))
}
