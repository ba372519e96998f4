// Package panics reports panics that this module's own code recovered:
// a broken span processor, log handler, Sentry transport or a bug of ours.
// Each one is logged and counted, so that "observability never fails a
// message" does not also mean "observability fails silently".
package panics

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
)

var count atomic.Uint64

// Count returns how many panics [Report] has seen since the process
// started.
func Count() uint64 { return count.Load() }

// Recovered counts a recovered panic that the caller logs itself (a
// caller that rate-limits its logs, say).
func Recovered() { count.Add(1) }

// Report counts a recovered panic and logs msg at level Error with the
// panic value and attrs, through logger (nil: slog.Default). A panic of the
// log handler itself is swallowed: reporting must never fail the caller.
func Report(ctx context.Context, logger *slog.Logger, msg string, v any, attrs ...slog.Attr) {
	count.Add(1)
	defer func() { _ = recover() }()
	if logger == nil {
		logger = slog.Default()
	}
	attrs = append(attrs, slog.String("panic", valueString(v)))
	logger.LogAttrs(ctx, slog.LevelError, msg, attrs...)
}

// valueString formats v without trusting it: a panicking String or Error
// method yields a placeholder.
func valueString(v any) (s string) {
	defer func() {
		if recover() != nil {
			s = "(unprintable panic value)"
		}
	}()
	s = fmt.Sprint(v)
	const max = 1024
	if len(s) > max {
		s = s[:max]
	}
	return s
}
