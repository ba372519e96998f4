package projections_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

// TestWorker_several_streams_in_entry_ID_order reads two streams (sharing
// a hash tag, as Cluster needs) with small batches and checks that events
// are applied in entry ID order across them, each once.
func TestWorker_several_streams_in_entry_ID_order(t *testing.T) {
	t.Parallel()
	client, _ := testsvc.RedisPrefix(t)
	var mu sync.Mutex
	var applied []projections.Event
	proj := projections.NewProjection("merged", func(_ context.Context, ev projections.Event, _ *projections.Batch) error {
		mu.Lock()
		applied = append(applied, ev)
		mu.Unlock()
		return nil
	})
	w, _ := newRedisWorker(t, projections.Config{Projection: proj, Streams: []string{"{orders}.placed", "{orders}.paid"}, BatchSize: 3})
	streams := w.StreamNames()
	// Uneven bursts, so that one stream's batch runs ahead of the other's.
	want := 0
	for round := range 6 {
		addEvents(t, client, streams[round%2], 0, 1+round*2, 3)
		want += 1 + round*2
		time.Sleep(2 * time.Millisecond)
	}
	stop := start(t, w)
	waitCaughtUp(t, w, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != want {
		t.Fatalf("applied %d events, want %d", len(applied), want)
	}
	seen := map[string]bool{}
	for i, ev := range applied {
		if seen[ev.Stream+ev.ID] {
			t.Fatalf("entry %s of %s applied twice", ev.ID, ev.Stream)
		}
		seen[ev.Stream+ev.ID] = true
		if i > 0 && ev.Time().Before(applied[i-1].Time()) {
			t.Fatalf("event %d (%s) applied after a later one (%s)", i, ev.ID, applied[i-1].ID)
		}
	}
}
