package projections_test

import (
	"context"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

func sumCounts(m model) int64 {
	var n int64
	for _, v := range m.counts {
		c, _ := strconv.ParseInt(v, 10, 64)
		n += c
	}
	return n
}

func TestReplay_rebuilds_into_a_shadow_and_swaps_it_in(t *testing.T) {
	t.Parallel()
	for _, leased := range []bool{false, true} {
		name := "unleased"
		if leased {
			name = "leased"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			testReplay(t, leased)
		})
	}
}

func testReplay(t *testing.T, leased bool) {
	client, _ := testsvc.RedisPrefix(t)
	const n = 5000
	reg, rec := newRecorder(t, "replay.*")
	cfg := projections.Config{
		Projection: sumProjection("rebuilt"), Streams: []string{"events"}, BatchSize: 20, Partitions: 2,
		Key: projections.MetadataKey(accountKey), LeaseTTL: 400 * time.Millisecond, Hooks: reg,
	}
	var w *projections.Worker
	var store *projections.RedisStore
	if leased {
		c, prefix := testsvc.RedisPrefix(t)
		rs, err := projections.NewRedisStore(c, prefix)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Store, cfg.Leaser = rs, rs
		w, _ = newRedisWorker(t, cfg)
		store = rs
	} else {
		w, store = newRedisWorker(t, cfg)
	}
	stream := w.StreamNames()[0]
	addEvents(t, client, stream, 0, n, 13)
	start(t, w)
	waitCaughtUp(t, w, 30*time.Second)
	before := readModel(t, w)
	compareModels(t, before, expectedModel(0, n, 13))

	// Replay while the live worker runs; sample what readers and
	// operators see meanwhile.
	done := make(chan error, 1)
	go func() { done <- w.Replay(context.Background()) }()
	var samples []projections.ReplayProgress
	var replayErr error
sampling:
	for {
		select {
		case replayErr = <-done:
			break sampling
		case <-time.After(2 * time.Millisecond):
		}
		if p := w.ReplayProgress(); p.Running {
			samples = append(samples, p)
		}
		// Readers never see the half-built model.
		if got := sumCounts(readModel(t, w)); got != n {
			t.Fatalf("a reader saw %d events applied during the replay, want %d", got, n)
		}
		// Lag stays that of the active model: caught up.
		for _, l := range mustLag(t, w) {
			if l.Events != 0 {
				t.Fatalf("lag during the replay = %+v, want 0: the active model is caught up", l)
			}
		}
	}
	if replayErr != nil {
		t.Fatal(replayErr)
	}
	rising := 0
	for i := 1; i < len(samples); i++ {
		if samples[i].Done < samples[i-1].Done {
			t.Fatalf("progress fell from %d to %d", samples[i-1].Done, samples[i].Done)
		}
		if samples[i].Done > samples[i-1].Done {
			rising++
		}
	}
	last := samples[len(samples)-1]
	if rising < 2 || last.Total != n || last.Generation != 1 || last.Rate <= 0 {
		t.Fatalf("progress samples %d, rising %d times, last %+v; want it rising towards %d", len(samples), rising, last, n)
	}
	if p := w.ReplayProgress(); p.Running {
		t.Fatalf("progress after the replay = %+v, want not running", p)
	}
	if gen, _ := store.Generation(context.Background(), "rebuilt"); gen != 1 {
		t.Fatalf("active generation = %d, want 1", gen)
	}
	compareModels(t, readModel(t, w), before)
	if ops := rec.named("replay.start.rebuilt"); len(ops) != 1 || ops[0].err != nil {
		t.Fatalf("replay.start operations = %+v, want one that succeeded", ops)
	}

	// The live worker moved to the new generation and goes on from its
	// checkpoints.
	addEvents(t, client, stream, n, n+100, 13)
	waitCaughtUp(t, w, 30*time.Second)
	compareModels(t, readModel(t, w), expectedModel(0, n+100, 13))

	// The replaced generation can be dropped, the active one cannot.
	if err := w.DropGeneration(context.Background(), 1); !errors.Is(err, projections.ErrActiveGeneration) {
		t.Fatalf("DropGeneration(active) = %v, want ErrActiveGeneration", err)
	}
	old := projections.Partition{Projection: "rebuilt", Index: 0}
	if h, _ := store.Hash(context.Background(), old, "totals"); len(h) == 0 {
		t.Fatal("the old generation has no model to drop")
	}
	if err := w.DropGeneration(context.Background(), 0); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		old.Index = i
		h, _ := store.Hash(context.Background(), old, "totals")
		cp, _ := store.Load(context.Background(), old)
		if len(h) != 0 || len(cp) != 0 {
			t.Fatalf("partition %d of generation 0 after the drop: model %d fields, checkpoint %v", i, len(h), cp)
		}
		n, _ := client.Exists(context.Background(), store.Key(old, "hashes"), store.Key(old, "h:counts")).Result()
		if n != 0 {
			t.Fatalf("partition %d of generation 0 still has %d keys", i, n)
		}
	}
	compareModels(t, readModel(t, w), expectedModel(0, n+100, 13))
}

func mustLag(t *testing.T, w *projections.Worker) []projections.Lag {
	t.Helper()
	lags, err := w.Lag(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return lags
}

// A replay that a policy stops swaps nothing in: readers keep the model
// they had.
func TestReplay_stopped_by_a_poison_event_keeps_the_active_model(t *testing.T) {
	t.Parallel()
	var failing atomic.Bool
	inner := sumProjection("careful")
	proj := projections.NewProjection("careful", func(ctx context.Context, ev projections.Event, b *projections.Batch) error {
		if failing.Load() && string(ev.Payload) == "50" {
			return errPoison
		}
		return inner.Handle(ctx, ev, b)
	})
	log := projections.NewMemoryLog()
	for i := range 200 {
		log.Append("events", eventMessage(i, 4))
	}
	store := projections.NewMemoryStore()
	w, err := projections.NewWorker(projections.Config{
		Projection: proj, Streams: []string{"events"}, Source: log, Store: store, BatchSize: 10,
		Block: 5 * time.Millisecond, Retry: projections.RetryPolicy{Attempts: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := start(t, w)
	waitCaughtUp(t, w, 10*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	var poison *projections.PoisonError
	if err := w.Replay(context.Background()); !errors.As(err, &poison) {
		t.Fatalf("Replay = %v, want a PoisonError", err)
	}
	if gen, _ := store.Generation(context.Background(), "careful"); gen != 0 {
		t.Fatalf("active generation = %d, want 0", gen)
	}
	if w.ReplayProgress().Running {
		t.Fatal("replay still reported running")
	}
	compareModels(t, readModel(t, w), expectedModel(0, 200, 4))
}
