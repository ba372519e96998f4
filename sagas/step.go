package sagas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
)

const opRun = "saga.run."

// Triggers of a step, the saga.trigger attribute and StepRecord.Trigger.
const (
	triggerEvent   = "event"
	triggerTimeout = "timeout"
)

// Step outcomes besides the instance Outcome constants.
const (
	outcomeRunning = "running"
	outcomeError   = "error"
)

// trigger is what a step handles.
type trigger struct {
	kind      string
	eventType string // the timeout's name for a timeout
	eventID   string // the timeout's ID for a timeout
	event     any
	starts    bool
}

// apply runs one step of instance s/id for tr under the instance lock,
// retrying version conflicts. nil means done with tr (applied, skipped or
// failed for good): ack it.
func (m *Manager) apply(ctx context.Context, s *saga, id string, tr trigger, wait time.Duration, log *slog.Logger) error {
	token := newToken()
	lockWait, err := m.acquire(ctx, s.typ, id, token, wait)
	if err != nil {
		return err
	}
	defer m.release(ctx, s.typ, id, token)
	for conflicts := 0; ; conflicts++ {
		err := m.attempt(ctx, s, id, tr, conflicts, lockWait, log)
		if !errors.Is(err, ErrConflict) {
			return err
		}
		m.notify(ctx, "saga.version_conflict", slog.String("saga.type", s.typ), slog.String("saga.id", id))
		if conflicts >= m.cfg.MaxConflictRetries {
			return fmt.Errorf("sagas: %s %s: %d version conflicts in a row: %w", s.typ, id, conflicts+1, err)
		}
		log.InfoContext(ctx, "sagas: version conflict; reloading", slog.Int("saga.version_conflicts", conflicts+1))
	}
}

// attempt loads the instance and runs one step on it.
func (m *Manager) attempt(ctx context.Context, s *saga, id string, tr trigger, conflicts int, lockWait time.Duration, log *slog.Logger) error {
	inst, found, err := m.cfg.Store.Load(ctx, s.typ, id)
	if err != nil {
		var corrupt *CorruptInstanceError
		if errors.As(err, &corrupt) {
			// Retrying cannot cure it, and no failure can be saved on an
			// instance that does not load: handleEvent gives up on the
			// event after MaxFailures attempts.
			return fmt.Errorf("sagas: cannot load %s %s: %w: %w", s.typ, id, ErrPoison, err)
		}
		return fmt.Errorf("sagas: cannot load %s %s: %w", s.typ, id, err)
	}
	if !found {
		if tr.kind == triggerEvent && !tr.starts {
			log.InfoContext(ctx, "sagas: event for an instance that does not exist; acknowledged without a step")
			m.unrouted.Add(1)
			return nil
		}
		if tr.kind == triggerTimeout {
			m.dropTimeout(ctx, s.typ, id, tr, "instance does not exist")
			return nil
		}
		inst = Instance{Type: s.typ, ID: id}
	}
	if inst.Outcome != "" {
		if tr.kind == triggerTimeout {
			m.dropTimeout(ctx, s.typ, id, tr, "instance ended "+inst.Outcome)
		} else {
			log.InfoContext(ctx, "sagas: event for an ended instance; acknowledged without a step", slog.String("saga.outcome", inst.Outcome))
		}
		return nil
	}
	if slices.Contains(inst.Processed, tr.eventID) {
		log.DebugContext(ctx, "sagas: event already applied; acknowledged")
		return nil
	}
	in := Input{Event: tr.event, EventType: tr.eventType, EventID: tr.eventID}
	if tr.kind == triggerTimeout {
		i := slices.IndexFunc(inst.Timeouts, func(t Timeout) bool { return t.ID == tr.eventID })
		if i < 0 {
			m.dropTimeout(ctx, s.typ, id, tr, "cancelled or already delivered")
			return nil
		}
		t := inst.Timeouts[i]
		in.Timeout = &FiredTimeout{Name: t.Name, ID: t.ID, ScheduledAt: t.ScheduledAt, Due: t.Due}
	}
	sc := stepCtx{s: s, inst: inst, tr: tr, conflicts: conflicts, lockWait: lockWait, log: log}
	out, err := s.run(ctx, inst.State, in)
	if err == nil {
		err = m.commit(ctx, sc, out)
	}
	if errors.Is(err, ErrPoison) {
		return m.fail(ctx, sc, err)
	}
	return err
}

// stepCtx is what a step's saga.run operation knows up front.
type stepCtx struct {
	s         *saga
	inst      Instance
	tr        trigger
	conflicts int
	lockWait  time.Duration
	log       *slog.Logger
}

// runAttrs returns the attributes of the saga.run operation.
func (sc stepCtx) runAttrs(ctx context.Context, toState, outcome string) []slog.Attr {
	v := sc.inst.Version + 1
	return []slog.Attr{
		slog.String("saga.type", sc.s.typ),
		slog.String("saga.id", sc.inst.ID),
		slog.Int64("saga.step", v),
		slog.Int64("saga.state_version", v),
		slog.String("saga.from_state", sc.inst.Status),
		slog.String("saga.to_state", toState),
		slog.String("saga.outcome", outcome),
		slog.String("saga.trigger", sc.tr.kind),
		slog.String("event.type", sc.tr.eventType),
		slog.Int("saga.version_conflicts", sc.conflicts),
		slog.Duration("saga.lock_wait", sc.lockWait),
		slog.String(contract.CorrelationIDKey, hooks.CorrelationID(ctx)),
	}
}

