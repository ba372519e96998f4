package projections_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

var errPoison = errors.New("cannot apply: amount rejected")

// poisonProjection is sumProjection failing every attempt on the event
// whose payload is bad, counting the attempts.
func poisonProjection(name, bad string, attempts *atomic.Int64) projections.Projection {
	inner := sumProjection(name)
	return projections.NewProjection(name, func(ctx context.Context, ev projections.Event, b *projections.Batch) error {
		if ev.Metadata.Get("poison") == bad {
			attempts.Add(1)
			b.Incr("totals", "written-by-a-failed-attempt", 1)
			return errPoison
		}
		return inner.Handle(ctx, ev, b)
	})
}

func TestPoison_stop(t *testing.T) {
	t.Parallel()
	client, _ := testsvc.RedisPrefix(t)
	logger, logs := newLogger()
	reg, rec := newRecorder(t, "projection.*")
	var attempts atomic.Int64
	w, _ := newRedisWorker(t, projections.Config{
		Projection: poisonProjection("stopper", "yes", &attempts), Streams: []string{"events"}, BatchSize: 10,
		Retry:  projections.RetryPolicy{Attempts: 3, Initial: time.Millisecond},
		Logger: logger, Hooks: reg,
	})
	stream := w.StreamNames()[0]
	addEvents(t, client, stream, 0, 15, 3)
	addPoison(t, client, stream)
	addEvents(t, client, stream, 15, 30, 3)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := w.Run(ctx)
	var poison *projections.PoisonError
	if !errors.As(err, &poison) || !errors.Is(err, errPoison) || poison.Attempts != 3 {
		t.Fatalf("Run = %v, want a PoisonError after 3 attempts wrapping the handler's error", err)
	}
	if attempts.Load() != 3 {
		t.Fatalf("%d attempts, want 3", attempts.Load())
	}
	if err := w.Ready(ctx, time.Hour); !errors.Is(err, projections.ErrNotReady) {
		t.Fatalf("Ready = %v, want ErrNotReady", err)
	}
	// Everything before the poison event is applied, nothing after it,
	// and nothing of its failed attempts.
	compareModels(t, readModel(t, w), expectedModel(0, 15, 3))
	lags, err := w.Lag(ctx)
	if err != nil || lags[0].Events != 16 {
		t.Fatalf("lag = %+v, %v; want 16 events (the poison event and the 15 after it)", lags, err)
	}
	if got := rec.named("projection.process.stopper"); countErrors(got) != 3 {
		t.Fatalf("%d failed projection.process operations, want 3", countErrors(got))
	}
	if got := rec.named("projection.stopped."); len(got) != 1 || got[0].attrs["reason"].String() != "poison" {
		t.Fatalf("projection.stopped = %+v, want one with reason poison", got)
	}
	if !strings.Contains(logs.String(), "projection stopped at a poison event") {
		t.Fatalf("log = %s, want the poison record", logs.String())
	}

	// A restart stops at the same event again: it is never skipped.
	ctx2, cancel2 := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel2()
	if err := w.Run(ctx2); !errors.As(err, &poison) {
		t.Fatalf("second Run = %v, want a PoisonError", err)
	}
	compareModels(t, readModel(t, w), expectedModel(0, 15, 3))
}

func TestPoison_dead_letter(t *testing.T) {
	t.Parallel()
	client, _ := testsvc.RedisPrefix(t)
	logger, logs := newLogger()
	reg, rec := newRecorder(t, "projection.*")
	var attempts atomic.Int64
	w, store := newRedisWorker(t, projections.Config{
		Projection: poisonProjection("dlq", "yes", &attempts), Streams: []string{"events"}, BatchSize: 10,
		Retry:  projections.RetryPolicy{Attempts: 2, Initial: time.Millisecond},
		Poison: projections.PoisonDeadLetter, Logger: logger, Hooks: reg,
	})
	stream := w.StreamNames()[0]
	addEvents(t, client, stream, 0, 15, 3)
	poisonID, poisonUUID := addPoison(t, client, stream)
	// An entry that is not a Watermill message goes the same way.
	junk := client.XAdd(context.Background(), redisXAdd{stream: stream, values: map[string]any{"foo": "bar"}}.args()).Val()
	addEvents(t, client, stream, 15, 30, 3)

	stop := start(t, w)
	waitCaughtUp(t, w, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	compareModels(t, readModel(t, w), expectedModel(0, 30, 3))
	dls, err := store.DeadLetters(context.Background(), projections.Partition{Projection: "dlq"})
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 2 {
		t.Fatalf("%d dead letters, want 2: %+v", len(dls), dls)
	}
	if d := dls[0]; d.Event.ID != poisonID || d.Event.UUID != poisonUUID || d.Event.Metadata.Get("poison") != "yes" ||
		string(d.Event.Payload) != "1" || d.Error != errPoison.Error() {
		t.Fatalf("dead letter = %+v, want the poison event with its error", d)
	}
	if d := dls[1]; d.Event.ID != junk || !strings.Contains(d.Error, "_watermill_message_uuid") {
		t.Fatalf("dead letter = %+v, want the undecodable entry %s", d, junk)
	}
	if got := rec.named("projection.dead_letter.dlq"); len(got) != 2 {
		t.Fatalf("%d dead_letter operations, want 2", len(got))
	}
	if strings.Count(logs.String(), "moved to the dead-letter stream") != 2 {
		t.Fatalf("log = %s, want two dead-letter records", logs.String())
	}
}

func countErrors(ops []recorded) int {
	n := 0
	for _, op := range ops {
		if op.err != nil {
			n++
		}
	}
	return n
}
