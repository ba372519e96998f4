package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
)

// ErrReplaySuperseded is returned by [Worker.Replay] when another replay
// swapped its generation in first; this one's model is left unused.
var ErrReplaySuperseded = errors.New("projections: another replay swapped in first")

// ReplayProgress is how far a running replay is.
type ReplayProgress struct {
	// Running reports whether a replay runs in this worker.
	Running bool
	// Generation is the generation being built.
	Generation int64
	// Done counts the entries the slowest partition has passed, of Total,
	// the entries in the streams (which grows while events come in).
	Done, Total int64
	// Rate is Done per second since the replay started.
	Rate float64
	// Remaining estimates the time left at Rate; 0 when unknown.
	Remaining time.Duration
}

// replayState is the progress a worker's replay publishes.
type replayState struct {
	mu       sync.Mutex
	progress ReplayProgress
}

// ReplayProgress returns the progress of the replay running in this
// worker; Running is false when there is none.
func (w *Worker) ReplayProgress() ReplayProgress {
	w.replay.mu.Lock()
	defer w.replay.mu.Unlock()
	return w.replay.progress
}

func (w *Worker) setProgress(p ReplayProgress) {
	w.replay.mu.Lock()
	w.replay.progress = p
	w.replay.mu.Unlock()
}

// ReplayStatus calls fn with the progress of the replay running in this
// worker, if any. It satisfies promobs.ReplaySource.
func (w *Worker) ReplayStatus(_ context.Context, fn func(projection string, done, total int64)) error {
	if p := w.ReplayProgress(); p.Running {
		fn(w.name, p.Done, p.Total)
	}
	return nil
}

// Replay rebuilds the read model from the start of the streams into a
// new generation (a shadow keyspace of its own), while the running
// workers keep serving and updating the active one; when every partition
// of the new generation has caught up, it swaps it in atomically, so that
// readers ([Worker.Hash]) never see a half-built model. Workers of the
// projection (in any process) move to the new generation within a quarter
// of Config.LeaseTTL and go on from its checkpoints. Progress is in
// [Worker.ReplayProgress] while it runs; [Worker.Lag] stays the lag of the
// active generation. Replay runs the hook operation replay.start.{name}
// (projection_name, generation) around the whole rebuild, and returns the
// policy errors of the rebuild, [ErrReplaySuperseded], or ctx's error;
// then the active generation stays as it was.
func (w *Worker) Replay(ctx context.Context) error {
	ctx = hooks.WithRegistry(ctx, w.registry(ctx))
	active, err := w.cfg.Store.Generation(ctx, w.name)
	if err != nil {
		return err
	}
	gen, err := w.cfg.Store.NewGeneration(ctx, w.name)
	if err != nil {
		return err
	}
	attrs := []slog.Attr{slog.String(attrProjection, w.name), slog.Int64("generation", gen)}
	return contract.RunHooks(ctx, hooks.FromContext(ctx), opReplayStart+w.name, attrs, func(ctx context.Context) error {
		defer w.setProgress(ReplayProgress{})
		if err := w.rebuild(ctx, gen); err != nil {
			return err
		}
		ok, err := w.cfg.Store.Swap(ctx, w.name, active, gen)
		if err != nil {
			return err
		}
		if !ok {
			return ErrReplaySuperseded
		}
		w.cfg.Logger.InfoContext(ctx, "projections: replay swapped in",
			slog.String(attrProjection, w.name), slog.Int64("generation", gen))
		return nil
	}, w.report)
}

// rebuild runs the partitions of generation gen in this process until
// they all have caught up, publishing progress.
func (w *Worker) rebuild(ctx context.Context, gen int64) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	// The shadow worker shares the configuration but owns no leases: the
	// new generation's keys are its alone until the swap.
	shadow := &Worker{cfg: w.cfg, name: w.name, prop: w.prop, report: w.report, owned: make([]bool, w.cfg.Partitions)}
	shadow.cfg.Leaser = nil
	runs := make([]*partitionRun, w.cfg.Partitions)
	for i := range runs {
		runs[i] = shadow.start(ctx, &wg, Partition{Projection: w.name, Index: i, Generation: gen}, "", func(err error) { cancel(err) })
	}
	stopAll := func() {
		for _, r := range runs {
			r.stop()
		}
		wg.Wait()
	}
	began := time.Now()
	w.setProgress(ReplayProgress{Running: true, Generation: gen})
	tick := time.NewTicker(min(w.cfg.Block, 100*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			stopAll()
			if err := context.Cause(ctx); !errors.Is(err, context.Canceled) {
				return err
			}
			return ctx.Err()
		case <-tick.C:
		}
		lags, err := shadow.lag(ctx, gen)
		if err != nil {
			w.logError(ctx, "cannot measure the progress of a replay", err)
			continue
		}
		total, err := w.streamLength(ctx)
		if err != nil {
			w.logError(ctx, "cannot measure the progress of a replay", err)
			continue
		}
		behind := make([]int64, w.cfg.Partitions)
		for _, l := range lags {
			behind[l.Partition] += l.Events
		}
		var slowest int64
		for _, b := range behind {
			slowest = max(slowest, b)
		}
		p := ReplayProgress{Running: true, Generation: gen, Total: total, Done: max(total-slowest, 0)}
		if secs := time.Since(began).Seconds(); secs > 0 {
			p.Rate = float64(p.Done) / secs
		}
		if p.Rate > 0 {
			p.Remaining = time.Duration(float64(slowest) / p.Rate * float64(time.Second))
		}
		w.setProgress(p)
		if slowest == 0 {
			stopAll()
			if err := context.Cause(ctx); err != nil {
				return err
			}
			return nil
		}
	}
}

// streamLength returns the entries now in the worker's streams.
func (w *Worker) streamLength(ctx context.Context) (int64, error) {
	var n int64
	for _, s := range w.cfg.Streams {
		info, err := w.cfg.Source.Info(ctx, s)
		if err != nil {
			return 0, fmt.Errorf("cannot read stream %s: %w", s, err)
		}
		n += info.Length
	}
	return n, nil
}

// ErrActiveGeneration is returned by [Worker.DropGeneration] for the
// active generation.
var ErrActiveGeneration = errors.New("projections: cannot drop the active generation")

// DropGeneration deletes the read model, checkpoints and dead letters of
// generation gen of every partition: the model a replay replaced. Call it
// once every worker has moved to the new generation (a quarter of
// Config.LeaseTTL after the swap): a worker still on gen would write
// again. It refuses the active generation.
func (w *Worker) DropGeneration(ctx context.Context, gen int64) error {
	active, err := w.cfg.Store.Generation(ctx, w.name)
	if err != nil {
		return err
	}
	if gen == active {
		return ErrActiveGeneration
	}
	for i := range w.cfg.Partitions {
		if err := w.cfg.Store.Drop(ctx, Partition{Projection: w.name, Index: i, Generation: gen}); err != nil {
			return err
		}
	}
	return nil
}
