package projections

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// errIdle is returned by step when there was nothing to do.
var errIdle = errors.New("idle")

// runPartition runs partition p until ctx is done, the lease is lost
// (ErrFenced) or a policy stops it.
func (w *Worker) runPartition(ctx context.Context, p Partition, token string) error {
	var (
		cp       Checkpoint
		reported = make(map[string]string)
		failures int
	)
	for ctx.Err() == nil {
		var err error
		if cp == nil {
			cp, err = w.load(ctx, p)
		}
		if err == nil {
			err = w.step(ctx, p, token, cp, reported)
		}
		var gap *GapError
		var poison *PoisonError
		switch {
		case err == nil:
			failures = 0
		case errors.Is(err, errIdle):
			failures = 0
			reads := w.reads(cp)
			if err := w.cfg.Source.Wait(ctx, reads, w.cfg.Block); err != nil && ctx.Err() == nil {
				w.logError(ctx, "cannot wait for entries", err)
				sleepCtx(ctx, w.cfg.Block)
			}
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, ErrFenced):
			return err
		case errors.As(err, &gap), errors.As(err, &poison):
			return err
		case errors.Is(err, ErrConflict):
			// Another owner moved the checkpoint: read it again rather
			// than apply its entries twice.
			cp = nil
		default:
			failures++
			w.logError(ctx, "cannot process a batch; retrying from the checkpoint", err)
			cp = nil
			sleepCtx(ctx, backoff(w.cfg.Retry, failures))
		}
	}
	return ctx.Err()
}

func (w *Worker) load(ctx context.Context, p Partition) (Checkpoint, error) {
	stored, err := w.cfg.Store.Load(ctx, p)
	if err != nil {
		return nil, err
	}
	cp := make(Checkpoint, len(w.cfg.Streams))
	for _, s := range w.cfg.Streams {
		pos, ok := stored[s]
		if !ok {
			pos = Position{ID: "0-0", Offset: 0}
		}
		cp[s] = pos
	}
	return cp, nil
}

func (w *Worker) reads(cp Checkpoint) []StreamRead {
	reads := make([]StreamRead, len(w.cfg.Streams))
	for i, s := range w.cfg.Streams {
		reads[i] = StreamRead{Stream: s, After: cp[s].ID}
	}
	return reads
}

// pending is an entry of a batch.
type pending struct {
	stream string
	entry  Entry
}

// streamStep is what the gap check of one stream found.
type streamStep struct {
	batch StreamBatch
	// base is the offset after the removed entries (-1 unknown).
	base int64
	// complete reports that the read reached the end of the stream.
	complete bool
}

