package sagas_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// testStore is the conformance suite of [sagas.Store]: it checks the
// contract of every method against the store newStore returns. newStore is
// called once per subtest and must return an empty store (or one isolated
// from every other call) that is cleaned up with t.
//
// Times that come back from the indexes (DueTimeout.Due, Active's oldest)
// are compared with millisecond-aligned inputs, as a store may keep them at
// millisecond precision; instance fields must come back exactly.
func testStore(t *testing.T, newStore func(t *testing.T) sagas.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s sagas.Store)
	}{
		{"load_missing", testLoadMissing},
		{"round_trip", testRoundTrip},
		{"conflict", testConflict},
		{"version_must_follow_expected", testVersionMustFollowExpected},
		{"concurrent_saves", testConcurrentSaves},
		{"history", testHistory},
		{"pending", testPending},
		{"with_pending_limit", testWithPendingLimit},
		{"due_timeouts", testDueTimeouts},
		{"replace_timeouts", testReplaceTimeouts},
		{"active", testActive},
		{"lock", testLock},
		{"lock_expiry", testLockExpiry},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.fn(t, newStore(t))
		})
	}
}

func testLoadMissing(t *testing.T, s sagas.Store) {
	ctx := context.Background()
	inst, found, err := s.Load(ctx, sagaType, "nobody")
	if err != nil || found {
		t.Fatalf("Load missing: found=%v err=%v, want not found and no error", found, err)
	}
	if inst.Version != 0 {
		t.Errorf("Load missing: version %d, want 0", inst.Version)
	}
	hist, err := s.History(ctx, sagaType, "nobody")
	if err != nil || len(hist) != 0 {
		t.Errorf("History missing: %v, %v; want empty and no error", hist, err)
	}
}

func testRoundTrip(t *testing.T, s sagas.Store) {
	zone := time.FixedZone("UTC+2", 2*3600)
	want := sagas.Instance{
		Type: sagaType, ID: "order-1", Version: 1,
		Status: "awaiting_payment", Outcome: "",
		State:     []byte("{\"total\":12.5,\"bin\":\"\x00\xff\"}"),
		Processed: []string{"ev-1", "timeout-1"},
		Pending: []sagas.PendingMessage{
			{UUID: "c-1", Topic: "commands.charge", Metadata: map[string]string{"traceparent": "00-x", "name": "Charge"}, Payload: []byte(`{"amount":12}`)},
			{UUID: "c-2", Topic: "commands.reserve", Payload: []byte{0, 1, 2, 255}},
		},
		Timeouts: []sagas.Timeout{{
			ID: "to-1", Name: "payment",
			Due:         time.Date(2026, 3, 4, 7, 0, 0, 123456789, zone),
			ScheduledAt: time.Date(2026, 3, 4, 6, 0, 0, 987654321, zone),
			Trace:       map[string]string{"traceparent": "00-abc-def-01", "tracestate": "k=v"},
		}},
		Failures:  2,
		LastError: "card declined: \"insufficient\"",
		StartedAt: time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC),
		UpdatedAt: time.Date(2026, 3, 4, 5, 6, 8, 1, zone),
	}
	if err := s.Save(context.Background(), sagas.SaveRequest{Instance: want, Expected: 0, Record: record(1)}); err != nil {
		t.Fatalf("Save: %v", err)
	}
	got := load(t, s, sagaType, "order-1")
	assertInstance(t, got, want)
}

func testConflict(t *testing.T, s sagas.Store) {
	ctx := context.Background()
	save(t, s, instance("order-1", 1))

	// Creating an instance that exists.
	again := instance("order-1", 1)
	again.Status = "overwritten"
	err := s.Save(ctx, sagas.SaveRequest{Instance: again, Expected: 0, Record: record(1)})
	if !errors.Is(err, sagas.ErrConflict) {
		t.Errorf("create when it exists: %v, want ErrConflict", err)
	}
	// Saving over a version that is not the stored one.
	for _, expected := range []int64{2, 5} {
		next := instance("order-1", expected+1)
		err := s.Save(ctx, sagas.SaveRequest{Instance: next, Expected: expected, Record: record(expected + 1)})
		if !errors.Is(err, sagas.ErrConflict) {
			t.Errorf("save expecting v%d over v1: %v, want ErrConflict", expected, err)
		}
	}
	assertInstance(t, load(t, s, sagaType, "order-1"), instance("order-1", 1))
	assertHistoryVersions(t, s, "order-1", 1)

	save(t, s, instance("order-1", 2))
	assertInstance(t, load(t, s, sagaType, "order-1"), instance("order-1", 2))
}

