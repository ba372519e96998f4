package sagas_test

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/sagas"
	"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
)

// The manager is a promobs.SagaSource.
var _ promobs.SagaSource = (*sagas.Manager)(nil)

// The promobs saga metrics over a real manager: the hook reads the
// operations sagas emits, the collector reads the manager's active
// instances.
func TestManager_promobs_metrics(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		w := newWorld(t, newStore(t))
		cfg := w.config()
		prom := prometheus.NewPedanticRegistry()
		hook, err := promobs.NewSagaHook(prom)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Registry.MustRegister(hook, hooks.WithOperations(promobs.SagaOperations()...))
		m, _ := w.manager(cfg, orderSaga(), true)
		collector, err := promobs.NewSagaCollector(m)
		if err != nil {
			t.Fatal(err)
		}
		prom.MustRegister(collector)

		w.publish("8b1f0c35-0000-4000-8000-0000000000a1", "corr-a", &OrderPlaced{OrderID: "o-a", Amount: slowPayment})
		w.waitStatus("o-a", "awaiting_payment")
		if err := testutil.GatherAndCompare(prom, strings.NewReader(`
# HELP saga_active_instances Saga instances that have started and not ended, by saga type, read at scrape time.
# TYPE saga_active_instances gauge
saga_active_instances{saga_type="OrderSaga"} 1
`), "saga_active_instances"); err != nil {
			t.Error(err)
		}
		w.publish("8b1f0c35-0000-4000-8000-0000000000a2", "corr-a", &OrderPlaced{OrderID: "o-b", Amount: 10})
		w.waitFor("o-b", "completed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompleted })

		if err := testutil.GatherAndCompare(prom, strings.NewReader(`
# HELP saga_instances_started_total Saga instances started: first steps saved, by saga type.
# TYPE saga_instances_started_total counter
saga_instances_started_total{saga_type="OrderSaga"} 2
# HELP saga_instances_finished_total Saga instances ended by a saved step, by saga type and outcome (completed, compensated, failed, timed_out).
# TYPE saga_instances_finished_total counter
saga_instances_finished_total{outcome="completed",saga_type="OrderSaga"} 1
# HELP saga_active_instances Saga instances that have started and not ended, by saga type, read at scrape time.
# TYPE saga_active_instances gauge
saga_active_instances{saga_type="OrderSaga"} 1
`), "saga_instances_started_total", "saga_instances_finished_total", "saga_active_instances"); err != nil {
			t.Error(err)
		}
		// Six steps (two for o-a, four for o-b), each after a lock.
		steps, locks := histogramCount(t, prom, "saga_step_duration_seconds"), histogramCount(t, prom, "saga_lock_wait_seconds")
		if steps != 6 || locks < 6 {
			t.Errorf("step durations observed %d, lock waits %d; want 6 and at least 6", steps, locks)
		}
	})
}

// histogramCount sums the sample counts of a histogram family.
func histogramCount(t *testing.T, g prometheus.Gatherer, name string) uint64 {
	t.Helper()
	families, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}
