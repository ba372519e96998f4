//go:build !race

package promobs_test

const raceEnabled = false
