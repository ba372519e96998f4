package projections

import (
	"log/slog"
	"slices"
	"strings"
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
