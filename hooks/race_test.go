//go:build race

package hooks_test

// The race detector adds allocations, so allocation counts are not pinned
// under -race.
const raceEnabled = true
