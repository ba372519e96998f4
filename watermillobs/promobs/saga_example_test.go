package promobs_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// The saga metrics come from the hook operations of the saga runtime:
// register the hook on the registry the saga manager runs its operations
// through. Here two steps of one instance stand in for the manager.
func ExampleNewSagaHook() {
	reg := prometheus.NewRegistry()
	hook, err := promobs.NewSagaHook(reg)
	if err != nil {
		log.Fatal(err)
	}
	registry := hooks.NewRegistry()
	// Priority 10: inside the span hook of watermillobs (priority 0), so
	// that observations carry the step's trace ID as exemplar.
	if _, err := registry.Register(hook, hooks.WithOperations(promobs.SagaOperations()...), hooks.WithPriority(10)); err != nil {
		log.Fatal(err)
	}

	ctx := context.Background()
	for step, outcome := range []string{"running", "completed"} {
		attrs := []slog.Attr{
			slog.String("saga.type", "OrderSaga"),
			slog.String("saga.id", "order-42"),
			slog.Int64("saga.step", int64(step+1)),
			slog.String("saga.outcome", outcome),
			slog.String("saga.trigger", "event"),
		}
		err := registry.Run(ctx, "saga.run.OrderSaga", attrs, func(context.Context) error {
			return nil // the manager saves the step here
		})
		if err != nil {
			log.Fatal(err)
		}
	}

	printSeries(reg, "saga_instances_started_total", "saga_instances_finished_total")
	// Output:
	// saga_instances_finished_total{outcome="completed",saga_type="OrderSaga"} 1
	// saga_instances_started_total{saga_type="OrderSaga"} 1
}

// activeSagas stands in for the saga manager, which satisfies
// promobs.SagaSource.
type activeSagas map[string]int64

func (a activeSagas) ActiveSagas(_ context.Context, fn func(sagaType string, count int64, oldest time.Time)) error {
	for typ, n := range a {
		fn(typ, n, time.Now().Add(-time.Minute))
	}
	return nil
}

// The gauges of active saga instances are read from the saga manager at
// every scrape.
func ExampleNewSagaCollector() {
	collector, err := promobs.NewSagaCollector(activeSagas{"OrderSaga": 3})
	if err != nil {
		log.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector)

	mfs, err := reg.Gather()
	if err != nil {
		log.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "saga_active_instances" {
			fmt.Println(mf.GetName(), mf.GetMetric()[0].GetGauge().GetValue())
		}
	}
	// Output:
	// saga_active_instances 3
}
