package bound_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine outlives them: a leaked
// goroutine is a leak a user's process would carry.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
