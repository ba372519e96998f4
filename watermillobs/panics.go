package watermillobs

import (
	"context"
	"log/slog"

	"github.com/cqrs-ddd/watermill-observability/internal/panics"
	"github.com/cqrs-ddd/watermill-observability/internal/spans"
)

// pipelinePanics returns the report of panics recovered from the tracing
// pipeline: logged through logger (nil: slog.Default) and counted (see
// [RecoveredPanics]), never passed to the message.
func pipelinePanics(logger *slog.Logger) spans.PanicFunc {
	return func(ctx context.Context, what string, v any) {
		panics.Report(ctx, logger, "watermillobs: recovered panic in tracing pipeline", v, slog.String("during", what))
	}
}

// RecoveredPanics returns how many panics this module's own code has
// recovered since the process started: in span processors, exporters and
// samplers under our spans, in log handlers we log through, in Sentry's
// transport, in hooks that panicked around our operations, and in our own
// backend code. Each one was logged at level Error and the message was
// processed as if uninstrumented; a number that grows is a bug to look at.
// promobs exports it as watermill_observability_recovered_panics_total.
func RecoveredPanics() uint64 { return panics.Count() }
