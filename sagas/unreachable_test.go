package sagas_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
	"github.com/cqrs-ddd/watermill-observability/sagas"
)

// While Redis cannot be reached, an event is nacked with the network error
// and a warning, never failing the saga; once Redis is back, the
// redelivered event is applied and the saga runs to its end.
func TestManager_redis_unreachable_is_transient(t *testing.T) {
	_, prefix := testsvc.RedisPrefix(t)
	var down atomic.Bool
	down.Store(true)
	client := redis.NewClient(&redis.Options{
		Addr:       testsvc.RedisAddr(),
		MaxRetries: -1,
		Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if down.Load() {
				return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused (test)")}
			}
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	})
	t.Cleanup(func() { _ = client.Close() })
	store := newRedisStore(t, client, sagas.RedisStoreConfig{Prefix: prefix})

	w := newWorld(t, store)
	cfg := w.config()
	logs := &logBuffer{}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, nil))
	m, res := w.manager(cfg, orderSaga(), true)

	const placed = "8b1f0c35-0000-4000-8000-000000000081"
	w.publish(placed, "corr-8", &OrderPlaced{OrderID: "o-8", Amount: 10})
	eventually(t, "three nacks", func() bool { return len(res.of(placed)) >= 3 })
	down.Store(false)
	w.waitFor("o-8", "completed", func(i sagas.Instance) bool { return i.Outcome == sagas.OutcomeCompleted })

	outs := res.of(placed)
	var opErr *net.OpError
	for _, err := range outs[:len(outs)-1] {
		if !errors.As(err, &opErr) || errors.Is(err, sagas.ErrPoison) {
			t.Errorf("nack error %v, want the network error and not a poison step", err)
		}
	}
	if outs[len(outs)-1] != nil {
		t.Errorf("last result %v, want an ack", outs[len(outs)-1])
	}
	inst, _, err := store.Load(context.Background(), sagaType, "o-8")
	if err != nil {
		t.Fatal(err)
	}
	if inst.Failures != 0 {
		t.Errorf("failures = %d, want 0: an unreachable Redis is no poison", inst.Failures)
	}
	wantSteps(t, history(t, m, "o-8"), happySteps...)
	assertLogged(t, logs.String(), "WARN", map[string]any{
		"saga.type": sagaType, "saga.id": "o-8", "event.id": placed, "attempt": float64(1),
	}, "connection refused (test)")
}
