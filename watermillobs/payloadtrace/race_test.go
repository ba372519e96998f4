//go:build race

package payloadtrace_test

// raceEnabled skips allocation counts, which the race detector changes.
const raceEnabled = true
