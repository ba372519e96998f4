//go:build !race

package payloadtrace_test

const raceEnabled = false