// step reads, checks, applies and commits one batch of p. On success it
// updates cp in place.
func (w *Worker) step(ctx context.Context, p Partition, token string, cp Checkpoint, reported map[string]string) error {
	batches, err := w.cfg.Source.Read(ctx, w.reads(cp), w.cfg.BatchSize)
	if err != nil {
		return err
	}
	steps := make([]streamStep, len(batches))
	for i, b := range batches {
		pos := cp[b.Stream]
		skipped, upto, err := w.checkGap(ctx, pos, b, reported)
		if err != nil {
			return err
		}
		st := streamStep{batch: b, base: pos.Offset, complete: len(b.Entries) < w.cfg.BatchSize}
		if skipped != 0 {
			gap := &GapError{Partition: p, Stream: b.Stream, After: pos.ID, Upto: upto, Skipped: skipped}
			if err := w.reportGap(ctx, gap); err != nil {
				return err
			}
			if skipped < 0 {
				st.base = -1
			} else if pos.Offset >= 0 {
				st.base = pos.Offset + skipped
			}
		}
		steps[i] = st
	}

	// Merge the streams in ID order, up to the lowest last ID of a stream
	// whose read stopped at the batch size: beyond it, that stream may
	// have entries not read yet.
	var limit string
	var events []pending
	for _, st := range steps {
		if n := len(st.batch.Entries); !st.complete && n > 0 {
			if last := st.batch.Entries[n-1].ID; limit == "" || compareIDs(last, limit) < 0 {
				limit = last
			}
		}
	}
	to := maps.Clone(cp)
	for _, st := range steps {
		pos := cp[st.batch.Stream]
		kept := 0
		for _, e := range st.batch.Entries {
			if limit != "" && compareIDs(e.ID, limit) > 0 {
				break
			}
			events = append(events, pending{stream: st.batch.Stream, entry: e})
			kept++
		}
		switch {
		case st.complete && kept == len(st.batch.Entries) && compareIDs(st.batch.Info.LastGeneratedID, pos.ID) > 0:
			// Everything up to the last ID at the time of the read is
			// applied or gone.
			to[st.batch.Stream] = Position{ID: st.batch.Info.LastGeneratedID, Offset: st.batch.Info.EntriesAdded}
		case kept > 0:
			off := int64(-1)
			if st.base >= 0 {
				off = st.base + int64(kept)
			}
			to[st.batch.Stream] = Position{ID: st.batch.Entries[kept-1].ID, Offset: off}
		case st.base != pos.Offset:
			to[st.batch.Stream] = Position{ID: pos.ID, Offset: st.base}
		}
	}
	slices.SortStableFunc(events, func(a, b pending) int { return compareIDs(a.entry.ID, b.entry.ID) })
	if len(events) == 0 && maps.Equal(to, cp) {
		return errIdle
	}

	reg := hooks.FromContext(ctx)
	var attrs []slog.Attr
	opName := opPartition + strconv.Itoa(p.Index)
	if reg.Enabled(opName) {
		attrs = []slog.Attr{slog.String(attrProjection, w.name), slog.Int(attrPartition, p.Index), slog.Int(attrBatchSize, len(events))}
	}
	var stop error
	err = contract.RunHooks(ctx, reg, opName, attrs, func(ctx context.Context) error {
		c := Commit{Partition: p, Lease: token, From: cp, To: to}
		var b Batch
		if err := w.apply(ctx, p, events, &b, &c); err != nil {
			var poison *PoisonError
			if !errors.As(err, &poison) {
				return err
			}
			// Commit what came before the poison event, so that the
			// checkpoint stops right before it.
			stop = err
			j := slices.IndexFunc(events, func(pe pending) bool { return pe.stream == poison.Stream && pe.entry.ID == poison.ID })
			c.To = positionsThrough(cp, to, steps, events[:max(j, 0)])
			to = c.To
		}
		c.Writes = b.writes
		return w.commit(ctx, c, len(events))
	}, w.report)
	if err != nil {
		return err
	}
	maps.Copy(cp, to)
	return stop
}

// positionsThrough returns the checkpoint after applying only done, a
// prefix of a batch whose full checkpoint is full.
func positionsThrough(cp, full Checkpoint, steps []streamStep, done []pending) Checkpoint {
	to := maps.Clone(cp)
	for _, st := range steps {
		s := st.batch.Stream
		var n int
		var last string
		for _, pe := range done {
			if pe.stream == s {
				n++
				last = pe.entry.ID
			}
		}
		kept := 0
		for _, e := range st.batch.Entries {
			if compareIDs(e.ID, full[s].ID) <= 0 {
				kept++
			}
		}
		switch {
		case n == kept:
			to[s] = full[s]
		case n > 0:
			off := int64(-1)
			if st.base >= 0 {
				off = st.base + int64(n)
			}
			to[s] = Position{ID: last, Offset: off}
		default:
			to[s] = Position{ID: cp[s].ID, Offset: st.base}
		}
	}
	return to
}

