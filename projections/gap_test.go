package projections_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/projections"
)

func TestGap_trimmed_past_the_checkpoint(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		policy projections.GapPolicy
	}{
		{"stop", projections.GapStop},
		{"continue", projections.GapContinue},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client, _ := testsvc.RedisPrefix(t)
			logger, logs := newLogger()
			reg, rec := newRecorder(t, "projection.*")
			w, _ := newRedisWorker(t, projections.Config{
				Projection: sumProjection("gaps"), Streams: []string{"events"}, BatchSize: 8,
				Gaps: tc.policy, Logger: logger, Hooks: reg,
			})
			stream := w.StreamNames()[0]
			addEvents(t, client, stream, 0, 20, 3)
			stop := start(t, w)
			waitCaughtUp(t, w, 20*time.Second)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			// 30 more, then keep the last 10: 20 unapplied entries are gone.
			addEvents(t, client, stream, 20, 50, 3)
			if err := client.XTrimMaxLen(context.Background(), stream, 10).Err(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if tc.policy == projections.GapStop {
				err := w.Run(ctx)
				var gap *projections.GapError
				if !errors.As(err, &gap) || gap.Skipped != 20 || !errors.As(w.Err(), &gap) {
					t.Fatalf("Run = %v, Err = %v; want a GapError with 20 skipped", err, w.Err())
				}
				if err := w.Ready(ctx, time.Hour); !errors.Is(err, projections.ErrNotReady) {
					t.Fatalf("Ready after a gap stop = %v, want ErrNotReady", err)
				}
				compareModels(t, readModel(t, w), expectedModel(0, 20, 3))
				if got := rec.named("projection.stopped."); len(got) != 1 || got[0].attrs["reason"].String() != "gap" {
					t.Fatalf("projection.stopped operations = %+v, want one with reason gap", got)
				}
			} else {
				stop = start(t, w)
				waitCaughtUp(t, w, 20*time.Second)
				if err := stop(); err != nil {
					t.Fatal(err)
				}
				compareModels(t, readModel(t, w), sumModels(expectedModel(0, 20, 3), expectedModel(40, 50, 3)))
			}
			gaps := rec.named("projection.gap.gaps")
			if len(gaps) != 1 || gaps[0].attrs["gap.skipped"].Int64() != 20 {
				t.Fatalf("gap operations = %+v, want one with 20 skipped", gaps)
			}
			if out := logs.String(); !strings.Contains(out, "removed from the stream before the projection applied them") || !strings.Contains(out, `"gap.skipped":20`) {
				t.Fatalf("log = %s, want the gap record", out)
			}
		})
	}
}

func TestGap_trimming_the_checkpoint_entry_is_no_gap(t *testing.T) {
	t.Parallel()
	client, _ := testsvc.RedisPrefix(t)
	reg, rec := newRecorder(t, "projection.*")
	w, _ := newRedisWorker(t, projections.Config{Projection: sumProjection("nogap"), Streams: []string{"events"}, BatchSize: 8, Hooks: reg})
	stream := w.StreamNames()[0]
	addEvents(t, client, stream, 0, 20, 3)
	stop := start(t, w)
	waitCaughtUp(t, w, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// Keep exactly the unapplied entries: the checkpoint entry and all
	// before it go, none after it.
	addEvents(t, client, stream, 20, 50, 3)
	if err := client.XTrimMaxLen(context.Background(), stream, 30).Err(); err != nil {
		t.Fatal(err)
	}
	stop = start(t, w)
	waitCaughtUp(t, w, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if gaps := rec.named("projection.gap."); len(gaps) != 0 {
		t.Fatalf("gap operations %+v, want none", gaps)
	}
	compareModels(t, readModel(t, w), expectedModel(0, 50, 3))
}

func TestGap_deleted_unapplied_entries(t *testing.T) {
	t.Parallel()
	client, _ := testsvc.RedisPrefix(t)
	reg, rec := newRecorder(t, "projection.*")
	w, _ := newRedisWorker(t, projections.Config{
		Projection: sumProjection("xdel"), Streams: []string{"events"}, BatchSize: 8, Hooks: reg, Gaps: projections.GapContinue,
	})
	stream := w.StreamNames()[0]
	ids := addEvents(t, client, stream, 0, 40, 4)
	// Delete events 10, 11 and 30 before the projection applied them.
	client.XDel(context.Background(), stream, ids[10], ids[11], ids[30])
	stop := start(t, w)
	waitCaughtUp(t, w, 20*time.Second)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	var skipped int64
	for _, g := range rec.named("projection.gap.") {
		skipped += g.attrs["gap.skipped"].Int64()
	}
	if skipped != 3 {
		t.Fatalf("skipped %d entries in gap operations %+v, want 3", skipped, rec.named("projection.gap."))
	}
	want := sumModels(expectedModel(0, 10, 4), expectedModel(12, 30, 4), expectedModel(31, 40, 4))
	compareModels(t, readModel(t, w), want)
}
