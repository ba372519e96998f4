package sagas_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/sagas"
)

func saveLimited(t *testing.T, s sagas.Store, inst sagas.Instance, limit int) error {
	t.Helper()
	return s.Save(context.Background(), sagas.SaveRequest{
		Instance: inst, Expected: inst.Version - 1, HistoryLimit: limit,
		Record: sagas.StepRecord{Version: inst.Version, Trigger: "event", EventType: fmt.Sprint("E", inst.Version)},
	})
}

func TestMemoryStore_versions_and_copies(t *testing.T) {
	ctx := context.Background()
	s := sagas.NewMemoryStore()
	inst := sagas.Instance{Type: "T", ID: "1", Version: 1, State: []byte("a"), Processed: []string{"e1"},
		Pending:  []sagas.PendingMessage{{UUID: "u1", Topic: "t", Metadata: map[string]string{"k": "v"}, Payload: []byte("p")}},
		Timeouts: []sagas.Timeout{{ID: "t1", Name: "n", Trace: map[string]string{"traceparent": "x"}}}}
	if err := saveLimited(t, s, inst, 0); err != nil {
		t.Fatal(err)
	}
	// Changing what was saved changes nothing stored.
	inst.State[0] = 'X'
	inst.Processed[0] = "X"
	inst.Pending[0].Metadata["k"] = "X"
	inst.Timeouts[0].Trace["traceparent"] = "X"
	got, found, err := s.Load(ctx, "T", "1")
	if err != nil || !found {
		t.Fatal(found, err)
	}
	if string(got.State) != "a" || got.Processed[0] != "e1" || got.Pending[0].Metadata["k"] != "v" || got.Timeouts[0].Trace["traceparent"] != "x" {
		t.Errorf("stored instance changed through the caller's copy: %+v", got)
	}
	// Nor does changing what was loaded.
	got.State[0] = 'Y'
	again, _, _ := s.Load(ctx, "T", "1")
	if string(again.State) != "a" {
		t.Error("stored state changed through a loaded copy")
	}
	// Expected must match the stored version.
	stale := again
	stale.Version = 1
	if err := s.Save(ctx, sagas.SaveRequest{Instance: stale, Expected: 0}); !errors.Is(err, sagas.ErrConflict) {
		t.Errorf("save over an existing instance with Expected 0: %v, want ErrConflict", err)
	}
	again.Version = 2
	if err := saveLimited(t, s, again, 0); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := s.Load(ctx, "T", "missing"); found {
		t.Error("found an instance never saved")
	}
}

func TestMemoryStore_history_is_bounded(t *testing.T) {
	s := sagas.NewMemoryStore()
	for v := int64(1); v <= 5; v++ {
		if err := saveLimited(t, s, sagas.Instance{Type: "T", ID: "1", Version: v}, 3); err != nil {
			t.Fatal(err)
		}
	}
	recs, err := s.History(context.Background(), "T", "1")
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 3 || recs[0].Version != 3 || recs[2].Version != 5 {
		t.Errorf("history %+v, want versions 3..5", recs)
	}
}

func TestMemoryStore_indexes(t *testing.T) {
	ctx := context.Background()
	s := sagas.NewMemoryStore()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	_ = saveLimited(t, s, sagas.Instance{Type: "T", ID: "a", Version: 1, StartedAt: t0.Add(time.Hour),
		Pending:  []sagas.PendingMessage{{UUID: "u1"}, {UUID: "u2"}},
		Timeouts: []sagas.Timeout{{ID: "late", Due: t0.Add(2 * time.Minute)}, {ID: "early", Due: t0.Add(time.Minute)}}}, 0)
	_ = saveLimited(t, s, sagas.Instance{Type: "T", ID: "b", Version: 1, StartedAt: t0, Outcome: sagas.OutcomeCompleted}, 0)
	_ = saveLimited(t, s, sagas.Instance{Type: "T", ID: "c", Version: 1, StartedAt: t0.Add(2 * time.Hour)}, 0)
	_ = saveLimited(t, s, sagas.Instance{Type: "Other", ID: "a", Version: 1, Pending: []sagas.PendingMessage{{UUID: "x"}}}, 0)

	if ids, _ := s.WithPending(ctx, "T", 10); fmt.Sprint(ids) != "[a]" {
		t.Errorf("WithPending = %v, want [a]", ids)
	}
	due, _ := s.DueTimeouts(ctx, "T", t0.Add(5*time.Minute), 10)
	if len(due) != 2 || due[0].TimeoutID != "early" || due[1].TimeoutID != "late" {
		t.Errorf("DueTimeouts = %+v, want early then late", due)
	}
	if due, _ := s.DueTimeouts(ctx, "T", t0.Add(time.Minute), 10); len(due) != 1 {
		t.Errorf("DueTimeouts at the first due time = %+v, want it alone", due)
	}
	if n, oldest, _ := s.Active(ctx, "T"); n != 2 || !oldest.Equal(t0.Add(time.Hour)) {
		t.Errorf("Active = %d %s, want 2 from %s (completed ones do not count)", n, oldest, t0.Add(time.Hour))
	}
	if err := s.MarkSent(ctx, "T", "a", []string{"u1", "unknown"}); err != nil {
		t.Fatal(err)
	}
	if ids, _ := s.WithPending(ctx, "T", 10); fmt.Sprint(ids) != "[a]" {
		t.Errorf("WithPending after one of two sent = %v, want [a]", ids)
	}
	_ = s.MarkSent(ctx, "T", "a", []string{"u2"})
	if ids, _ := s.WithPending(ctx, "T", 10); len(ids) != 0 {
		t.Errorf("WithPending after all sent = %v, want none", ids)
	}
	if inst, _, _ := s.Load(ctx, "T", "a"); inst.Version != 1 {
		t.Errorf("MarkSent changed the version to %d", inst.Version)
	}
}

func TestMemoryStore_lock(t *testing.T) {
	ctx := context.Background()
	s := sagas.NewMemoryStore()
	if ok, _ := s.TryLock(ctx, "T", "1", "a", 50*time.Millisecond); !ok {
		t.Fatal("cannot take a free lock")
	}
	if ok, _ := s.TryLock(ctx, "T", "1", "b", time.Second); ok {
		t.Fatal("took a held lock")
	}
	if ok, _ := s.Unlock(ctx, "T", "1", "b"); ok {
		t.Fatal("released a lock with the wrong token")
	}
	time.Sleep(60 * time.Millisecond)
	if ok, _ := s.TryLock(ctx, "T", "1", "b", time.Second); !ok {
		t.Fatal("cannot take an expired lock")
	}
	if ok, _ := s.Unlock(ctx, "T", "1", "a"); ok {
		t.Fatal("the expired holder released the new holder's lock")
	}
	if ok, _ := s.Unlock(ctx, "T", "1", "b"); !ok {
		t.Fatal("the holder cannot release its lock")
	}
	if ok, _ := s.TryLock(ctx, "T", "1", "c", time.Second); !ok {
		t.Fatal("cannot take a released lock")
	}
}

// The in-memory store meets the same contract as the Redis one.
func TestMemoryStore_conformance(t *testing.T) {
	t.Parallel()
	testStore(t, func(*testing.T) sagas.Store { return sagas.NewMemoryStore() })
}
