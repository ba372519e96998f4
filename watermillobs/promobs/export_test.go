package promobs

import "time"

// WithClock replaces time.Now, so that tests get exact durations.
func WithClock(now func() time.Time) Option {
	return optionFunc(func(c *config) { c.now = now })
}

// WithObserveHook runs f at the start of every observation, so that tests
// can make the package's own code panic.
func WithObserveHook(f func()) Option {
	return optionFunc(func(c *config) { c.observeHook = f })
}
