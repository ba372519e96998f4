//go:build race

package watermillobs_test

// raceEnabled skips allocation counts, which the race detector changes.
const raceEnabled = true
