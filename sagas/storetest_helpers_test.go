package sagas_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// Fixtures and assertions of the Store conformance suite (testStore).

// otherType is a second saga type; sagaType ("OrderSaga") is the order
// saga's (fixture_test.go).
const otherType = "ShippingSaga"

// base is a millisecond-aligned time the tests build their times from.
var base = time.Date(2026, 3, 4, 5, 6, 7, 8_000_000, time.UTC)

// instance returns a minimal valid instance at version v.
func instance(id string, v int64) sagas.Instance {
	return sagas.Instance{
		Type: sagaType, ID: id, Version: v, Status: fmt.Sprintf("step_%d", v),
		State:     []byte(fmt.Sprintf(`{"v":%d}`, v)),
		StartedAt: base, UpdatedAt: base.Add(time.Duration(v) * time.Second),
	}
}

// record returns a minimal step record for version v.
func record(v int64) sagas.StepRecord {
	return sagas.StepRecord{
		Version: v, Trigger: "event", EventType: "OrderPlaced", EventID: fmt.Sprintf("ev-%d", v),
		FromState: "a", ToState: "b", Outcome: "running", Process: "p1",
		Time: base.Add(time.Duration(v) * time.Second),
	}
}

// save saves inst over version inst.Version-1 and fails the test on error.
func save(t *testing.T, s sagas.Store, inst sagas.Instance) {
	t.Helper()
	req := sagas.SaveRequest{Instance: inst, Expected: inst.Version - 1, Record: record(inst.Version)}
	if err := s.Save(context.Background(), req); err != nil {
		t.Fatalf("Save %s/%s v%d: %v", inst.Type, inst.ID, inst.Version, err)
	}
}

// load loads an instance that must exist.
func load(t *testing.T, s sagas.Store, sagaType, id string) sagas.Instance {
	t.Helper()
	inst, found, err := s.Load(context.Background(), sagaType, id)
	if err != nil || !found {
		t.Fatalf("Load %s/%s: found=%v err=%v", sagaType, id, found, err)
	}
	return inst
}

// assertInstance compares every field of got and want; nil and empty
// slices and maps are equal, times are compared with Equal.
func assertInstance(t *testing.T, got, want sagas.Instance) {
	t.Helper()
	check := func(field string, ok bool, g, w any) {
		t.Helper()
		if !ok {
			t.Errorf("%s/%s %s:\n got %v\nwant %v", want.Type, want.ID, field, g, w)
		}
	}
	check("Type", got.Type == want.Type, got.Type, want.Type)
	check("ID", got.ID == want.ID, got.ID, want.ID)
	check("Version", got.Version == want.Version, got.Version, want.Version)
	check("Status", got.Status == want.Status, got.Status, want.Status)
	check("Outcome", got.Outcome == want.Outcome, got.Outcome, want.Outcome)
	check("State", bytes.Equal(got.State, want.State), got.State, want.State)
	check("Processed", slices.Equal(got.Processed, want.Processed), got.Processed, want.Processed)
	check("Failures", got.Failures == want.Failures, got.Failures, want.Failures)
	check("LastError", got.LastError == want.LastError, got.LastError, want.LastError)
	check("StartedAt", got.StartedAt.Equal(want.StartedAt), got.StartedAt, want.StartedAt)
	check("UpdatedAt", got.UpdatedAt.Equal(want.UpdatedAt), got.UpdatedAt, want.UpdatedAt)
	assertPending(t, "Pending", got.Pending, want.Pending)
	check("Timeouts", len(got.Timeouts) == len(want.Timeouts), got.Timeouts, want.Timeouts)
	for i := range min(len(got.Timeouts), len(want.Timeouts)) {
		g, w := got.Timeouts[i], want.Timeouts[i]
		ok := g.ID == w.ID && g.Name == w.Name && g.Due.Equal(w.Due) &&
			g.ScheduledAt.Equal(w.ScheduledAt) && mapsEqual(g.Trace, w.Trace)
		check(fmt.Sprintf("Timeouts[%d]", i), ok, g, w)
	}
}

func assertPending(t *testing.T, what string, got, want []sagas.PendingMessage) {
	t.Helper()
	ok := len(got) == len(want)
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		ok = ok && g.UUID == w.UUID && g.Topic == w.Topic &&
			mapsEqual(g.Metadata, w.Metadata) && bytes.Equal(g.Payload, w.Payload)
	}
	if !ok {
		t.Errorf("%s:\n got %+v\nwant %+v", what, got, want)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// assertPendingIDs checks that WithPending with a large limit returns
// exactly want, in any order.
func assertPendingIDs(t *testing.T, s sagas.Store, sagaType string, want ...string) {
	t.Helper()
	got, err := s.WithPending(context.Background(), sagaType, 1000)
	if err != nil {
		t.Fatalf("WithPending: %v", err)
	}
	slices.Sort(got)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(got, want) {
		t.Errorf("WithPending %s: %v, want %v", sagaType, got, want)
	}
}

func assertDue(t *testing.T, what string, got, want []sagas.DueTimeout) {
	t.Helper()
	ok := len(got) == len(want)
	for i := range min(len(got), len(want)) {
		g, w := got[i], want[i]
		ok = ok && g.Type == w.Type && g.ID == w.ID && g.TimeoutID == w.TimeoutID && g.Due.Equal(w.Due)
	}
	if !ok {
		t.Errorf("DueTimeouts %s:\n got %+v\nwant %+v", what, got, want)
	}
}

func assertActive(t *testing.T, s sagas.Store, sagaType string, count int64, oldest time.Time) {
	t.Helper()
	n, o, err := s.Active(context.Background(), sagaType)
	if err != nil {
		t.Fatalf("Active: %v", err)
	}
	if n != count || !o.Equal(oldest) {
		t.Errorf("Active %s: %d oldest %v, want %d oldest %v", sagaType, n, o, count, oldest)
	}
}

func assertHistoryVersions(t *testing.T, s sagas.Store, id string, want ...int64) {
	t.Helper()
	hist, err := s.History(context.Background(), sagaType, id)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	var got []int64
	for _, r := range hist {
		got = append(got, r.Version)
	}
	if !slices.Equal(got, want) {
		t.Errorf("History %s versions: %v, want %v", id, got, want)
	}
}
