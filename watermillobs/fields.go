package watermillobs

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"
)

type fieldsKey struct{}

// fieldsUsed turns true once WithFields is first called, so that programs
// that never attach fields skip the context lookup on every message.
var fieldsUsed atomic.Bool

// WithFields returns a context carrying extra fields (tenant, order ID, ...)
// in addition to those ctx already carries. The log handler of
// [NewLogHandler] adds them to every record logged with the context, and
// spans started by this package with the context get them as attributes.
// Keep them few and small: they are copied into every record and span.
func WithFields(ctx context.Context, attrs ...slog.Attr) context.Context {
	if len(attrs) == 0 {
		return ctx
	}
	fieldsUsed.Store(true)
	prev := Fields(ctx)
	merged := make([]slog.Attr, 0, len(prev)+len(attrs))
	merged = append(merged, prev...)
	merged = append(merged, attrs...)
	return context.WithValue(ctx, fieldsKey{}, merged)
}

// Fields returns the fields added to ctx with [WithFields], oldest first.
// The slice must not be modified.
func Fields(ctx context.Context) []slog.Attr {
	if !fieldsUsed.Load() {
		return nil
	}
	f, _ := ctx.Value(fieldsKey{}).([]slog.Attr)
	return slices.Clip(f)
}