// commit runs the saga.run operation of a successful step: it stamps the
// commands, saves the new state with them, the processed ID, the timeouts
// and the step record in one write, then publishes the commands.
func (m *Manager) commit(ctx context.Context, sc stepCtx, out stepOutput) error {
	toState := out.status
	if toState == "" {
		toState = sc.inst.Status
	}
	outcome := out.end
	if outcome == "" {
		outcome = outcomeRunning
	}
	return m.runOp(ctx, opRun, sc.s.typ, func() []slog.Attr { return sc.runAttrs(ctx, toState, outcome) }, func(ctx context.Context) error {
		now := m.cfg.Now()
		inst := sc.inst
		version := inst.Version + 1
		msgs, cmds, err := m.stamp(ctx, sc.s.typ, inst.ID, version, out.commands)
		if err != nil {
			return err
		}
		next := copyInstance(inst)
		next.Version = version
		next.State = out.state
		next.Status = toState
		next.Outcome = out.end
		next.Processed = appendBounded(next.Processed, sc.tr.eventID, m.cfg.ProcessedLimit)
		next.Pending = append(next.Pending, msgs...)
		next.Timeouts = m.nextTimeouts(ctx, next, sc.tr, out, version, now)
		next.Failures, next.LastError = 0, ""
		if next.StartedAt.IsZero() {
			next.StartedAt = now
		}
		next.UpdatedAt = now
		rec := m.record(ctx, sc, version, toState, outcome, now)
		rec.Commands = cmds
		err = m.cfg.Store.Save(ctx, SaveRequest{Instance: next, Expected: inst.Version, Record: rec, HistoryLimit: m.cfg.HistoryLimit})
		if err != nil {
			return fmt.Errorf("sagas: cannot save %s %s version %d: %w", sc.s.typ, inst.ID, version, err)
		}
		if out.end != "" {
			sc.log.InfoContext(ctx, "sagas: saga ended", slog.String("saga.outcome", out.end), slog.Int64("saga.state_version", version))
		}
		m.publish(ctx, sc.s.typ, inst.ID, msgs, sc.log)
		return nil
	})
}

// fail records a poison attempt: the failure count and error are saved
// with a step record, the state unchanged. Below MaxFailures the trigger is
// retried (the error is returned: nack); at MaxFailures the instance is
// marked failed and nil is returned (ack), so one poison instance never
// blocks the others.
func (m *Manager) fail(ctx context.Context, sc stepCtx, cause error) error {
	failures := sc.inst.Failures + 1
	final := failures >= m.cfg.MaxFailures
	outcome := outcomeError
	if final {
		outcome = OutcomeFailed
	}
	var saveErr error
	_ = m.runOp(ctx, opRun, sc.s.typ, func() []slog.Attr { return sc.runAttrs(ctx, sc.inst.Status, outcome) }, func(ctx context.Context) error {
		now := m.cfg.Now()
		next := copyInstance(sc.inst)
		next.Version = sc.inst.Version + 1
		next.Failures = failures
		next.LastError = cause.Error()
		if final {
			next.Outcome = OutcomeFailed
			next.Timeouts = nil
		}
		if next.StartedAt.IsZero() {
			next.StartedAt = now
		}
		next.UpdatedAt = now
		rec := m.record(ctx, sc, next.Version, sc.inst.Status, outcome, now)
		rec.Error = cause.Error()
		if err := m.cfg.Store.Save(ctx, SaveRequest{Instance: next, Expected: sc.inst.Version, Record: rec, HistoryLimit: m.cfg.HistoryLimit}); err != nil {
			saveErr = fmt.Errorf("sagas: cannot save failure of %s %s: %w", sc.s.typ, sc.inst.ID, err)
			return errors.Join(cause, saveErr)
		}
		return cause
	})
	if saveErr != nil {
		return saveErr
	}
	if final {
		sc.log.ErrorContext(ctx, "sagas: instance failed after repeated poison attempts; the trigger is acknowledged",
			slog.Any("error", cause), slog.Int("attempt", failures))
		return nil
	}
	return fmt.Errorf("sagas: %s %s attempt %d of %d: %w", sc.s.typ, sc.inst.ID, failures, m.cfg.MaxFailures, cause)
}

// record returns the step record of the step about to be saved, with the
// trace and span IDs of the saga.run span in ctx.
func (m *Manager) record(ctx context.Context, sc stepCtx, version int64, toState, outcome string, now time.Time) StepRecord {
	rec := StepRecord{
		Version:   version,
		Trigger:   sc.tr.kind,
		EventType: sc.tr.eventType,
		EventID:   sc.tr.eventID,
		FromState: sc.inst.Status,
		ToState:   toState,
		Outcome:   outcome,
		Process:   m.cfg.Process,
		Time:      now,
	}
	if span := trace.SpanContextFromContext(ctx); span.IsValid() {
		rec.TraceID = span.TraceID().String()
		rec.SpanID = span.SpanID().String()
	}
	return rec
}

// appendBounded appends id to ids, keeping the newest limit.
func appendBounded(ids []string, id string, limit int) []string {
	ids = append(ids, id)
	if len(ids) > limit {
		ids = slices.Clone(ids[len(ids)-limit:])
	}
	return ids
}
