package projections_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

// lagOf returns the lag of partition 0 in the worker's only stream.
func lagOf(t *testing.T, w *projections.Worker) projections.Lag {
	t.Helper()
	lags, err := w.Lag(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(lags) != 1 {
		t.Fatalf("got %d lags, want 1", len(lags))
	}
	return lags[0]
}

func wantLag(t *testing.T, w *projections.Worker, events int64) projections.Lag {
	t.Helper()
	l := lagOf(t, w)
	if l.Events != events || !l.Exact {
		t.Fatalf("lag = %d events (exact %v), want exactly %d", l.Events, l.Exact, events)
	}
	if events == 0 && l.Seconds != 0 {
		t.Fatalf("lag = %v seconds when caught up, want 0", l.Seconds)
	}
	return l
}

func TestLag_rises_while_paused_and_returns_to_zero(t *testing.T) {
	t.Parallel()
	client, _ := testsvc.RedisPrefix(t)
	w, _ := newRedisWorker(t, projections.Config{
		Projection: sumProjection("lag"), Streams: []string{"events"}, BatchSize: 16, Gaps: projections.GapContinue,
	})
	stream := w.StreamNames()[0]
	addEvents(t, client, stream, 0, 100, 5)
	stop := start(t, w)
	waitCaughtUp(t, w, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Caught up on an idle stream: 0 events, 0 seconds.
	time.Sleep(300 * time.Millisecond)
	wantLag(t, w, 0)

	// Paused: lag in events is exact; in seconds it is the age of the
	// oldest unapplied entry, by the Redis clock.
	added := time.Now()
	addEvents(t, client, stream, 100, 140, 5)
	time.Sleep(1200 * time.Millisecond)
	l := wantLag(t, w, 40)
	if elapsed := time.Since(added).Seconds(); l.Seconds < 1.1 || l.Seconds > elapsed+0.5 {
		t.Fatalf("lag = %.3fs, want between 1.1s and %.3fs", l.Seconds, elapsed+0.5)
	}
	if err := w.Ready(context.Background(), time.Second); err == nil {
		t.Fatal("Ready with the worker more than 1s behind: want an error")
	}
	if err := w.Ready(context.Background(), time.Minute); err != nil {
		t.Fatalf("Ready with a minute allowed: %v", err)
	}

	// XTRIM of applied entries and XDEL of an applied entry leave the lag
	// as it is.
	if err := client.XTrimMaxLen(context.Background(), stream, 60).Err(); err != nil {
		t.Fatal(err)
	}
	wantLag(t, w, 40)
	first, err := client.XRangeN(context.Background(), stream, "-", "+", 1).Result()
	if err != nil {
		t.Fatal(err)
	}
	client.XDel(context.Background(), stream, first[0].ID)
	wantLag(t, w, 40)

	// XDEL of unapplied entries: they are no longer behind (they are a gap).
	unapplied, err := client.XRevRangeN(context.Background(), stream, "+", "-", 5).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range unapplied {
		client.XDel(context.Background(), stream, m.ID)
	}
	wantLag(t, w, 35)

	stop = start(t, w)
	waitCaughtUp(t, w, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	wantLag(t, w, 0)
	if err := w.Ready(context.Background(), time.Second); err != nil {
		t.Fatalf("Ready when caught up: %v", err)
	}
	// The newest five were never applied.
	compareModels(t, readModel(t, w), expectedModel(0, 135, 5))

	// Lag counted against a stream trimmed past the checkpoint is what is
	// left to apply.
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	addEvents(t, client, stream, 140, 180, 5)
	if err := client.XTrimMaxLen(context.Background(), stream, 25).Err(); err != nil {
		t.Fatal(err)
	}
	l = wantLag(t, w, 25)
	if math.IsNaN(l.Seconds) || l.Seconds <= 0 {
		t.Fatalf("lag seconds = %v behind a trimmed stream, want > 0", l.Seconds)
	}
}
