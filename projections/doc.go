// Package projections runs projections over Redis Streams written by
// watermill-redisstream: workers that read the streams themselves from a
// checkpoint, apply events to a read model in batches, and commit the
// model's writes together with the checkpoint, partitioned by a key, with
// lag and gap detection, and every step a hook operation.
//
// # Why it reads the streams itself
//
// watermill-redisstream never puts the stream entry ID on a message, so a
// Watermill subscriber cannot checkpoint by stream position; and Redis'
// consumer-group lag is wrong (or -1) after XDEL or XTRIM. A [Worker]
// reads with XREAD (through a [Source]: [RedisSource], or the in-memory
// [MemoryLog] fed from any Watermill subscriber), decodes entries exactly
// as watermill-redisstream's default marshaler writes them (UUID, payload,
// msgpack metadata), and computes lag from entry IDs and XINFO STREAM.
//
// # Exactly once in effect
//
// A [Projection] does not write the read model itself: it puts writes into
// a [Batch], and the [Store] commits a batch's writes, dead letters and the
// new checkpoint in one atomic step ([RedisStore]: one Lua script), after
// checking that the stored checkpoint is the one the batch was read from
// and, for leased partitions, that the writer still holds the lease. A
// crash never moves the checkpoint past unwritten data, and no event is
// applied twice, even by an owner that lost its lease (fencing).
//
// # Partitions
//
// With Config.Partitions above 1, events are spread over partitions by
// Config.Key ([MetadataKey] reads a metadata value). The layout is logical
// segments of one stream: every partition reads the whole stream, applies
// the events whose key falls into it ([PartitionOf]) and passes over the
// others, with a checkpoint of its own. Publishers need no routing, and
// any Watermill publisher works; the price is that each partition reads
// every entry. With a [Leaser] (a [RedisStore]), each process of the
// projection takes its share of the partitions under leases that it
// renews; a dead owner's partitions move to a survivor within
// Config.LeaseTTL (plus a quarter of it).
//
// In Redis Cluster, all keys of a partition share the hash tag
// {projection:index}, so the commit script touches one slot. The streams of
// one worker are read in one MULTI and must share a slot too.
//
// # Operations
//
//	projection.partition.{index}     a batch of a partition (projection_name, partition_index, batch.size)
//	projection.process.{name}        an event (per attempt) or a batch (projection_name, event.type, partition_index, ...)
//	projection_sink.write.{name}     the commit of a batch (projection_name, partition_index, batch.size, sink.writes)
//	checkpoint.save.{name}           MemoryStore commit (projection_name, partition_index, position)
//	redis.checkpoint.save.{name}     RedisStore commit (projection_name, partition_index, position)
//	projection.gap.{name}            a gap was found (stream, gap.from, gap.to, gap.skipped, policy)
//	projection.dead_letter.{name}    an event was dead-lettered (event.type, attempt, error, ...)
//	projection.stopped.{name}        a policy stopped the worker (reason: poison, gap)
//	replay.start.{name}              a whole replay (projection_name, generation)
//
// Per-event operations run with the event's correlation and causation IDs
// and continue the trace of the message the event was published with, or
// link to it (Config.LinkTraces); the span hook turns them into spans.
//
// # Lag, gaps and poison events
//
// [Worker.Lag] and [StreamLag] give events and seconds behind per
// partition; [Worker.Ready] is a readiness check. Entries removed before
// they were applied are detected from the stream's bookkeeping and handled
// by Config.Gaps ([GapError]); events whose handler fails every retry are
// handled by Config.Poison ([PoisonError] or a dead letter).
//
// # Replay
//
// [Worker.Replay] rebuilds the read model from the start of the streams
// into a new generation, a keyspace of its own ({name@generation:index}),
// while the workers keep serving the active one, and swaps it in
// atomically once every partition has caught up: readers never see a
// half-built model. [Worker.ReplayProgress] reports done, total, rate and
// time left while it runs; [Worker.Lag] stays the lag of the active model.
package projections
