package sagas_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// steps renders a history as "from->to(outcome)" per step.
func steps(recs []sagas.StepRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = fmt.Sprintf("%s:%s %s->%s(%s)", r.Trigger, r.EventType, r.FromState, r.ToState, r.Outcome)
	}
	return out
}

func history(t *testing.T, m *sagas.Manager, id string) []sagas.StepRecord {
	t.Helper()
	recs, err := m.History(context.Background(), sagaType, id)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

func wantSteps(t *testing.T, recs []sagas.StepRecord, want ...string) {
	t.Helper()
	got := steps(recs)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("history:\n got %q\nwant %q", got, want)
	}
}

var happySteps = []string{
	"event:OrderPlaced ->reserving_stock(running)",
	"event:StockReserved reserving_stock->awaiting_payment(running)",
	"event:PaymentCharged awaiting_payment->shipping(running)",
	"event:OrderShipped shipping->shipped(completed)",
}

func TestManager_happy_path(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		w := newWorld(t, newStore(t))
		m, _ := w.manager(w.config(), orderSaga(), true)
		const placed = "8b1f0c35-0000-4000-8000-000000000001"
		w.publish(placed, "corr-1", &OrderPlaced{OrderID: "o-1", Amount: 10})

		inst := w.waitFor("o-1", "completed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompleted })
		if inst.Status != "shipped" || inst.Version != 4 || len(inst.Pending) != 0 || len(inst.Timeouts) != 0 || len(inst.Processed) != 4 {
			t.Errorf("instance = %+v, want shipped at version 4, nothing pending, no timeouts, 4 processed", inst)
		}
		recs := history(t, m, "o-1")
		wantSteps(t, recs, happySteps...)
		if recs[0].EventID != placed || recs[0].Process != "test-process" || !recs[0].Time.Equal(w.clock.Now()) {
			t.Errorf("first record = %+v, want event %s, process test-process, time from Config.Now", recs[0], placed)
		}
		// Each command was handled once, with the saga's correlation ID,
		// the handled event's UUID as causation and the UUID in History.
		for i, name := range []string{"ReserveStock", "ChargePayment", "ShipOrder"} {
			cmds := w.handled(name)
			if len(cmds) != 1 {
				t.Fatalf("%s handled %d times, want once", name, len(cmds))
			}
			c := cmds[0]
			rec := recs[i]
			if len(rec.Commands) != 1 || rec.Commands[0] != (sagas.CommandRecord{Type: name, UUID: c.UUID}) {
				t.Errorf("step %d commands = %+v, want %s %s", i+1, rec.Commands, name, c.UUID)
			}
			if got := c.Metadata.Get("correlation_id"); got != "corr-1" {
				t.Errorf("%s correlation_id = %q, want corr-1", name, got)
			}
			if got := c.Metadata.Get("causation_id"); got != rec.EventID {
				t.Errorf("%s causation_id = %q, want the event %s", name, got, rec.EventID)
			}
			if got := c.Metadata.Get("message_kind"); got != "command" {
				t.Errorf("%s message_kind = %q, want command", name, got)
			}
		}
		if n := len(w.handled("ReleaseStock")); n != 0 {
			t.Errorf("ReleaseStock handled %d times on the happy path", n)
		}
	})
}

func TestManager_timeout_compensates(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		w := newWorld(t, newStore(t))
		m, _ := w.manager(w.config(), orderSaga(), true)
		w.publish("8b1f0c35-0000-4000-8000-000000000002", "corr-2", &OrderPlaced{OrderID: "o-2", Amount: slowPayment})
		inst := w.waitStatus("o-2", "awaiting_payment")
		if len(inst.Timeouts) != 1 || inst.Timeouts[0].Name != "payment" || !inst.Timeouts[0].Due.Equal(w.clock.Now().Add(paymentDeadline)) {
			t.Fatalf("timeouts = %+v, want payment due in %s", inst.Timeouts, paymentDeadline)
		}
		ctx := context.Background()
		// Not due yet: recovery delivers nothing.
		if err := m.RecoverOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if inst, _, _ := w.store.Load(ctx, sagaType, "o-2"); inst.Version != 2 {
			t.Fatalf("version %d after an early recovery pass, want 2", inst.Version)
		}
		w.clock.Advance(paymentDeadline + 1)
		if err := m.RecoverOnce(ctx); err != nil {
			t.Fatal(err)
		}
		inst = w.waitFor("o-2", "compensated", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompensated })
		if len(inst.Timeouts) != 0 {
			t.Errorf("timeouts left: %+v", inst.Timeouts)
		}
		rel := w.waitHandled("ReleaseStock", 1)
		recs := history(t, m, "o-2")
		wantSteps(t, recs,
			"event:OrderPlaced ->reserving_stock(running)",
			"event:StockReserved reserving_stock->awaiting_payment(running)",
			"timeout:payment awaiting_payment->stock_released(compensated)",
		)
		if got := rel[0].Metadata.Get("correlation_id"); got != "corr-2" {
			t.Errorf("ReleaseStock correlation_id = %q, want the saga's corr-2", got)
		}
		if got, want := rel[0].Metadata.Get("causation_id"), recs[2].EventID; got != want || want == "" {
			t.Errorf("ReleaseStock causation_id = %q, want the timeout ID %q", got, want)
		}
		// Delivered once: another pass does nothing.
		if err := m.RecoverOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if n := len(history(t, m, "o-2")); n != 3 {
			t.Errorf("%d records after a second pass, want 3", n)
		}
	})
}

