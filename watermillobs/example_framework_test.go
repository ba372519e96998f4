package watermillobs_test

import (
	"context"
	"fmt"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// Framework operations in the default profile become spans; chatty ones,
// such as per-handler operations, do not.
func ExampleInstallFrameworkHooks() {
	// A real program would leave both fields unset: the global tracer
	// provider and hooks.Default are used then.
	recorder := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(recorder))
	reg := hooks.NewRegistry()

	registration, err := watermillobs.InstallFrameworkHooks(watermillobs.FrameworkHooksConfig{
		Registry:       reg,
		TracerProvider: tp,
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx := hooks.WithRegistry(context.Background(), reg)
	_ = hooks.Run(ctx, "uow.commit", nil, func(ctx context.Context) error {
		return nil // commit the transaction
	})
	_ = hooks.Run(ctx, "event.handler.OrderPlaced.SendMail", nil, func(ctx context.Context) error {
		return nil // not in the default profile
	})

	// Tracing can be switched off at run time.
	registration.SetEnabled(false)
	_ = hooks.Run(ctx, "uow.rollback", nil, func(ctx context.Context) error { return nil })

	for _, span := range recorder.Ended() {
		for _, attr := range span.Attributes() {
			if attr.Key == "outcome" {
				fmt.Println(span.Name(), attr.Value.AsString())
			}
		}
	}
	// Output:
	// uow.commit success
}
