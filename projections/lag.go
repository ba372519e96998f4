package projections

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Lag is how far one partition is behind in one stream.
type Lag struct {
	Partition int
	Stream    string
	// Events counts the entries after the checkpoint still in the stream:
	// those the partition has yet to read, its own and other partitions'
	// alike (every partition reads the whole stream). Entries removed
	// before they were applied are gaps, not lag.
	Events int64
	// Exact is false when Events is a lower bound: deletions after the
	// checkpoint made a count necessary, and it stopped at
	// Config.CountLimit.
	Exact bool
	// Seconds is the Redis clock minus the time of the oldest entry not
	// yet applied; 0 when caught up, also on an idle stream.
	Seconds float64
}

// StreamLag returns the lag of position pos in stream: see [Lag]. It uses
// XINFO STREAM's entries-added and max-deleted-entry-id against the
// checkpoint's offset, and counts with a bounded XRANGE (at most limit)
// only where deletions after the checkpoint make that ambiguous; so it
// stays true after XTRIM and XDEL, where Redis' consumer-group lag cannot
// tell.
func StreamLag(ctx context.Context, src Source, stream string, pos Position, limit int64) (Lag, error) {
	lag := Lag{Stream: stream, Exact: true}
	info, err := src.Info(ctx, stream)
	if err != nil {
		return lag, err
	}
	switch {
	case compareIDs(pos.ID, info.LastGeneratedID) >= 0 || info.Length == 0:
		return lag, nil
	case compareIDs(pos.ID, info.FirstID) < 0:
		lag.Events = info.Length
	case pos.Offset >= 0 && compareIDs(info.MaxDeletedID, pos.ID) <= 0:
		lag.Events = max(info.EntriesAdded-pos.Offset, 0)
	default:
		n, _, err := src.Count(ctx, stream, pos.ID, limit)
		if err != nil {
			return lag, err
		}
		lag.Events, lag.Exact = n, n < limit
	}
	if lag.Events == 0 {
		return lag, nil
	}
	id, now, err := src.Oldest(ctx, stream, pos.ID)
	if err != nil {
		return lag, err
	}
	if t, ok := entryTime(id); ok && id != "" && now.After(t) {
		lag.Seconds = now.Sub(t).Seconds()
	}
	return lag, nil
}

// Lag returns the lag of every partition of the active generation in every
// stream, from the stored checkpoints: it can be asked of any worker of the
// projection, running or not, whichever partitions it owns. During a
// replay it stays the lag of the model readers see.
func (w *Worker) Lag(ctx context.Context) ([]Lag, error) {
	gen, err := w.cfg.Store.Generation(ctx, w.name)
	if err != nil {
		return nil, err
	}
	return w.lag(ctx, gen)
}

func (w *Worker) lag(ctx context.Context, gen int64) ([]Lag, error) {
	out := make([]Lag, 0, w.cfg.Partitions*len(w.cfg.Streams))
	for i := range w.cfg.Partitions {
		cp, err := w.load(ctx, Partition{Projection: w.name, Index: i, Generation: gen})
		if err != nil {
			return nil, err
		}
		for _, s := range w.cfg.Streams {
			l, err := StreamLag(ctx, w.cfg.Source, s, cp[s], w.cfg.CountLimit)
			if err != nil {
				return nil, fmt.Errorf("cannot measure lag of %s in %s: %w", Partition{Projection: w.name, Index: i, Generation: gen}, s, err)
			}
			l.Partition = i
			out = append(out, l)
		}
	}
	return out, nil
}

// ProjectionLag calls fn with the lag of each partition, summed over the
// streams in events and the largest in seconds. It satisfies
// promobs.ProjectionSource, whose collector exports it as gauges.
func (w *Worker) ProjectionLag(ctx context.Context, fn func(projection string, partition int, events int64, seconds float64)) error {
	lags, err := w.Lag(ctx)
	if err != nil {
		return err
	}
	events := make([]int64, w.cfg.Partitions)
	seconds := make([]float64, w.cfg.Partitions)
	for _, l := range lags {
		events[l.Partition] += l.Events
		seconds[l.Partition] = max(seconds[l.Partition], l.Seconds)
	}
	for i := range w.cfg.Partitions {
		fn(w.name, i, events[i], seconds[i])
	}
	return nil
}

// ErrNotReady is wrapped by the errors of [Worker.Ready].
var ErrNotReady = errors.New("projections: not ready")

// Ready is a readiness check: it returns an error wrapping [ErrNotReady]
// when the worker was stopped by a policy (poison event, gap), or when a
// partition is more than maxBehind behind (its oldest unapplied entry is
// older than that), and the error of measuring the lag if that fails.
// Wire it into a health endpoint.
func (w *Worker) Ready(ctx context.Context, maxBehind time.Duration) error {
	if err := w.Err(); err != nil {
		return fmt.Errorf("%w: %s stopped: %w", ErrNotReady, w.name, err)
	}
	lags, err := w.Lag(ctx)
	if err != nil {
		return err
	}
	for _, l := range lags {
		if l.Seconds > maxBehind.Seconds() {
			return fmt.Errorf("%w: partition %d of %s is %.1fs behind in %s (at most %v allowed)",
				ErrNotReady, l.Partition, w.name, l.Seconds, l.Stream, maxBehind)
		}
	}
	return nil
}
