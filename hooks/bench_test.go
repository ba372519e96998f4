package hooks_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

func passThrough() hooks.Hook {
	return hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
		return next(ctx)
	})
}

// publish is what a typical instrumented caller does per message: ask whether
// the operation family is observed before building the name and attributes,
// and run the work directly when it is not.
func publish(ctx context.Context, reg *hooks.Registry, family, topic, correlationID string, work func(context.Context) error) error {
	if !reg.EnabledPrefix(family) {
		return work(ctx)
	}
	return reg.Run(ctx, family+topic, []slog.Attr{
		slog.String("topic", topic),
		slog.String("correlation_id", correlationID),
	}, work)
}

func benchmarkPublish(b *testing.B, reg *hooks.Registry, family string) {
	ctx := context.Background()
	topic := "orders"
	correlationID := hooks.NewCorrelationID()
	work := func(context.Context) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		if err := publish(ctx, reg, family, topic, correlationID, work); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunNoMatch: 50 registrations for other operation families (wild
// cards, literals, classes), none matching the operation.
func BenchmarkRunNoMatch(b *testing.B) {
	reg := hooks.NewRegistry()
	for i := range 50 {
		reg.MustRegister(passThrough(), hooks.WithOperations(
			fmt.Sprintf("family%d.*", i),
			fmt.Sprintf("saga.run.Saga%d", i),
			fmt.Sprintf("projection.partition.[0-%d]", i%10),
		))
	}
	benchmarkPublish(b, reg, "publisher.publish.")
}

// BenchmarkRunNoMatchSuffixPatterns: 50 registrations with suffix patterns
// ("*.op7"), which any family could match, so the caller has to build the
// name and ask with it; Run then finds no hook.
func BenchmarkRunNoMatchSuffixPatterns(b *testing.B) {
	reg := hooks.NewRegistry()
	for i := range 50 {
		reg.MustRegister(passThrough(), hooks.WithOperations(fmt.Sprintf("*.op%d", i)))
	}
	benchmarkPublish(b, reg, "publisher.publish.")
}

// BenchmarkRunOneHook: one pass-through hook matching the operation.
func BenchmarkRunOneHook(b *testing.B) {
	reg := hooks.NewRegistry()
	reg.MustRegister(passThrough(), hooks.WithOperations("publisher.publish.*"))
	benchmarkPublish(b, reg, "publisher.publish.")
}

// BenchmarkRunDefaultProfile: the default trace profile registered, an
// operation outside it (per-handler event operations are too chatty for the
// default profile).
func BenchmarkRunDefaultProfile(b *testing.B) {
	reg := hooks.NewRegistry()
	reg.MustRegister(passThrough(), hooks.WithOperations(watermillobs.DefaultFrameworkTraceOperations...))
	benchmarkPublish(b, reg, "event.handler.")
}

// BenchmarkRunNoMatchFullName: the caller builds the full name and asks
// Enabled (no prefix check); still no allocation once the name is cached.
func BenchmarkRunNoMatchFullName(b *testing.B) {
	reg := hooks.NewRegistry()
	reg.MustRegister(passThrough(), hooks.WithOperations(watermillobs.DefaultFrameworkTraceOperations...))
	ctx := context.Background()
	eventType := "OrderPlaced"
	work := func(context.Context) error { return nil }
	b.ReportAllocs()
	for b.Loop() {
		name := "command.send." + eventType
		if !reg.Enabled(name) {
			_ = work(ctx)
			continue
		}
		_ = reg.Run(ctx, name, []slog.Attr{slog.String("message_type", eventType)}, work)
	}
}
