package projections_test

import (
	"context"
	"strconv"
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
	client, _ := testsvc.RedisPrefix(t)
	const n = 5000
	reg, rec := newRecorder(t, "replay.*")
	w, store := newRedisWorker(t, projections.Config{
		Projection: sumProjection("rebuilt"), Streams: []string{"events"}, BatchSize: 20, Partitions: 2,
		Key: projections.MetadataKey(accountKey), LeaseTTL: 400 * time.Millisecond, Hooks: reg,
	})
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
}

func mustLag(t *testing.T, w *projections.Worker) []projections.Lag {
	t.Helper()
	lags, err := w.Lag(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return lags
}