// checkGap compares what a snapshot read found after pos with what the
// stream's bookkeeping says was added after it, and returns how many
// entries were removed before being applied (-1: some, but not how many)
// and the highest removed ID known. An entry at pos itself, already
// applied, may be removed freely.
func (w *Worker) checkGap(ctx context.Context, pos Position, b StreamBatch, reported map[string]string) (int64, string, error) {
	info := b.Info
	upto := info.MaxDeletedID
	if compareIDs(info.FirstID, pos.ID) > 0 && compareIDs(info.FirstID, upto) > 0 {
		upto = "before " + info.FirstID
	}
	if pos.Offset < 0 {
		// Without an offset only deletions (not trims) are visible.
		if compareIDs(info.MaxDeletedID, pos.ID) > 0 && compareIDs(info.MaxDeletedID, reported[b.Stream]) > 0 {
			reported[b.Stream] = info.MaxDeletedID
			return -1, info.MaxDeletedID, nil
		}
		return 0, "", nil
	}
	expected := info.EntriesAdded - pos.Offset
	var skipped int64
	switch {
	case len(b.Entries) < w.cfg.BatchSize:
		skipped = expected - int64(len(b.Entries))
	case compareIDs(info.FirstID, pos.ID) > 0:
		skipped = expected - info.Length
	case compareIDs(info.MaxDeletedID, pos.ID) > 0:
		n, info2, err := w.cfg.Source.Count(ctx, b.Stream, pos.ID, w.cfg.CountLimit)
		if err != nil {
			return 0, "", err
		}
		if n >= w.cfg.CountLimit {
			if compareIDs(info.MaxDeletedID, reported[b.Stream]) <= 0 {
				return 0, "", nil
			}
			reported[b.Stream] = info.MaxDeletedID
			return -1, info.MaxDeletedID, nil
		}
		skipped = info2.EntriesAdded - pos.Offset - n
	}
	return max(skipped, 0), upto, nil
}

// reportGap makes a gap visible (operation, log record) and applies the
// gap policy: under GapStop it returns the gap.
func (w *Worker) reportGap(ctx context.Context, gap *GapError) error {
	policy := "continue"
	if w.cfg.Gaps == GapStop {
		policy = "stop"
	}
	attrs := []slog.Attr{
		slog.String(attrProjection, w.name), slog.Int(attrPartition, gap.Partition.Index),
		slog.String(attrStream, bound.String(gap.Stream, bound.Attribute)),
		slog.String(attrGapFrom, gap.After), slog.String(attrGapTo, gap.Upto),
		slog.Int64(attrSkipped, gap.Skipped), slog.String("policy", policy),
	}
	_ = contract.RunHooks(ctx, hooks.FromContext(ctx), opGap+w.name, attrs, func(context.Context) error { return nil }, w.report)
	level := slog.LevelWarn
	if w.cfg.Gaps == GapStop {
		level = slog.LevelError
	}
	w.cfg.Logger.LogAttrs(ctx, level, "projections: entries removed from the stream before the projection applied them",
		append(attrs, slog.String(attrError, gap.Error()))...)
	if w.cfg.Gaps == GapStop {
		w.stopped(ctx, gap.Partition, "gap")
		return gap
	}
	return nil
}

// stopped runs the notification operation of a worker stopped by a policy.
func (w *Worker) stopped(ctx context.Context, p Partition, reason string) {
	attrs := []slog.Attr{slog.String(attrProjection, w.name), slog.Int(attrPartition, p.Index), slog.String(attrReason, reason)}
	_ = contract.RunHooks(ctx, hooks.FromContext(ctx), opStopped+w.name, attrs, func(context.Context) error { return nil }, w.report)
}

// commit writes the batch through the sink operation.
func (w *Worker) commit(ctx context.Context, c Commit, events int) error {
	reg := hooks.FromContext(ctx)
	name := opSinkWrite + w.name
	var attrs []slog.Attr
	if reg.Enabled(name) {
		attrs = []slog.Attr{
			slog.String(attrProjection, w.name), slog.Int(attrPartition, c.Partition.Index),
			slog.Int(attrBatchSize, events), slog.Int("sink.writes", len(c.Writes)),
		}
	}
	return contract.RunHooks(ctx, reg, name, attrs, func(ctx context.Context) error {
		return w.cfg.Store.Commit(ctx, c)
	}, w.report)
}

func backoff(r RetryPolicy, failures int) time.Duration {
	d := r.Initial
	for i := 1; i < failures && d < r.Max; i++ {
		d *= 2
	}
	return min(d, r.Max)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
