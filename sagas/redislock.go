package sagas

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// TryLock implements [Store.TryLock] with SET NX PX. token must not be
// empty and ttl must be at least a millisecond.
func (s *RedisStore) TryLock(ctx context.Context, sagaType, id, token string, ttl time.Duration) (bool, error) {
	if err := checkInstance(sagaType, id); err != nil {
		return false, err
	}
	if token == "" {
		return false, errors.New("sagas: empty lock token")
	}
	if ttl < time.Millisecond {
		return false, fmt.Errorf("sagas: lock ttl %v is shorter than a millisecond", ttl)
	}
	// SET key token NX PX ttl (EX when ttl is whole seconds).
	ok, err := s.client.SetNX(ctx, s.keys(sagaType, id).lock, token, ttl).Result()
	if err != nil {
		return false, fmt.Errorf("sagas: cannot lock %s/%s: %w", sagaType, id, err)
	}
	return ok, nil
}

// Unlock implements [Store.Unlock] with a Lua script that deletes the lock
// only while it holds token.
func (s *RedisStore) Unlock(ctx context.Context, sagaType, id, token string) (bool, error) {
	if err := checkInstance(sagaType, id); err != nil {
		return false, err
	}
	n, err := unlockScript.Run(ctx, s.client, []string{s.keys(sagaType, id).lock}, token).Int64()
	if err != nil {
		return false, fmt.Errorf("sagas: cannot unlock %s/%s: %w", sagaType, id, err)
	}
	return n == 1, nil
}
