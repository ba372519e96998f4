package sagas_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// An instance locked by another process makes the event nack (after a
// short wait), never fail; once the holder's lock expires (a dead
// process), the event is applied once.
func TestManager_locked_instance_nacks_until_the_lock_expires(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		w := newWorld(t, newStore(t))
		cfg := w.config()
		cfg.LockWait = 10 * time.Millisecond
		logs := &logBuffer{}
		cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
		m, res := w.manager(cfg, orderSaga(), true)
		ctx := context.Background()
		ok, err := w.store.TryLock(ctx, sagaType, "o-9", "a-dead-process", 300*time.Millisecond)
		if err != nil || !ok {
			t.Fatalf("cannot take the lock: %v %v", ok, err)
		}
		const placed = "8b1f0c35-0000-4000-8000-000000000091"
		w.publish(placed, "corr-9", &OrderPlaced{OrderID: "o-9", Amount: 10})
		eventually(t, "two nacks", func() bool { return len(res.of(placed)) >= 2 })
		if _, found, _ := w.store.Load(ctx, sagaType, "o-9"); found {
			t.Fatal("a step ran while another process held the lock")
		}
		w.waitFor("o-9", "completed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompleted })
		outs := res.of(placed)
		for _, err := range outs[:len(outs)-1] {
			if !errors.Is(err, sagas.ErrLockNotAcquired) {
				t.Errorf("nack error %v, want ErrLockNotAcquired", err)
			}
		}
		if outs[len(outs)-1] != nil {
			t.Errorf("last result %v, want an ack", outs[len(outs)-1])
		}
		wantSteps(t, history(t, m, "o-9"), happySteps...)
		assertLogged(t, logs.String(), "WARN", map[string]any{
			"saga.type": sagaType, "saga.id": "o-9", "event.id": placed, "attempt": float64(1),
		}, "lock not acquired")
	})
}
