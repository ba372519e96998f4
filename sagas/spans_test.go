package sagas_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/sagas"
	"github.com/cqrs-ddd/watermill-observability/watermillobs"
)

// traced returns a config of w whose registry turns every operation into
// a span, recorded.
func traced(w *world) (sagas.Config, *tracetest.SpanRecorder) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	w.t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	cfg := w.config()
	cfg.Registry = hooks.NewRegistry()
	cfg.Registry.MustRegister(watermillobs.NewSpanHook(watermillobs.WithTracerProvider(tp)))
	return cfg, rec
}

func spansNamed(rec *tracetest.SpanRecorder, name string) []sdktrace.ReadOnlySpan {
	var out []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == name {
			out = append(out, s)
		}
	}
	slices.SortFunc(out, func(a, b sdktrace.ReadOnlySpan) int { return a.StartTime().Compare(b.StartTime()) })
	return out
}

func waitSpans(t *testing.T, rec *tracetest.SpanRecorder, name string, n int) []sdktrace.ReadOnlySpan {
	t.Helper()
	eventually(t, fmt.Sprintf("%d %s spans", n, name), func() bool { return len(spansNamed(rec, name)) >= n })
	return spansNamed(rec, name)
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	out := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		out[kv.Key] = kv.Value
	}
	return out
}

func traceparent(sc trace.SpanContext) string {
	return fmt.Sprintf("00-%s-%s-01", sc.TraceID(), sc.SpanID())
}

func TestManager_steps_are_saga_run_spans(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		w := newWorld(t, newStore(t))
		cfg, rec := traced(w)
		m, _ := w.manager(cfg, orderSaga(), true)
		w.publish("8b1f0c35-0000-4000-8000-000000000101", "corr-10", &OrderPlaced{OrderID: "o-10", Amount: 10})
		w.waitFor("o-10", "completed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompleted })
		runs := waitSpans(t, rec, "saga.run.OrderSaga", 4)
		recs := history(t, m, "o-10")
		handleEvents := map[trace.SpanID]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			handleEvents[s.SpanContext().SpanID()] = s
		}
		want := []struct {
			from, to, outcome, event, command string
		}{
			{"", "reserving_stock", "running", "OrderPlaced", "ReserveStock"},
			{"reserving_stock", "awaiting_payment", "running", "StockReserved", "ChargePayment"},
			{"awaiting_payment", "shipping", "running", "PaymentCharged", "ShipOrder"},
			{"shipping", "shipped", "completed", "OrderShipped", ""},
		}
		for i, s := range runs {
			a := attrs(s)
			wn := want[i]
			for k, v := range map[attribute.Key]any{
				"saga.type": sagaType, "saga.id": "o-10", "saga.step": int64(i + 1), "saga.state_version": int64(i + 1),
				"saga.from_state": wn.from, "saga.to_state": wn.to, "saga.outcome": wn.outcome, "saga.trigger": "event",
				"event.type": wn.event, "saga.version_conflicts": int64(0), "correlation_id": "corr-10",
			} {
				if got := a[k].AsInterface(); got != v {
					t.Errorf("step %d: %s = %v, want %v", i+1, k, got, v)
				}
			}
			if _, ok := a["saga.lock_wait_ms"]; !ok {
				t.Errorf("step %d: no saga.lock_wait_ms", i+1)
			}
			// The step record points at its span.
			sc := s.SpanContext()
			if recs[i].TraceID != sc.TraceID().String() || recs[i].SpanID != sc.SpanID().String() {
				t.Errorf("step %d record trace %s/%s, want the span's %s/%s", i+1, recs[i].TraceID, recs[i].SpanID, sc.TraceID(), sc.SpanID())
			}
			// Its parent is the handling of the event.
			parent, ok := handleEvents[s.Parent().SpanID()]
			if !ok || parent.Name() != "saga.handle_event."+wn.event {
				t.Errorf("step %d parent = %v, want saga.handle_event.%s", i+1, parent, wn.event)
			} else if pa := attrs(parent); pa["event.id"].AsString() != recs[i].EventID || pa["saga.type"].AsString() != sagaType {
				t.Errorf("saga.handle_event attributes %v, want event.id %s and saga.type", pa, recs[i].EventID)
			}
			// The command carries the step's trace context.
			if wn.command != "" {
				if got := w.handled(wn.command)[0].Metadata.Get("traceparent"); got != traceparent(sc) {
					t.Errorf("%s traceparent %s, want the saga.run span %s", wn.command, got, traceparent(sc))
				}
			}
		}
		locks := spansNamed(rec, "redis.lock.acquire.saga")
		if len(locks) < 4 {
			t.Fatalf("%d lock spans, want one per step", len(locks))
		}
		if a := attrs(locks[0]); a["resource"].AsString() != sagaType+":o-10" || a["resource_type"].AsString() != "saga" {
			t.Errorf("lock span attributes %v", a)
		}
		if n := len(spansNamed(rec, "redis.lock.release.saga")); n < 4 {
			t.Errorf("%d lock release spans, want one per step", n)
		}
	})
}

