package hooks

import (
	"context"
	"log/slog"
	"slices"
)

// Operation describes one run of a named operation.
type Operation struct {
	// Name is the dotted operation name, e.g. "event.dispatch.OrderPlaced".
	Name string
	// Attrs describe the operation (event type, topic, correlation ID, ...).
	// Hooks must not modify the slice; they may keep it after returning.
	Attrs []slog.Attr
}

// Attr returns the value of the first attribute with the given key and
// whether it was found.
func (op Operation) Attr(key string) (slog.Value, bool) {
	for _, a := range op.Attrs {
		if a.Key == key {
			return a.Value, true
		}
	}
	return slog.Value{}, false
}

// Next continues the pipeline: it runs the remaining hooks and then the
// operation itself. The context it is given is the one the inner hooks and
// the operation see, so a hook can pass a context carrying a span.
type Next func(ctx context.Context) error

// A Hook wraps operations.
//
// Rules for implementers:
//   - Around may be called concurrently from many goroutines.
//   - Around must call next for the operation to run. Calling it more than
//     once runs the rest of the pipeline again (a retry hook may do that);
//     not calling it skips the operation.
//   - An error returned by Around is returned to the caller of Run, so a hook
//     can refuse an operation (rate limiting). A hook that only observes
//     should return the error next returned, unchanged.
//   - op.Attrs is owned by the caller of Run: do not modify it.
//   - A panic inside Around is recovered by the registry and turned into a
//     [*HookPanicError]. A panic of the operation itself is not recovered: it
//     unwinds through next and Around and reaches the caller of Run
//     unchanged, with the stack of the code that panicked (see below).
//   - Cancelling ctx is the caller's business: a hook should not start work
//     that outlives the call unless it detaches from ctx deliberately.
//
// A hook that must see a panic of the operation (to end a span, say)
// observes it with a deferred flag and lets it go on, as Watermill's
// middleware.Recoverer does; next never returns an error for it:
//
//	returned := false
//	defer func() {
//		if !returned {
//			// next panicked: record it, do not recover
//		}
//	}()
//	err := next(ctx)
//	returned = true
//
// A hook that does recover the operation's panic takes over reporting it;
// the registry then cannot tell a later panic of that hook from the
// operation's and lets it unwind too.
type Hook interface {
	Around(ctx context.Context, op Operation, next Next) error
}

// HookFunc adapts an ordinary function to the [Hook] interface.
type HookFunc func(ctx context.Context, op Operation, next Next) error

// Around calls f(ctx, op, next).
func (f HookFunc) Around(ctx context.Context, op Operation, next Next) error {
	return f(ctx, op, next)
}

// Multi returns a hook that runs the given hooks as one nested pipeline, the
// first outermost. It copies the slice, so later changes to it have no effect.
func Multi(hs ...Hook) Hook {
	hs = slices.Clone(hs)
	hs = slices.DeleteFunc(hs, func(h Hook) bool { return h == nil })
	return multiHook(hs)
}

type multiHook []Hook

func (m multiHook) Around(ctx context.Context, op Operation, next Next) error {
	return m.run(ctx, op, 0, next)
}

func (m multiHook) run(ctx context.Context, op Operation, i int, next Next) error {
	if i == len(m) {
		return next(ctx)
	}
	return m[i].Around(ctx, op, func(ctx context.Context) error {
		return m.run(ctx, op, i+1, next)
	})
}
