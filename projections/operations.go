package projections

import (
	"context"
	"log/slog"
	"slices"
	"strings"

	"github.com/cqrs-ddd/watermill-observability/contract"
	"github.com/cqrs-ddd/watermill-observability/hooks"
	"github.com/cqrs-ddd/watermill-observability/internal/bound"
	"github.com/cqrs-ddd/watermill-observability/internal/panics"
)

// Hook operations of this package and their attributes (see the package
// documentation). promobs reads them by name.
const (
	opProcess     = "projection.process."     // + projection name
	opPartition   = "projection.partition."   // + partition index
	opSinkWrite   = "projection_sink.write."  // + projection name
	opGap         = "projection.gap."         // + projection name
	opDeadLetter  = "projection.dead_letter." // + projection name
	opStopped     = "projection.stopped."     // + projection name
	opReplayStart = "replay.start."           // + projection name
	opReplaySwap  = "projection.replay.swap." // + projection name

	attrProjection = "projection_name"
	attrPartition  = "partition_index"
	attrEventType  = "event.type"
	attrPosition   = "position"
	attrStream     = "stream"
	attrEntryID    = "stream.entry_id"
	attrMessageID  = "messaging.message.id"
	attrAttempt    = "attempt"
	attrBatchSize  = "batch.size"
	attrGapFrom    = "gap.from"
	attrGapTo      = "gap.to"
	attrSkipped    = "gap.skipped"
	attrError      = "error"
	attrReason     = "reason"
)

// checkpointAttrs are the attributes of checkpoint.save and
// redis.checkpoint.save: the projection and the saved position (the
// highest entry ID of the checkpoint's streams, "stream=id" pairs when
// there are several).
func checkpointAttrs(c Commit) []slog.Attr {
	return []slog.Attr{
		slog.String(attrProjection, c.Partition.Projection),
		slog.Int(attrPartition, c.Partition.Index),
		slog.String(attrPosition, positionString(c.To)),
	}
}

func positionString(cp Checkpoint) string {
	if len(cp) == 1 {
		for _, p := range cp {
			return p.ID
		}
	}
	streams := make([]string, 0, len(cp))
	for s := range cp {
		streams = append(streams, s)
	}
	slices.Sort(streams)
	var b strings.Builder
	for i, s := range streams {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s + "=" + cp[s].ID)
	}
	return b.String()
}

// reportHookPanic is the contract.ReportFunc of this package: a hook that
// panicked is counted and logged with logger (nil: slog.Default), and the
// operation ran unobserved.
func reportHookPanic(logger *slog.Logger) contract.ReportFunc {
	return func(ctx context.Context, p *hooks.HookPanicError) {
		panics.Report(ctx, logger, "projections: a hook panicked; the operation ran unobserved", p.Value,
			slog.String("hook", bound.String(p.Hook, bound.Attribute)),
			slog.String("operation", bound.String(p.Operation, bound.Attribute)))
	}
}
