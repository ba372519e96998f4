package projections

import (
	"context"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/message"
	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
)

// apply handles, in stream order, the events of a batch that belong to p,
// collecting their writes in b and their dead letters in c.
func (w *Worker) apply(ctx context.Context, p Partition, events []pending, b *Batch, c *Commit) error {
	items := make([]item, 0, len(events))
	first := -1
	for _, pe := range events {
		ev, err := decodeEntry(pe.stream, pe.entry)
		if err != nil {
			// Without a key, an undecodable entry belongs to partition 0,
			// so that it is handled once.
			if p.Index == 0 {
				items = append(items, item{ev: Event{Stream: pe.stream, ID: pe.entry.ID}, err: err})
			}
			continue
		}
		if w.cfg.Partitions > 1 && PartitionOf(w.cfg.Key(ev), w.cfg.Partitions) != p.Index {
			continue
		}
		if first < 0 {
			first = len(items)
		}
		items = append(items, item{ev: ev})
	}
	if len(items) == 0 {
		return nil
	}
	if w.cfg.Spans == SpanPerBatch && first >= 0 {
		return w.applyBatch(ctx, p, items, items[first].ev, b, c)
	}
	return w.applyItems(ctx, p, items, b, c, true)
}

// item is an entry to apply: a decoded event, or one that failed to decode.
type item struct {
	ev  Event
	err error
}

func (w *Worker) applyItems(ctx context.Context, p Partition, items []item, b *Batch, c *Commit, perEvent bool) error {
	for _, it := range items {
		var err error
		if it.err != nil {
			err = w.poison(ctx, p, it.ev, 0, it.err, c)
		} else {
			err = w.handle(ctx, p, it.ev, b, c, perEvent)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// applyBatch runs one projection.process operation for the whole batch, a
// new root linked to the first event that carries a trace context.
func (w *Worker) applyBatch(ctx context.Context, p Partition, items []item, first Event, b *Batch, c *Commit) error {
	parent := trace.SpanContextFromContext(ctx)
	bctx := ctx
	for _, it := range items {
		if it.err != nil {
			continue
		}
		if sc := trace.SpanContextFromContext(w.prop.ExtractTrace(ctx, it.ev.Metadata)); sc.IsValid() && !sc.Equal(parent) {
			bctx = contract.WithLink(ctx, sc)
			break
		}
	}
	reg := hooks.FromContext(ctx)
	name := opProcess + w.name
	var attrs []slog.Attr
	if reg.Enabled(name) {
		attrs = []slog.Attr{
			slog.String(attrProjection, w.name), slog.String(attrEventType, first.Type()),
			slog.Int(attrPartition, p.Index), slog.Int(attrBatchSize, len(items)),
		}
	}
	return contract.RunHooks(bctx, reg, name, attrs, func(ctx context.Context) error {
		return w.applyItems(ctx, p, items, b, c, false)
	}, w.report)
}

// handle applies one event with retries, in an operation of its own per
// attempt when perEvent, and applies the poison policy when every attempt
// failed. It returns an error only when the batch must not be committed.
func (w *Worker) handle(ctx context.Context, p Partition, ev Event, b *Batch, c *Commit, perEvent bool) error {
	ectx := w.eventContext(ctx, ev, perEvent)
	reg := hooks.FromContext(ctx)
	name := opProcess + w.name
	var err error
	for attempt := 1; ; attempt++ {
		n := b.Len()
		if perEvent {
			var attrs []slog.Attr
			if reg.Enabled(name) {
				attrs = []slog.Attr{
					slog.String(attrProjection, w.name), slog.String(attrEventType, ev.Type()),
					slog.Int(attrPartition, p.Index), slog.String(attrStream, bound.String(ev.Stream, bound.Attribute)),
					slog.String(attrEntryID, ev.ID), slog.String(attrMessageID, bound.String(ev.UUID, bound.Attribute)),
					slog.Int(attrAttempt, attempt),
				}
			}
			err = contract.RunHooks(ectx, reg, name, attrs, func(ctx context.Context) error {
				return w.cfg.Projection.Handle(ctx, ev, b)
			}, w.report)
		} else {
			err = w.cfg.Projection.Handle(ectx, ev, b)
		}
		if err == nil {
			return nil
		}
		b.truncate(n)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if attempt >= w.cfg.Retry.Attempts {
			return w.poison(ctx, p, ev, attempt, err, c)
		}
		sleepCtx(ctx, backoff(w.cfg.Retry, attempt))
	}
}

// eventContext returns the context an event is handled with: its
// correlation and causation, and, for a per-event operation, its trace as
// parent or link.
func (w *Worker) eventContext(ctx context.Context, ev Event, withTrace bool) context.Context {
	msg := message.NewMessage(ev.UUID, nil)
	msg.Metadata = ev.Metadata
	ctx = contract.WithMessageCorrelation(ctx, msg)
	if !withTrace {
		return ctx
	}
	tctx := w.prop.ExtractTrace(ctx, ev.Metadata)
	if !w.cfg.LinkTraces {
		return tctx
	}
	sc := trace.SpanContextFromContext(tctx)
	if !sc.IsValid() || sc.Equal(trace.SpanContextFromContext(ctx)) {
		return ctx
	}
	return contract.WithLink(ctx, sc)
}

// poison applies the poison policy to an event that failed attempts times
// (0: it could not be decoded) with err.
func (w *Worker) poison(ctx context.Context, p Partition, ev Event, attempts int, err error, c *Commit) error {
	attrs := []slog.Attr{
		slog.String(attrProjection, w.name), slog.Int(attrPartition, p.Index),
		slog.String(attrEventType, ev.Type()), slog.String(attrStream, bound.String(ev.Stream, bound.Attribute)),
		slog.String(attrEntryID, ev.ID), slog.String(attrMessageID, bound.String(ev.UUID, bound.Attribute)),
		slog.Int(attrAttempt, attempts), slog.String(attrError, bound.String(err.Error(), bound.Error)),
	}
	if w.cfg.Poison == PoisonDeadLetter {
		_ = contract.RunHooks(ctx, hooks.FromContext(ctx), opDeadLetter+w.name, attrs, func(context.Context) error { return nil }, w.report)
		w.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "projections: event moved to the dead-letter stream", attrs...)
		c.DeadLetters = append(c.DeadLetters, DeadLetter{Event: ev, Error: bound.String(err.Error(), 4*bound.Error)})
		return nil
	}
	w.cfg.Logger.LogAttrs(ctx, slog.LevelError, "projections: projection stopped at a poison event", attrs...)
	w.stopped(ctx, p, "poison")
	return &PoisonError{Partition: p, Stream: ev.Stream, ID: ev.ID, UUID: ev.UUID, Attempts: attempts, Err: err}
}
