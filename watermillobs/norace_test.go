//go:build !race

package watermillobs_test

const raceEnabled = false
