package contract

import (
	"context"
	"errors"
	"log/slog"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// ReportFunc reports a hook panic that [RunHooks] recovered from. ctx is the
// context Run was given.
type ReportFunc func(ctx context.Context, p *hooks.HookPanicError)

// RunHooks runs fn inside the hook operation name of reg so that a broken
// hook never changes what the operation does. Every component of this
// module that emits operations (publishing, consuming, the CQRS buses and
// handlers) runs them through it; so can yours.
//
//   - An error a hook returns deliberately (a rate limiter refusing) is
//     returned: the caller sees the refusal.
//   - A hook that panicked (*hooks.HookPanicError) is passed to report and
//     the operation behaves as if unobserved: if fn already ran, its result
//     is returned; else fn is called once, directly, with ctx. So fn runs
//     exactly once whether the hook panicked before or after next, and a
//     publish is never repeated by the caller's retry.
//   - A panic of fn itself reaches the caller unchanged. RunHooks never recovers
//     it, and if the registry swallowed it into a HookPanicError (a hook that
//     panics while fn's panic passes through it), RunHooks raises it again rather
//     than calling fn a second time.
func RunHooks(ctx context.Context, reg *hooks.Registry, name string, attrs []slog.Attr, fn func(context.Context) error, report ReportFunc) error {
	var (
		ran, returned bool
		fnErr         error
	)
	err := reg.Run(ctx, name, attrs, func(ctx context.Context) error {
		ran = true
		fnErr = fn(ctx)
		returned = true
		return fnErr
	})
	var hookPanic *hooks.HookPanicError
	if err == nil || !errors.As(err, &hookPanic) {
		return err
	}
	if ran && !returned {
		// fn panicked and the panic ended up inside a hook's error: give
		// the caller the panic, never a second run.
		panic(hookPanic.Value)
	}
	if report != nil {
		report(ctx, hookPanic)
	}
	if ran {
		return fnErr
	}
	return fn(ctx)
}