func testVersionMustFollowExpected(t *testing.T, s sagas.Store) {
	ctx := context.Background()
	for _, v := range []int64{0, 2, 3} {
		err := s.Save(ctx, sagas.SaveRequest{Instance: instance("order-1", v), Expected: 0, Record: record(v)})
		if err == nil || errors.Is(err, sagas.ErrConflict) {
			t.Errorf("Save v%d expecting 0: %v, want an error other than ErrConflict", v, err)
		}
	}
	if _, found, err := s.Load(ctx, sagaType, "order-1"); found || err != nil {
		t.Errorf("after refused saves: found=%v err=%v, want nothing written", found, err)
	}
}

func testConcurrentSaves(t *testing.T, s sagas.Store) {
	const racers = 8
	race := func(t *testing.T, expected int64) {
		t.Helper()
		var (
			wg        sync.WaitGroup
			start     = make(chan struct{})
			errs      = make([]error, racers)
			winStatus = make([]string, racers)
		)
		for i := range racers {
			wg.Go(func() {
				inst := instance("order-1", expected+1)
				inst.Status = fmt.Sprintf("racer_%d", i)
				winStatus[i] = inst.Status
				<-start
				errs[i] = s.Save(context.Background(), sagas.SaveRequest{Instance: inst, Expected: expected, Record: record(expected + 1)})
			})
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			switch {
			case err == nil && winner >= 0:
				t.Errorf("expecting v%d: racers %d and %d both won", expected, winner, i)
			case err == nil:
				winner = i
			case !errors.Is(err, sagas.ErrConflict):
				t.Errorf("expecting v%d: racer %d: %v, want nil or ErrConflict", expected, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("expecting v%d: no racer won: %v", expected, errs)
		}
		got := load(t, s, sagaType, "order-1")
		if got.Version != expected+1 || got.Status != winStatus[winner] {
			t.Errorf("after race: v%d %q, want v%d %q", got.Version, got.Status, expected+1, winStatus[winner])
		}
	}
	race(t, 0) // racing creations
	race(t, 1) // racing steps
	assertHistoryVersions(t, s, "order-1", 1, 2)
}

func testHistory(t *testing.T, s sagas.Store) {
	ctx := context.Background()
	for v := int64(1); v <= 5; v++ {
		rec := record(v)
		rec.Commands = []sagas.CommandRecord{{Type: "Charge", UUID: fmt.Sprintf("c-%d", v)}}
		rec.TraceID, rec.SpanID, rec.Error = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "boom"
		req := sagas.SaveRequest{Instance: instance("order-1", v), Expected: v - 1, Record: rec, HistoryLimit: 3}
		if err := s.Save(ctx, req); err != nil {
			t.Fatalf("Save v%d: %v", v, err)
		}
	}
	hist, err := s.History(ctx, sagaType, "order-1")
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	if len(hist) != 3 {
		t.Fatalf("History kept %d records, want the newest 3: %+v", len(hist), hist)
	}
	for i, got := range hist {
		v := int64(i + 3)
		want := record(v)
		want.Commands = []sagas.CommandRecord{{Type: "Charge", UUID: fmt.Sprintf("c-%d", v)}}
		want.TraceID, want.SpanID, want.Error = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", "boom"
		if !got.Time.Equal(want.Time) {
			t.Errorf("record %d: time %v, want %v", i, got.Time, want.Time)
		}
		got.Time, want.Time = time.Time{}, time.Time{}
		if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", want) {
			t.Errorf("record %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	// Another instance's history is its own.
	save(t, s, instance("order-2", 1))
	assertHistoryVersions(t, s, "order-2", 1)
}

func testPending(t *testing.T, s sagas.Store) {
	ctx := context.Background()
	tricky := sagas.PendingMessage{
		UUID: "c-2", Topic: "commands/reserve",
		Metadata: map[string]string{"note": "<&> \"quoted\" ünïcode / slash", "empty": "", "1": "numeric key"},
		Payload:  []byte{0, '"', '\\', 0xff, '/'},
	}
	inst := instance("order-1", 1)
	inst.Pending = []sagas.PendingMessage{
		{UUID: "c-1", Topic: "commands.charge", Metadata: map[string]string{}, Payload: []byte("{}")},
		tricky,
		{UUID: "c-3", Topic: "commands.notify"},
	}
	save(t, s, inst)
	save(t, s, instance("order-2", 1)) // no pending messages
	assertPendingIDs(t, s, sagaType, "order-1")

	if err := s.MarkSent(ctx, sagaType, "order-1", []string{"c-1", "c-3", "unknown"}); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	got := load(t, s, sagaType, "order-1")
	if got.Version != 1 {
		t.Errorf("MarkSent changed the version to %d", got.Version)
	}
	assertPending(t, "after MarkSent c-1 c-3", got.Pending, []sagas.PendingMessage{tricky})
	assertPendingIDs(t, s, sagaType, "order-1")

	if err := s.MarkSent(ctx, sagaType, "order-1", []string{"c-2"}); err != nil {
		t.Fatalf("MarkSent: %v", err)
	}
	got = load(t, s, sagaType, "order-1")
	assertPending(t, "after MarkSent c-2", got.Pending, nil)
	assertPendingIDs(t, s, sagaType)
	if err := s.MarkSent(ctx, sagaType, "order-1", []string{"c-2"}); err != nil {
		t.Errorf("MarkSent again: %v", err)
	}

	// A save with pending messages indexes the instance, one without
	// drops it again.
	next := instance("order-1", 2)
	next.Pending = []sagas.PendingMessage{{UUID: "c-4", Topic: "t"}}
	save(t, s, next)
	assertPendingIDs(t, s, sagaType, "order-1")
	save(t, s, instance("order-1", 3))
	assertPendingIDs(t, s, sagaType)

	// MarkSent of an instance never saved creates nothing.
	if err := s.MarkSent(ctx, sagaType, "nobody", []string{"c-1"}); err != nil {
		t.Errorf("MarkSent of a missing instance: %v", err)
	}
	if _, found, err := s.Load(ctx, sagaType, "nobody"); found || err != nil {
		t.Errorf("MarkSent of a missing instance: found=%v err=%v, want nothing created", found, err)
	}
}

func testWithPendingLimit(t *testing.T, s sagas.Store) {
	ctx := context.Background()
	var all []string
	for i := range 6 {
		inst := instance(fmt.Sprintf("order-%d", i), 1)
		inst.Pending = []sagas.PendingMessage{{UUID: fmt.Sprintf("c-%d", i), Topic: "t"}}
		save(t, s, inst)
		all = append(all, inst.ID)
	}
	other := instance("order-x", 1)
	other.Type = otherType
	other.Pending = []sagas.PendingMessage{{UUID: "c-x", Topic: "t"}}
	save(t, s, other)

	for range 3 {
		ids, err := s.WithPending(ctx, sagaType, 2)
		if err != nil {
			t.Fatalf("WithPending: %v", err)
		}
		if len(ids) != 2 || ids[0] == ids[1] || !slices.Contains(all, ids[0]) || !slices.Contains(all, ids[1]) {
			t.Errorf("WithPending limit 2: %v, want 2 distinct of %v", ids, all)
		}
	}
	assertPendingIDs(t, s, sagaType, all...)
	assertPendingIDs(t, s, otherType, "order-x")
}

func testDueTimeouts(t *testing.T, s sagas.Store) {
	ctx := context.Background()
	// Twelve instances (so several buckets of a bucketed store), saved in
	// an order unrelated to their due times, plus one not due and one of
	// another saga type.
	order := []int{7, 2, 11, 0, 5, 9, 3, 10, 1, 6, 8, 4}
	for _, i := range order {
		inst := instance(fmt.Sprintf("order-%02d", i), 1)
		inst.Timeouts = []sagas.Timeout{{
			ID: fmt.Sprintf("to-%02d", i), Name: "payment",
			Due: base.Add(time.Duration(i) * time.Second), ScheduledAt: base,
		}}
		save(t, s, inst)
	}
	later := instance("order-later", 1)
	later.Timeouts = []sagas.Timeout{{ID: "to-later", Name: "payment", Due: base.Add(time.Hour), ScheduledAt: base}}
	save(t, s, later)
	other := instance("order-00", 1)
	other.Type = otherType
	other.Timeouts = []sagas.Timeout{{ID: "to-other", Name: "ship", Due: base, ScheduledAt: base}}
	save(t, s, other)

	now := base.Add(8 * time.Second) // order-08 is due exactly now
	want := func(n int) []sagas.DueTimeout {
		var due []sagas.DueTimeout
		for i := range n {
			due = append(due, sagas.DueTimeout{
				Type: sagaType, ID: fmt.Sprintf("order-%02d", i), TimeoutID: fmt.Sprintf("to-%02d", i),
				Due: base.Add(time.Duration(i) * time.Second),
			})
		}
		return due
	}
	for _, tt := range []struct {
		limit, want int
	}{{5, 5}, {9, 9}, {100, 9}, {1, 1}} {
		got, err := s.DueTimeouts(ctx, sagaType, now, tt.limit)
		if err != nil {
			t.Fatalf("DueTimeouts: %v", err)
		}
		assertDue(t, fmt.Sprintf("limit %d", tt.limit), got, want(tt.want))
	}
	// A due time between two milliseconds is never reported early; its
	// Due may come back rounded up to the millisecond.
	sub := instance("order-sub", 1)
	sub.Type = otherType
	sub.Timeouts = []sagas.Timeout{{ID: "to-sub", Name: "ship", Due: base.Add(time.Hour + 500*time.Microsecond), ScheduledAt: base}}
	save(t, s, sub)
	got, err := s.DueTimeouts(ctx, otherType, base.Add(time.Hour), 10)
	if err != nil || len(got) != 1 || got[0].TimeoutID != "to-other" {
		t.Errorf("DueTimeouts half a millisecond early: %v, %v; want only to-other", got, err)
	}
	got, err = s.DueTimeouts(ctx, otherType, base.Add(time.Hour+time.Millisecond), 10)
	if err != nil || len(got) != 2 || got[1].TimeoutID != "to-sub" ||
		got[1].Due.Before(sub.Timeouts[0].Due) || !got[1].Due.Before(sub.Timeouts[0].Due.Add(time.Millisecond)) {
		t.Errorf("DueTimeouts of a sub-millisecond due time: %+v, %v; want to-other, then to-sub due within [due, due+1ms)", got, err)
	}

	got, err = s.DueTimeouts(ctx, sagaType, base.Add(-time.Millisecond), 10)
	if err != nil || len(got) != 0 {
		t.Errorf("DueTimeouts before any is due: %v, %v; want none", got, err)
	}
	got, err = s.DueTimeouts(ctx, otherType, now, 10)
	if err != nil {
		t.Fatalf("DueTimeouts: %v", err)
	}
	assertDue(t, otherType, got, []sagas.DueTimeout{{Type: otherType, ID: "order-00", TimeoutID: "to-other", Due: base}})
}

func testReplaceTimeouts(t *testing.T, s sagas.Store) {
	ctx := context.Background()
	inst := instance("order-1", 1)
	inst.Timeouts = []sagas.Timeout{
		{ID: "to-a", Name: "payment", Due: base, ScheduledAt: base},
		{ID: "to-b", Name: "reminder", Due: base.Add(time.Second), ScheduledAt: base},
	}
	save(t, s, inst)
	now := base.Add(time.Minute)

	// Step 2 keeps to-b, drops to-a, adds to-c.
	next := instance("order-1", 2)
	next.Timeouts = []sagas.Timeout{
		{ID: "to-b", Name: "reminder", Due: base.Add(time.Second), ScheduledAt: base},
		{ID: "to-c", Name: "shipping", Due: base.Add(2 * time.Second), ScheduledAt: base},
	}
	save(t, s, next)
	got, err := s.DueTimeouts(ctx, sagaType, now, 10)
	if err != nil {
		t.Fatalf("DueTimeouts: %v", err)
	}
	assertDue(t, "after replacing", got, []sagas.DueTimeout{
		{Type: sagaType, ID: "order-1", TimeoutID: "to-b", Due: base.Add(time.Second)},
		{Type: sagaType, ID: "order-1", TimeoutID: "to-c", Due: base.Add(2 * time.Second)},
	})
	assertInstance(t, load(t, s, sagaType, "order-1"), next)

	// The saga ends: no timeout left.
	done := instance("order-1", 3)
	done.Outcome = sagas.OutcomeCompleted
	save(t, s, done)
	got, err = s.DueTimeouts(ctx, sagaType, now, 10)
	if err != nil || len(got) != 0 {
		t.Errorf("DueTimeouts after the saga ended: %v, %v; want none", got, err)
	}
}

func testActive(t *testing.T, s sagas.Store) {
	assertActive(t, s, sagaType, 0, time.Time{})

	for i := range 5 {
		inst := instance(fmt.Sprintf("order-%d", i), 1)
		inst.StartedAt = base.Add(time.Duration(10-i) * time.Minute) // order-4 is the oldest
		save(t, s, inst)
	}
	other := instance("order-x", 1)
	other.Type, other.StartedAt = otherType, base
	save(t, s, other)
	assertActive(t, s, sagaType, 5, base.Add(6*time.Minute))

	// The oldest ends: the next oldest is reported.
	ended := instance("order-4", 2)
	ended.StartedAt, ended.Outcome = base.Add(6*time.Minute), sagas.OutcomeFailed
	save(t, s, ended)
	assertActive(t, s, sagaType, 4, base.Add(7*time.Minute))
	// Another step of an active instance keeps it counted once.
	step := instance("order-3", 2)
	step.StartedAt = base.Add(7 * time.Minute)
	save(t, s, step)
	assertActive(t, s, sagaType, 4, base.Add(7*time.Minute))
	done := instance("order-1", 2)
	done.StartedAt, done.Outcome = base.Add(9*time.Minute), sagas.OutcomeTimedOut
	save(t, s, done)
	assertActive(t, s, sagaType, 3, base.Add(7*time.Minute))
	assertActive(t, s, otherType, 1, base)
}

func testLock(t *testing.T, s sagas.Store) {
	ctx := context.Background()
	lock := func(id, token string, want bool) {
		t.Helper()
		got, err := s.TryLock(ctx, sagaType, id, token, time.Minute)
		if err != nil || got != want {
			t.Errorf("TryLock %s with %s: %v, %v; want %v", id, token, got, err, want)
		}
	}
	unlock := func(id, token string, want bool) {
		t.Helper()
		got, err := s.Unlock(ctx, sagaType, id, token)
		if err != nil || got != want {
			t.Errorf("Unlock %s with %s: %v, %v; want %v", id, token, got, err, want)
		}
	}
	lock("order-1", "a", true)
	lock("order-1", "b", false)
	lock("order-1", "a", false) // not reentrant
	lock("order-2", "b", true)  // one lock per instance
	unlock("order-1", "b", false)
	lock("order-1", "c", false) // b's unlock left a's lock in place
	unlock("order-1", "a", true)
	unlock("order-1", "a", false)
	lock("order-1", "b", true)
	unlock("never-locked", "a", false)

	if got, err := s.TryLock(ctx, otherType, "order-1", "z", time.Minute); err != nil || !got {
		t.Errorf("TryLock of another saga type's instance: %v, %v; want true", got, err)
	}
}

func testLockExpiry(t *testing.T, s sagas.Store) {
	ctx := context.Background()
	if got, err := s.TryLock(ctx, sagaType, "order-1", "a", 50*time.Millisecond); err != nil || !got {
		t.Fatalf("TryLock: %v, %v", got, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := s.TryLock(ctx, sagaType, "order-1", "b", time.Minute)
		if err != nil {
			t.Fatalf("TryLock: %v", err)
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a lock taken for 50ms is still held after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got, err := s.Unlock(ctx, sagaType, "order-1", "a"); err != nil || got {
		t.Errorf("Unlock with the expired token: %v, %v; want false", got, err)
	}
	if got, err := s.Unlock(ctx, sagaType, "order-1", "b"); err != nil || !got {
		t.Errorf("Unlock with the new token: %v, %v; want true", got, err)
	}
}
