package sagas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
)

const opHandleEvent = "saga.handle_event."

// handleEvent handles one event of saga s: the cqrs group handler. A nil
// return acks the event (applied, a duplicate, for no or an ended instance,
// or the poison attempt that failed the instance); an error nacks it
// after a backoff, so that it is redelivered.
func (m *Manager) handleEvent(ctx context.Context, s *saga, b *binding, event any) error {
	msg := cqrs.OriginalMessageFromCtx(ctx)
	if msg == nil {
		// Only a caller outside an EventGroupProcessor gets here.
		return fmt.Errorf("sagas: %s: no original message in the handler's context", s.typ)
	}
	eventID := msg.UUID
	cid := contract.CorrelationID(msg)
	if cid == "" {
		cid = hooks.CorrelationID(ctx)
	}
	if cid == "" {
		cid = hooks.NewCorrelationID()
	}
	if hooks.CorrelationID(ctx) != cid {
		ctx = hooks.WithCorrelationID(ctx, cid)
	}
	ctx = hooks.WithCausationID(ctx, eventID)

	id := b.key(event)
	log := m.cfg.Logger.With(slog.String("saga.type", s.typ), slog.String("saga.id", id),
		slog.String("event.type", b.name), slog.String("event.id", eventID))
	if id == "" {
		log.WarnContext(ctx, "sagas: event has an empty instance key; acknowledged without a step")
		m.unrouted.Add(1)
		return nil
	}
	err := m.runOp(ctx, opHandleEvent, b.name, func() []slog.Attr {
		return []slog.Attr{
			slog.String("event.type", b.name),
			slog.String("event.id", eventID),
			slog.String("saga.type", s.typ),
			slog.String(contract.CorrelationIDKey, cid),
		}
	}, func(ctx context.Context) error {
		return m.apply(ctx, s, id, trigger{
			kind:      triggerEvent,
			eventType: b.name,
			eventID:   eventID,
			event:     event,
			starts:    b.starts,
		}, m.cfg.LockWait, log)
	})
	if err == nil {
		m.attempts.reset(eventID)
		return nil
	}
	if ctx.Err() != nil {
		return err
	}
	attempt := m.attempts.inc(eventID)
	var corrupt *CorruptInstanceError
	if errors.As(err, &corrupt) && attempt >= m.cfg.MaxFailures {
		// The stored instance does not load, so it cannot be marked
		// failed: give up on this event rather than block the saga type.
		log.ErrorContext(ctx, "sagas: the stored instance is corrupt; the event is acknowledged without a step",
			slog.Any("error", err), slog.Int("attempt", attempt), slog.String("saga.corrupt_field", corrupt.Field))
		m.notify(ctx, "saga.instance.corrupt", slog.String("saga.type", s.typ), slog.String("saga.id", id),
			slog.String("event.type", b.name), slog.String("event.id", eventID))
		m.attempts.reset(eventID)
		return nil
	}
	level := slog.LevelWarn
	if errors.Is(err, ErrPoison) {
		level = slog.LevelError
	}
	log.Log(ctx, level, "sagas: step not applied; the event is nacked and redelivered", slog.Any("error", err), slog.Int("attempt", attempt))
	// watermill-redisstream resends a nacked message at once: pause here so
	// that a held lock or a flapping store is not retried in a tight loop.
	_ = sleep(ctx, m.backoff(attempt))
	return err
}
