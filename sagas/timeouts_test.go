package sagas_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// staleStore returns, besides what its store finds, the due timeouts in
// stale, and once the instance in snapshot instead of the stored one: what
// a recovery pass that listed and read them just before the saga ended
// sees.
type staleStore struct {
	sagas.Store
	mu       sync.Mutex
	stale    []sagas.DueTimeout
	snapshot *sagas.Instance
}

func (s *staleStore) Load(ctx context.Context, sagaType, id string) (sagas.Instance, bool, error) {
	s.mu.Lock()
	snap := s.snapshot
	s.snapshot = nil
	s.mu.Unlock()
	if snap != nil {
		return *snap, true, nil
	}
	return s.Store.Load(ctx, sagaType, id)
}

func (s *staleStore) DueTimeouts(ctx context.Context, sagaType string, now time.Time, limit int) ([]sagas.DueTimeout, error) {
	due, err := s.Store.DueTimeouts(ctx, sagaType, now, limit)
	s.mu.Lock()
	defer s.mu.Unlock()
	return append(due, s.stale...), err
}

// A timeout that fires after its saga completed is dropped: logged,
// counted and notified, and no step runs.
func TestManager_stale_timeout_is_dropped(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		store := &staleStore{Store: newStore(t)}
		w := newWorld(t, store)
		cfg := w.config()
		ops := &opRecorder{}
		cfg.Registry.MustRegister(hooks.HookFunc(ops.hook), hooks.WithOperations("saga.timeout.dropped"))
		m, _ := w.manager(cfg, orderSaga(), true)
		w.publish("8b1f0c35-0000-4000-8000-000000000071", "corr-7", &OrderPlaced{OrderID: "o-7", Amount: slowPayment})
		inst := w.waitStatus("o-7", "awaiting_payment")
		timeout := inst.Timeouts[0]
		// The payment answers late; the saga completes and cancels the
		// timeout.
		w.publish("8b1f0c35-0000-4000-8000-000000000072", "corr-7", &PaymentCharged{OrderID: "o-7"})
		w.waitFor("o-7", "completed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompleted })

		w.clock.Advance(2 * paymentDeadline)
		store.mu.Lock()
		store.stale = []sagas.DueTimeout{{Type: sagaType, ID: "o-7", TimeoutID: timeout.ID, Due: timeout.Due}}
		store.snapshot = &inst
		store.mu.Unlock()
		ctx := context.Background()
		if err := m.RecoverOnce(ctx); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Registry.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if n := m.DroppedTimeouts(); n != 1 {
			t.Errorf("DroppedTimeouts = %d, want 1", n)
		}
		dropped := ops.named("saga.timeout.dropped")
		if len(dropped) != 1 {
			t.Fatalf("saga.timeout.dropped notified %d times, want once", len(dropped))
		}
		for k, want := range map[string]string{"saga.type": sagaType, "saga.id": "o-7", "saga.timeout": "payment"} {
			if v, ok := dropped[0].Attr(k); !ok || v.String() != want {
				t.Errorf("attribute %s = %v, want %q", k, v, want)
			}
		}
		recs := history(t, m, "o-7")
		if slices.ContainsFunc(recs, func(r sagas.StepRecord) bool { return r.Trigger == "timeout" }) {
			t.Errorf("a timeout step ran on a completed saga: %q", steps(recs))
		}
		if n := len(w.handled("ReleaseStock")); n != 0 {
			t.Errorf("ReleaseStock handled %d times", n)
		}
	})
}

// A cancelled timeout is no longer due.
func TestManager_cancelled_timeout_does_not_fire(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		w := newWorld(t, newStore(t))
		m, _ := w.manager(w.config(), orderSaga(), true)
		w.publish("8b1f0c35-0000-4000-8000-000000000081", "corr-8", &OrderPlaced{OrderID: "o-8", Amount: 10})
		w.waitFor("o-8", "completed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompleted })
		w.clock.Advance(2 * paymentDeadline)
		if err := m.RecoverOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		wantSteps(t, history(t, m, "o-8"), happySteps...)
		if n := m.DroppedTimeouts(); n != 0 {
			t.Errorf("DroppedTimeouts = %d, want 0: the cancelled timeout must not be listed", n)
		}
	})
}

// RunRecovery delivers due timeouts in the background and stops with its
// context.
func TestManager_RunRecovery_delivers_timeouts(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		w := newWorld(t, newStore(t))
		cfg := w.config()
		cfg.RecoveryInterval = 5 * time.Millisecond
		m, _ := w.manager(cfg, orderSaga(), true)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- m.RunRecovery(ctx) }()
		w.publish("8b1f0c35-0000-4000-8000-000000000151", "corr-15", &OrderPlaced{OrderID: "o-15", Amount: slowPayment})
		w.waitStatus("o-15", "awaiting_payment")
		w.clock.Advance(paymentDeadline)
		w.waitFor("o-15", "compensated", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompensated })
		cancel()
		if err := <-done; err != nil {
			t.Errorf("RunRecovery returned %v after cancel, want nil", err)
		}
		if n := len(w.waitHandled("ReleaseStock", 1)); n != 1 {
			t.Errorf("ReleaseStock handled %d times, want once", n)
		}
	})
}

// A due timeout whose instance another process holds (another recovery
// pass that found it too) is left to that process: the delivery operation
// of the pass that lost the lock does not fail.
func TestManager_recovery_leaves_a_locked_timeout_without_error(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		w := newWorld(t, newStore(t))
		cfg := w.config()
		var mu sync.Mutex
		results := map[string][]error{}
		cfg.Registry.MustRegister(hooks.HookFunc(func(ctx context.Context, op hooks.Operation, next hooks.Next) error {
			err := next(ctx)
			mu.Lock()
			results[op.Name] = append(results[op.Name], err)
			mu.Unlock()
			return err
		}), hooks.WithOperations("saga.recovery.timeouts"))
		m, _ := w.manager(cfg, orderSaga(), true)
		w.publish("8b1f0c35-0000-4000-8000-000000000161", "corr-16", &OrderPlaced{OrderID: "o-16", Amount: slowPayment})
		w.waitStatus("o-16", "awaiting_payment")
		w.clock.Advance(paymentDeadline)

		ctx := context.Background()
		// The step that reached awaiting_payment releases its lock just
		// after saving: take the lock once it is free.
		eventually(t, "the instance lock", func() bool {
			ok, err := w.store.TryLock(ctx, sagaType, "o-16", "the-other-pass", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			return ok
		})
		if err := m.RecoverOnce(ctx); err != nil {
			t.Fatalf("RecoverOnce: %v", err)
		}
		mu.Lock()
		got := results["saga.recovery.timeouts"]
		mu.Unlock()
		if len(got) != 1 || got[0] != nil {
			t.Errorf("saga.recovery.timeouts results %v, want one success", got)
		}
		if inst, _, _ := w.store.Load(ctx, sagaType, "o-16"); inst.Outcome != "" || len(inst.Timeouts) != 1 {
			t.Errorf("instance %+v: the timeout must stay for the holder or the next pass", inst)
		}
	})
}
