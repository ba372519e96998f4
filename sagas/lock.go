package sagas

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"
)

// Operations of the instance lock; the resource type is "saga".
const (
	opLockAcquire = "redis.lock.acquire."
	opLockRelease = "redis.lock.release."
	lockResource  = "saga"
)

// newToken returns a random lock token, so that only the holder releases
// the lock.
func newToken() string {
	var b [16]byte
	_, _ = crand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}

// acquire takes the lock of instance typ/id with token, retrying with
// jittered backoff for at most wait (0: one try). It returns how long it
// waited; ErrLockNotAcquired when another holder kept it.
func (m *Manager) acquire(ctx context.Context, typ, id, token string, wait time.Duration) (time.Duration, error) {
	start := time.Now()
	err := m.runOp(ctx, opLockAcquire, lockResource, func() []slog.Attr {
		return []slog.Attr{
			slog.String("resource", typ+":"+id),
			slog.String("resource_type", lockResource),
			slog.Duration("timeout", wait),
			slog.Duration("ttl", m.cfg.LockTTL),
		}
	}, func(ctx context.Context) error {
		pause := 5 * time.Millisecond
		for {
			ok, err := m.cfg.Store.TryLock(ctx, typ, id, token, m.cfg.LockTTL)
			if err != nil {
				return fmt.Errorf("sagas: cannot lock %s %s: %w", typ, id, err)
			}
			if ok {
				return nil
			}
			left := wait - time.Since(start)
			if left <= 0 {
				return fmt.Errorf("%w: %s %s held by another process for %s", ErrLockNotAcquired, typ, id, wait)
			}
			if err := sleep(ctx, min(jitter(pause), left)); err != nil {
				return err
			}
			pause = min(2*pause, 200*time.Millisecond)
		}
	})
	return time.Since(start), err
}

// release releases the lock if token still holds it. A lock that expired
// meanwhile is logged: the step ran longer than LockTTL, and only the
// version check kept it safe.
func (m *Manager) release(ctx context.Context, typ, id, token string) {
	// The lock must go even when the handler's context is done.
	ctx = context.WithoutCancel(ctx)
	err := m.runOp(ctx, opLockRelease, lockResource, func() []slog.Attr {
		return []slog.Attr{
			slog.String("resource", typ+":"+id),
			slog.String("resource_type", lockResource),
		}
	}, func(ctx context.Context) error {
		ok, err := m.cfg.Store.Unlock(ctx, typ, id, token)
		if err != nil {
			return fmt.Errorf("sagas: cannot unlock %s %s: %w", typ, id, err)
		}
		if !ok {
			m.cfg.Logger.WarnContext(ctx, "sagas: instance lock expired before release; raise LockTTL above the longest step",
				slog.String("saga.type", typ), slog.String("saga.id", id), slog.Duration("ttl", m.cfg.LockTTL))
		}
		return nil
	})
	if err != nil {
		// The lock expires by itself after LockTTL.
		m.cfg.Logger.WarnContext(ctx, "sagas: cannot release instance lock", slog.String("saga.type", typ), slog.String("saga.id", id), slog.Any("error", err))
	}
}

// backoff returns the pause before nacking an event's attempt-th failure:
// RetryBackoff doubled per attempt, at most MaxRetryBackoff, jittered.
func (m *Manager) backoff(attempt int) time.Duration {
	d := m.cfg.RetryBackoff
	for i := 1; i < attempt && d < m.cfg.MaxRetryBackoff; i++ {
		d *= 2
	}
	return jitter(min(d, m.cfg.MaxRetryBackoff))
}

// jitter returns a duration in [d/2, d].
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// sleep pauses for d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
