package testsvc

import (
	"bytes"
	"runtime"
	"strings"
	"time"
)

// SettleTimeout bounds how long the Run of [Settled] waits.
const SettleTimeout = 3 * time.Second

// TestingM is what [Settled] needs of a *testing.M (and what
// goleak.VerifyTestMain takes).
type TestingM interface{ Run() int }

// Settled returns m with a Run that, after the tests, waits (at most
// SettleTimeout) until no goroutine is left that third-party code ends on
// its own shortly after its owner is closed, so that a goroutine leak check
// run next reports leaks, not goroutines on their way out:
//
//   - watermill-redisstream's Subscriber reader: when Close cancels its
//     read, it sleeps 500 ms ("prevent excessive output") before it sees
//     the close and returns, which is longer than goleak's retries wait.
//
// A reader of a subscriber that was never closed does not end, so the
// check that follows still reports it.
func Settled(m TestingM) TestingM { return settled{m} }

type settled struct{ m TestingM }

func (s settled) Run() int {
	code := s.m.Run()
	deadline := time.Now().Add(SettleTimeout)
	for settling() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	return code
}

// settling reports whether a goroutine Settled waits for is running.
func settling() bool {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	for g := range bytes.SplitSeq(buf, []byte("\n\n")) {
		if redisstreamReaderSleeping(string(g)) {
			return true
		}
	}
	return false
}

// redisstreamReaderSleeping reports whether the goroutine stack g (in
// runtime.Stack's format) is watermill-redisstream's reader in its sleep
// after a failed read.
func redisstreamReaderSleeping(g string) bool {
	lines := strings.Split(g, "\n")
	// goroutine N [sleep]:, time.Sleep(...), its file, the caller.
	return len(lines) >= 4 &&
		strings.HasPrefix(lines[1], "time.Sleep(") &&
		strings.HasPrefix(lines[3], "github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream.(*Subscriber).read(")
}
