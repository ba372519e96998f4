package testsvc

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
	"github.com/ThreeDotsLabs/watermill/message"
)

// RouterTimeout bounds how long RunRouter waits for a router to start and to
// close.
const RouterTimeout = 10 * time.Second

// RedisPublisher returns a redisstream publisher on the test Redis with a
// client of its own (closing a redisstream publisher closes its client),
// closed when the test ends.
func RedisPublisher(t testing.TB) *redisstream.Publisher {
	t.Helper()
	pub, err := redisstream.NewPublisher(redisstream.PublisherConfig{Client: Redis(t)}, watermill.NopLogger{})
	if err != nil {
		t.Fatalf("cannot create redisstream publisher: %v", err)
	}
	t.Cleanup(func() { _ = pub.Close() })
	return pub
}

// RedisSubscriber returns a redisstream subscriber in consumer group group,
// with a client of its own, closed when the test ends. Its reads block for
// at most 50 ms, so that closing a router is quick.
func RedisSubscriber(t testing.TB, group string) *redisstream.Subscriber {
	t.Helper()
	sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
		Client:                        Redis(t),
		ConsumerGroup:                 group,
		BlockTime:                     50 * time.Millisecond,
		DisableIndefiniteInitialBlock: true,
	}, watermill.NopLogger{})
	if err != nil {
		t.Fatalf("cannot create redisstream subscriber: %v", err)
	}
	t.Cleanup(func() { _ = sub.Close() })
	return sub
}

// NewRouter returns an unstarted router with quiet logs and a close
// timeout of RouterTimeout.
func NewRouter(t testing.TB) *message.Router {
	t.Helper()
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: RouterTimeout}, watermill.NopLogger{})
	if err != nil {
		t.Fatalf("cannot create router: %v", err)
	}
	return r
}

// RunRouter runs r until the test ends, when it closes it and checks that it
// stopped cleanly, and returns once r is running.
func RunRouter(t testing.TB, r *message.Router) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.Run(context.Background()) }()
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("cannot close router: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("router stopped with an error: %v", err)
		}
	})
	select {
	case <-r.Running():
	case err := <-done:
		t.Fatalf("router stopped before running: %v", err)
	case <-time.After(RouterTimeout):
		t.Fatalf("router not running after %s", RouterTimeout)
	}
}
