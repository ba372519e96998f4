package sagas

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"
)

// Recovery operations.
const (
	opRecoveryRunOnce  = "saga.recovery.run_once"
	opRecoveryPending  = "saga.recovery.pending"
	opRecoveryTimeouts = "saga.recovery.timeouts"
)

// recoveryBatch bounds the instances and timeouts one pass handles per
// saga type; the next pass takes the rest.
const recoveryBatch = 100

// RunRecovery runs [Manager.RecoverOnce] every RecoveryInterval until ctx
// is done, logging the errors of a pass and carrying on. It returns nil
// when ctx is done. Run it in every process: passes in several processes
// at once are safe, for each instance is handled under its lock.
func (m *Manager) RunRecovery(ctx context.Context) error {
	t := time.NewTicker(m.cfg.RecoveryInterval)
	defer t.Stop()
	for {
		if err := m.RecoverOnce(ctx); err != nil && ctx.Err() == nil {
			m.cfg.Logger.WarnContext(ctx, "sagas: recovery pass failed; retrying next interval", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// RecoverOnce makes one recovery pass over every registered saga type: it
// publishes, verbatim, the saved commands that no process published (a
// crash between save and publish, a failed publish), and delivers the
// timeouts that are due as steps. Instances locked by a live process are
// left to it; the lock of a dead one expires after LockTTL. It returns the
// errors of the pass joined.
func (m *Manager) RecoverOnce(ctx context.Context) error {
	return m.runOp(ctx, opRecoveryRunOnce, "", func() []slog.Attr { return nil }, func(ctx context.Context) error {
		var errs []error
		for _, s := range m.registered() {
			errs = append(errs, m.recoverPending(ctx, s), m.recoverTimeouts(ctx, s))
		}
		return errors.Join(errs...)
	})
}

// recoverPending publishes the pending messages of s's instances.
func (m *Manager) recoverPending(ctx context.Context, s *saga) error {
	ids, err := m.cfg.Store.WithPending(ctx, s.typ, recoveryBatch)
	if err != nil {
		return fmt.Errorf("sagas: cannot list %s instances with pending commands: %w", s.typ, err)
	}
	var errs []error
	for _, id := range ids {
		errs = append(errs, m.recoverInstancePending(ctx, s, id))
	}
	return errors.Join(errs...)
}

func (m *Manager) recoverInstancePending(ctx context.Context, s *saga, id string) error {
	log := m.cfg.Logger.With(slog.String("saga.type", s.typ), slog.String("saga.id", id))
	token := newToken()
	if _, err := m.acquire(ctx, s.typ, id, token, 0); err != nil {
		if errors.Is(err, ErrLockNotAcquired) {
			// Its holder publishes them, or its lock expires.
			return nil
		}
		return err
	}
	defer m.release(ctx, s.typ, id, token)
	inst, found, err := m.cfg.Store.Load(ctx, s.typ, id)
	if err != nil {
		return fmt.Errorf("sagas: cannot load %s %s: %w", s.typ, id, err)
	}
	if !found || len(inst.Pending) == 0 {
		return nil
	}
	return m.runOp(ctx, opRecoveryPending, "", func() []slog.Attr {
		return []slog.Attr{
			slog.String("saga.type", s.typ),
			slog.String("saga.id", id),
			slog.Int("messaging.batch.message_count", len(inst.Pending)),
		}
	}, func(ctx context.Context) error {
		log.InfoContext(ctx, "sagas: recovery publishes saved commands", slog.Int("messaging.batch.message_count", len(inst.Pending)))
		m.publish(ctx, s.typ, id, inst.Pending, log)
		return nil
	})
}

// recoverTimeouts delivers the due timeouts of s as steps.
func (m *Manager) recoverTimeouts(ctx context.Context, s *saga) error {
	now := m.cfg.Now()
	due, err := m.cfg.Store.DueTimeouts(ctx, s.typ, now, recoveryBatch)
	if err != nil {
		return fmt.Errorf("sagas: cannot list due %s timeouts: %w", s.typ, err)
	}
	var errs []error
	for _, d := range due {
		errs = append(errs, m.deliverTimeout(ctx, s, d, now))
	}
	return errors.Join(errs...)
}

// deliverTimeout runs the step of one due timeout, in the trace of the
// step that scheduled it.
func (m *Manager) deliverTimeout(ctx context.Context, s *saga, d DueTimeout, now time.Time) error {
	log := m.cfg.Logger.With(slog.String("saga.type", s.typ), slog.String("saga.id", d.ID), slog.String("timeout.id", d.TimeoutID))
	inst, found, err := m.cfg.Store.Load(ctx, s.typ, d.ID)
	if err != nil {
		return fmt.Errorf("sagas: cannot load %s %s: %w", s.typ, d.ID, err)
	}
	var t Timeout
	if found {
		if i := slices.IndexFunc(inst.Timeouts, func(t Timeout) bool { return t.ID == d.TimeoutID }); i >= 0 {
			t = inst.Timeouts[i]
		}
	}
	tr := trigger{kind: triggerTimeout, eventType: t.Name, eventID: d.TimeoutID}
	if t.ID == "" || inst.Outcome != "" {
		reason := "cancelled or already delivered"
		if !found {
			reason = "instance does not exist"
		} else if inst.Outcome != "" {
			reason = "instance ended " + inst.Outcome
		}
		m.dropTimeout(ctx, s.typ, d.ID, tr, reason)
		return nil
	}
	log = log.With(slog.String("saga.timeout", t.Name))
	ctx = m.timeoutContext(ctx, t, now)
	err = m.runOp(ctx, opRecoveryTimeouts, "", func() []slog.Attr {
		return []slog.Attr{
			slog.String("saga.type", s.typ),
			slog.String("saga.id", d.ID),
			slog.String("saga.timeout", t.Name),
		}
	}, func(ctx context.Context) error {
		err := m.apply(ctx, s, d.ID, tr, 0, log)
		if errors.Is(err, ErrLockNotAcquired) {
			// A live process is on the instance (often another
			// recovery pass that found the same timeout): it is theirs,
			// and the next pass looks again. Not a failed delivery.
			log.DebugContext(ctx, "sagas: due timeout left to the process holding the instance")
			return nil
		}
		return err
	})
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrPoison):
		log.ErrorContext(ctx, "sagas: timeout step failed; retried next pass", slog.Any("error", err))
		return nil
	}
	return err
}
