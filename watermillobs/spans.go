package watermillobs

import (
	"context"
	"log/slog"

	"github.com/cqrs-ddd/watermill-observability/internal/spans"
)

// pipelinePanics returns the report of panics recovered from the tracing
// pipeline: logged through logger (nil: slog.Default), never passed to the
// message.
func pipelinePanics(logger *slog.Logger) spans.PanicFunc {
	return func(ctx context.Context, what string, v any) {
		l := logger
		if l == nil {
			l = slog.Default()
		}
		defer func() { _ = recover() }() // a broken log handler must not matter either
		l.LogAttrs(ctx, slog.LevelError, "watermillobs: recovered panic in tracing pipeline",
			slog.String("during", what), slog.Any("panic", v))
	}
}
