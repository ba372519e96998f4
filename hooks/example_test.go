package hooks_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// A hook that prints around every "uow.*" operation.
func ExampleRegistry_Run() {
	reg := hooks.NewRegistry()
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		fmt.Println("before", op.Name)
		err := next(ctx)
		fmt.Println("after", op.Name, "error:", err)
		return err
	}), hooks.WithOperations("uow.*"))

	_ = reg.Run(context.Background(), "uow.commit", nil, func(context.Context) error {
		fmt.Println("committing")
		return nil
	})
	_ = reg.Run(context.Background(), "saga.run.OrderSaga", nil, func(context.Context) error {
		fmt.Println("saga runs without hooks")
		return nil
	})
	// Output:
	// before uow.commit
	// committing
	// after uow.commit error: <nil>
	// saga runs without hooks
}

// A rate-limit style hook refuses an operation by returning an error
// without calling next.
func ExampleRegistry_Register_refuse() {
	errLimited := errors.New("rate limited")
	reg := hooks.NewRegistry()
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		if v, _ := op.Attr("topic"); v.String() == "noisy" {
			return errLimited
		}
		return next(ctx)
	}), hooks.WithOperations("publisher.publish.*"))

	for _, topic := range []string{"orders", "noisy"} {
		err := reg.Run(context.Background(), "publisher.publish."+topic,
			[]slog.Attr{slog.String("topic", topic)},
			func(context.Context) error { return nil })
		fmt.Println(topic, err)
	}
	// Output:
	// orders <nil>
	// noisy rate limited
}

// Callers on hot paths ask first and skip building the name and attributes
// when nothing would observe the operation.
func ExampleRegistry_EnabledPrefix() {
	reg := hooks.NewRegistry()
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		return next(ctx)
	}), hooks.WithOperations("saga.*"))

	fmt.Println(reg.EnabledPrefix("publisher.publish."))
	fmt.Println(reg.EnabledPrefix("saga.run."))
	// Output:
	// false
	// true
}

// Correlation IDs travel in the context; Snapshot and Restore carry them to
// a goroutine that starts from a fresh context.
func ExampleSnapshot() {
	ctx := hooks.WithCorrelationID(context.Background(), "7d0f3a52-0000-4000-8000-000000000001")
	ctx = hooks.WithCausationID(ctx, "msg-42")

	vars := hooks.Snapshot(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bg := hooks.Restore(context.Background(), vars)
		fmt.Println(hooks.CorrelationID(bg), hooks.CausationID(bg))
	}()
	<-done
	// Output:
	// 7d0f3a52-0000-4000-8000-000000000001 msg-42
}
