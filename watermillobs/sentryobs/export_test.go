package sentryobs

import "time"

// SetClock replaces the clock of c's deduplication. Call it before c handles
// messages.
func SetClock(c *Capture, now func() time.Time) {
	if c.dedup != nil {
		c.dedup.mu.Lock()
		c.dedup.now = now
		c.dedup.mu.Unlock()
	}
}

// DedupLen returns how many messages c currently remembers.
func DedupLen(c *Capture) int {
	if c.dedup == nil {
		return 0
	}
	c.dedup.mu.Lock()
	defer c.dedup.mu.Unlock()
	return len(c.dedup.first)
}
