//go:build race

package promobs_test

// raceEnabled skips allocation counts, which the race detector changes.
const raceEnabled = true
