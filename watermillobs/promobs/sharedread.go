package promobs

import (
	"context"
	"sync"
	"time"
)

// sharedRead runs the scrape-time read of a collector's sources: one read
// at a time, shared by the scrapes that arrive while it runs (two
// Prometheus servers scraping at once ask the sources once), on a goroutine
// of its own so that a source that ignores its context holds no scrape
// longer than timeout.
type sharedRead[T any] struct {
	timeout time.Duration
	read    func(ctx context.Context) T

	mu   sync.Mutex // guards call, the read in progress, if any
	call *readCall[T]
}

// A readCall is one read; result is written before done is closed.
type readCall[T any] struct {
	done   chan struct{}
	result T
}

// get returns the result of the running read, starting one if none runs,
// and false when it did not come within the timeout.
func (s *sharedRead[T]) get() (T, bool) {
	s.mu.Lock()
	call := s.call
	if call == nil {
		call = &readCall[T]{done: make(chan struct{})}
		s.call = call
		go s.run(call)
	}
	s.mu.Unlock()
	timer := time.NewTimer(s.timeout)
	defer timer.Stop()
	select {
	case <-call.done:
		return call.result, true
	case <-timer.C:
		var zero T
		return zero, false
	}
}

func (s *sharedRead[T]) run(call *readCall[T]) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	call.result = s.read(ctx)
	s.mu.Lock()
	s.call = nil
	s.mu.Unlock()
	close(call.done)
}
