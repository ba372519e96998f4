package promobs

import "time"

// WithClock replaces time.Now, so that tests get exact durations.
func WithClock(now func() time.Time) SharedOption {
	return optionFunc(func(c *config) { c.now = now })
}

// WithObserveHook runs f at the start of every observation, so that tests
// can make the package's own code panic.
func WithObserveHook(f func()) SharedOption {
	return optionFunc(func(c *config) { c.observeHook = f })
}

// WithCollectTimeout replaces CollectTimeout, so that tests of a hanging
// SagaSource are quick.
func WithCollectTimeout(d time.Duration) SharedOption {
	return optionFunc(func(c *config) { c.collectTimeout = d })
}