// A timeout step continues the trace of the step that scheduled it, or
// starts a new trace linked to it when configured or when it is old.
func TestManager_timeout_step_trace(t *testing.T) {
	cases := []struct {
		name string
		cfg  func(*sagas.Config)
		link bool
	}{
		{name: "continues", cfg: func(*sagas.Config) {}},
		{name: "LinkTimeouts links", cfg: func(c *sagas.Config) { c.LinkTimeouts = true }, link: true},
		{name: "older than TimeoutLinkAfter links", cfg: func(c *sagas.Config) { c.TimeoutLinkAfter = paymentDeadline / 2 }, link: true},
		{name: "younger than TimeoutLinkAfter continues", cfg: func(c *sagas.Config) { c.TimeoutLinkAfter = 10 * paymentDeadline }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
				w := newWorld(t, newStore(t))
				cfg, rec := traced(w)
				tc.cfg(&cfg)
				m, _ := w.manager(cfg, orderSaga(), true)
				w.publish("8b1f0c35-0000-4000-8000-000000000111", "corr-11", &OrderPlaced{OrderID: "o-11", Amount: slowPayment})
				w.waitStatus("o-11", "awaiting_payment")
				scheduling := waitSpans(t, rec, "saga.run.OrderSaga", 2)[1].SpanContext()
				w.clock.Advance(paymentDeadline + time.Second)
				if err := m.RecoverOnce(context.Background()); err != nil {
					t.Fatal(err)
				}
				w.waitFor("o-11", "compensated", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompensated })
				run := waitSpans(t, rec, "saga.run.OrderSaga", 3)[2]
				delivery := waitSpans(t, rec, "saga.recovery.timeouts", 1)[0]
				if a := attrs(run); a["saga.trigger"].AsString() != "timeout" || a["event.type"].AsString() != "payment" || a["saga.outcome"].AsString() != "compensated" {
					t.Errorf("timeout step attributes %v", a)
				}
				if a := attrs(delivery); a["saga.timeout"].AsString() != "payment" || a["saga.id"].AsString() != "o-11" {
					t.Errorf("saga.recovery.timeouts attributes %v", a)
				}
				if run.Parent().SpanID() != delivery.SpanContext().SpanID() {
					t.Errorf("the timeout's saga.run is not a child of saga.recovery.timeouts")
				}
				sameTrace := delivery.SpanContext().TraceID() == scheduling.TraceID()
				linked := len(delivery.Links()) == 1 && delivery.Links()[0].SpanContext.SpanID() == scheduling.SpanID()
				if tc.link {
					if sameTrace || !linked || delivery.Parent().IsValid() {
						t.Errorf("delivery in trace %s (scheduling %s), links %v: want a new root linked to the scheduling step", delivery.SpanContext().TraceID(), scheduling.TraceID(), delivery.Links())
					}
				} else if !sameTrace || delivery.Parent().SpanID() != scheduling.SpanID() || len(delivery.Links()) != 0 {
					t.Errorf("delivery parent %s in trace %s, want a child of the scheduling step %s", delivery.Parent().SpanID(), delivery.SpanContext().TraceID(), scheduling.SpanID())
				}
				// The compensation command carries the timeout step's trace.
				rel := w.waitHandled("ReleaseStock", 1)[0]
				if got := rel.Metadata.Get("traceparent"); got != traceparent(run.SpanContext()) {
					t.Errorf("ReleaseStock traceparent %s, want %s", got, traceparent(run.SpanContext()))
				}
				if n := len(spansNamed(rec, "saga.recovery.run_once")); n != 1 {
					t.Errorf("%d saga.recovery.run_once spans, want 1", n)
				}
			})
		})
	}
}
