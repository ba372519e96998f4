package sagas_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// conflictStore answers conflicts more Saves with ErrConflict, as if
// another process saved in between.
type conflictStore struct {
	sagas.Store
	conflicts atomic.Int64
}

func (s *conflictStore) Save(ctx context.Context, req sagas.SaveRequest) error {
	if s.conflicts.Add(-1) >= 0 {
		return sagas.ErrConflict
	}
	return s.Store.Save(ctx, req)
}

func TestManager_version_conflicts_are_retried(t *testing.T) {
	forEachStore(t, func(t *testing.T, newStore func(*testing.T) sagas.Store) {
		store := &conflictStore{Store: newStore(t)}
		w := newWorld(t, store)
		cfg := w.config()
		ops := &opRecorder{}
		cfg.Registry.MustRegister(hooks.HookFunc(ops.hook), hooks.WithOperations("saga.run.*", "saga.version_conflict"))
		m, res := w.manager(cfg, orderSaga(), true)

		// Two conflicts: the step is retried and applied, the event acked.
		store.conflicts.Store(2)
		const first = "8b1f0c35-0000-4000-8000-000000000141"
		w.publish(first, "corr-14", &OrderPlaced{OrderID: "o-14", Amount: slowPayment})
		w.waitStatus("o-14", "awaiting_payment")
		if outs := res.of(first); len(outs) != 1 || outs[0] != nil {
			t.Errorf("results %v, want one ack", outs)
		}
		var seen []int64
		for _, op := range ops.named("saga.run.OrderSaga") {
			v, _ := op.Attr("saga.version_conflicts")
			seen = append(seen, v.Int64())
		}
		if len(seen) < 3 || seen[0] != 0 || seen[1] != 1 || seen[2] != 2 {
			t.Errorf("saga.version_conflicts of the attempts = %v, want 0, 1, 2, ...", seen)
		}
		if err := cfg.Registry.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
		if n := len(ops.named("saga.version_conflict")); n != 2 {
			t.Errorf("saga.version_conflict notified %d times, want 2", n)
		}

		// Conflicts beyond MaxConflictRetries: the event is nacked, never
		// dropped, and applied once the conflicts stop.
		store.conflicts.Store(4)
		const paid = "8b1f0c35-0000-4000-8000-000000000142"
		w.publish(paid, "corr-14", &PaymentCharged{OrderID: "o-14"})
		w.waitFor("o-14", "completed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompleted })
		outs := res.of(paid)
		if len(outs) != 2 || !errors.Is(outs[0], sagas.ErrConflict) || outs[1] != nil {
			t.Errorf("results %v, want a nack with ErrConflict then an ack", outs)
		}
		recs := history(t, m, "o-14")
		wantSteps(t, recs, happySteps...)
	})
}
