// Command quickstart shows the hook registry at work without any server:
// a slow-operation detector, an audit hook, a rate limiter and a
// fire-and-forget notification, all wrapped around named operations that
// carry a correlation ID.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// slowOperations logs operations that take longer than threshold.
type slowOperations struct {
	threshold time.Duration
	logger    *slog.Logger
}

func (h slowOperations) Around(ctx context.Context, op hooks.Operation, next hooks.Next) error {
	start := time.Now()
	err := next(ctx)
	if d := time.Since(start); d > h.threshold {
		h.logger.WarnContext(ctx, "slow operation",
			slog.String("operation", op.Name),
			slog.Int64("duration_ms", d.Milliseconds()),
			slog.String("correlation_id", hooks.CorrelationID(ctx)))
	}
	return err
}

// audit records what happened to outbox and unit-of-work operations.
type audit struct {
	mu      sync.Mutex
	entries []string
}

func (a *audit) Around(ctx context.Context, op hooks.Operation, next hooks.Next) error {
	err := next(ctx)
	outcome := "success"
	if err != nil {
		outcome = "error"
	}
	a.mu.Lock()
	a.entries = append(a.entries, fmt.Sprintf("%s -> %s", op.Name, outcome))
	a.mu.Unlock()
	return err
}

var errRateLimited = errors.New("rate limited")

func main() {
	logger := slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey && len(groups) == 0 {
				return slog.Attr{} // keep the demo's output stable
			}
			return a
		},
	}))
	reg := hooks.NewRegistry(hooks.WithLogger(logger))

	// Outermost: the pipeline tracer prints the nesting of every operation.
	reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		fmt.Printf("  -> %s\n", op.Name)
		err := next(ctx)
		fmt.Printf("  <- %s (error: %v)\n", op.Name, err)
		return err
	}), hooks.WithName("tracer"), hooks.WithPriority(-100))

	reg.MustRegister(slowOperations{threshold: 20 * time.Millisecond, logger: logger},
		hooks.WithName("slow-operations"))

	trail := &audit{}
	reg.MustRegister(trail, hooks.WithOperations("outbox.*", "*.commit", "*.rollback"),
		hooks.WithName("audit"), hooks.WithPriority(100))

	limiter := reg.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		return fmt.Errorf("%s: %w", op.Name, errRateLimited)
	}), hooks.WithOperations("publisher.publish.*"), hooks.WithName("rate-limit"),
		hooks.WithPredicate(func(op hooks.Operation) bool {
			v, _ := op.Attr("topic")
			return v.String() == "noisy"
		}))

	ctx := hooks.WithCorrelationID(context.Background(), hooks.NewCorrelationID())
	ctx = hooks.WithRegistry(ctx, reg)
	fmt.Println("correlation ID:", hooks.CorrelationID(ctx) != "")

	step := func(title string, name string, attrs []slog.Attr, work func(context.Context) error) {
		fmt.Println(title)
		err := hooks.Run(ctx, name, attrs, work)
		fmt.Printf("  result: %v\n", err)
	}

	step("1. a fast commit: tracer, audit", "uow.commit", nil,
		func(context.Context) error { return nil })
	step("2. a slow saga step: the slow-operation hook warns", "saga.run.OrderSaga", nil,
		func(context.Context) error { time.Sleep(30 * time.Millisecond); return nil })
	step("3. publishing to a throttled topic: the rate limiter refuses", "publisher.publish.noisy",
		[]slog.Attr{slog.String("topic", "noisy")},
		func(context.Context) error { fmt.Println("  (never printed)"); return nil })
	limiter.SetEnabled(false)
	step("4. same publish with the rate limiter switched off at run time", "publisher.publish.noisy",
		[]slog.Attr{slog.String("topic", "noisy")},
		func(context.Context) error { fmt.Println("  published"); return nil })
	step("5. a failing outbox batch: the audit hook records the error", "outbox.process_batch", nil,
		func(context.Context) error { return errors.New("broker unavailable") })

	fmt.Println("6. a fire-and-forget notification from synchronous code")
	hooks.Notify(ctx, "message_registry.register", []slog.Attr{slog.String("name", "OrderPlaced")})
	if err := reg.Flush(ctx); err != nil {
		fmt.Println("flush:", err)
	}

	fmt.Println("audit trail:")
	for _, e := range trail.entries {
		fmt.Println("  " + e)
	}
}
