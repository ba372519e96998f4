package watermillobs_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
)

// TestMain fails the package's tests if a goroutine outlives them: a leaked
// goroutine is a leak a user's process would carry. Settled first lets the
// readers of closed redisstream subscribers end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testsvc.Settled(m),
		// Watermill's Pub/Sub test suite (conformance_test.go) reads a
		// fixed number of messages from its multiplied subscriber; the
		// multiplier's forwarding goroutines (and the one waiting for them)
		// then block on an unbuffered channel nobody reads. That code is
		// only in Watermill's pubsub/tests, never in a user's process.
		goleak.IgnoreTopFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func2"),
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/internal/subscriber.(*multiplier).Subscribe.func3"),
	)
}