func TestManager_redelivered_event_applied_once(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		w := newWorld(t, newStore(t))
		m, res := w.manager(w.config(), orderSaga(), true)
		const placed = "8b1f0c35-0000-4000-8000-000000000003"
		w.publish(placed, "corr-3", &OrderPlaced{OrderID: "o-3", Amount: slowPayment})
		w.waitStatus("o-3", "awaiting_payment")
		// The broker delivers OrderPlaced again (same UUID).
		w.publish(placed, "corr-3", &OrderPlaced{OrderID: "o-3", Amount: slowPayment})
		eventually(t, "second delivery handled", func() bool { return len(res.of(placed)) == 2 && res.acked(placed) })
		wantSteps(t, history(t, m, "o-3"), happySteps[:2]...)
		if n := len(w.handled("ReserveStock")); n != 1 {
			t.Errorf("ReserveStock handled %d times, want once", n)
		}
	})
}

// Two managers sharing one store get every event at once (two
// subscriptions of the same Pub/Sub topic): each step happens once.
func TestManager_two_managers_apply_each_event_once(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		w := newWorld(t, newStore(t))
		m, res1 := w.manager(w.config(), orderSaga(), true)
		_, res2 := w.manager(w.config(), orderSaga(), true)
		ids := []string{"o-4a", "o-4b", "o-4c"}
		for i, id := range ids {
			w.publish(fmt.Sprintf("8b1f0c35-0000-4000-8000-00000000004%d", i), "corr-4", &OrderPlaced{OrderID: id, Amount: 10})
		}
		for _, id := range ids {
			w.waitFor(id, "completed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompleted })
			wantSteps(t, history(t, m, id), happySteps...)
		}
		for _, name := range []string{"ReserveStock", "ChargePayment", "ShipOrder"} {
			if n := len(w.handled(name)); n != len(ids) {
				t.Errorf("%s handled %d times, want %d", name, n, len(ids))
			}
		}
		placed := "8b1f0c35-0000-4000-8000-000000000040"
		eventually(t, "both managers acked", func() bool { return res1.acked(placed) && res2.acked(placed) })
	})
}

// A crash between the save and the publish leaves the commands pending;
// recovery in another process publishes them, verbatim and once.
func TestManager_recovery_publishes_saved_commands(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		w := newWorld(t, newStore(t))
		cfg := w.config()
		pub := &flakyPublisher{Publisher: w.pubsub}
		pub.fail.Store(true)
		cfg.Publisher = pub
		m, res := w.manager(cfg, orderSaga(), true)
		const placed = "8b1f0c35-0000-4000-8000-000000000005"
		w.publish(placed, "corr-5", &OrderPlaced{OrderID: "o-5", Amount: 10})
		inst := w.waitFor("o-5", "saved with a pending command", func(i sagas.Instance) bool { return i.Version == 1 })
		eventually(t, "event acked", func() bool { return res.acked(placed) })
		if len(inst.Pending) != 1 || len(w.handled("ReserveStock")) != 0 {
			t.Fatalf("pending %+v, ReserveStock handled %d times: want one pending, none sent", inst.Pending, len(w.handled("ReserveStock")))
		}
		saved := inst.Pending[0]

		// The broker is back; the first manager does not retry by
		// itself: only recovery publishes the saved command.
		pub.fail.Store(false)
		other, _ := w.manager(w.config(), orderSaga(), false)
		if err := other.RecoverOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		cmds := w.waitHandled("ReserveStock", 1)
		if cmds[0].UUID != saved.UUID || cmds[0].Metadata.Get("traceparent") != saved.Metadata["traceparent"] ||
			cmds[0].Metadata.Get("published_at") != saved.Metadata["published_at"] || string(cmds[0].Payload) != string(saved.Payload) {
			t.Errorf("published %s %v %s, want the saved message verbatim %+v", cmds[0].UUID, cmds[0].Metadata, cmds[0].Payload, saved)
		}
		if recs := history(t, m, "o-5"); recs[0].Commands[0].UUID != saved.UUID {
			t.Errorf("History names command %s, want %s", recs[0].Commands[0].UUID, saved.UUID)
		}
		w.waitFor("o-5", "completed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompleted })
		if err := other.RecoverOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := len(w.handled("ReserveStock")); n != 1 {
			t.Errorf("ReserveStock handled %d times, want once", n)
		}
	})
}
