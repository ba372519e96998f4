package outbox_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/cqrs-ddd/watermill-observability/internal/testsvc"
)

// TestMain fails the package's tests if a goroutine outlives them: a leaked
// goroutine is a leak a user's process would carry. Settled first lets the
// readers of closed redisstream subscribers end.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(testsvc.Settled(m))
}
