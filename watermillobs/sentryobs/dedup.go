package sentryobs

import (
	"sync"
	"time"
)

// dedup remembers the messages reported in the last window, so that a
// message the broker keeps redelivering is reported once per window and not
// once per delivery. Its memory is bounded: a fixed ring of keys, the oldest
// evicted by each new one, and no goroutine or timer.
type dedup struct {
	window time.Duration

	mu sync.Mutex
	// now is the clock; tests replace it through export_test.go.
	now func() time.Time
	// first maps a key to the time it was last reported; suppressed
	// reports do not refresh it.
	first map[string]time.Time
	ring  []string
	next  int
}

// newDedup returns nil, meaning no deduplication, when window or size is
// not positive.
func newDedup(window time.Duration, size int) *dedup {
	if window <= 0 || size <= 0 {
		return nil
	}
	return &dedup{
		window: window,
		now:    time.Now,
		first:  make(map[string]time.Time, size),
		ring:   make([]string, size),
	}
}

// suppress reports whether key was reported less than the window ago, and
// otherwise records that it is being reported now.
func (d *dedup) suppress(key string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if t, ok := d.first[key]; ok {
		if now.Sub(t) < d.window {
			return true
		}
		// Reported again: the key keeps its ring slot.
		d.first[key] = now
		return false
	}
	if old := d.ring[d.next]; old != "" {
		delete(d.first, old)
	}
	d.ring[d.next] = key
	d.next = (d.next + 1) % len(d.ring)
	d.first[key] = now
	return false
}
