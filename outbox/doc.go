// Package outbox is a transactional outbox on PostgreSQL for Watermill whose
// trace context, baggage and correlation survive the hop to the broker.
//
// Events are saved in the same transaction as the business change
// ([Outbox.TxPublisher] for database/sql, [Outbox.PgxTxPublisher] for pgx),
// through watermill-sql v4 and the envelope of Watermill's
// components/forwarder, so they exist if and only if the transaction
// commits. A [Forwarder] (Watermill's forwarder reading the outbox table
// through watermill-sql's PostgreSQL subscriber) publishes them to any
// message.Publisher. A [BufferedPublisher] serves code without a
// transaction, grouping concurrent calls into one commit. A [Monitor] tells
// the backlog and answers readiness probes.
//
// # What survives the hop
//
// Saving stamps the metadata contract (see package contract) onto each
// message: correlation_id, causation_id, traceparent/tracestate of the
// outbox.save_events span (so of the request), baggage and published_at,
// at save time. The forwarder publishes the saved message unchanged: the
// consumer of a forwarded message continues the trace of the transaction
// that saved it, even through a watermillobs.Publisher, which never
// replaces a trace context the message already has.
//
// # Tables
//
// One outbox is three tables, named after Config.Topic (default "outbox"):
// watermill_{topic} (the messages, watermill-sql's PostgreSQL schema),
// watermill_offsets_{topic} (the forwarder's position per consumer group)
// and watermill_dead_{topic} (envelopes that could not be decoded). They
// are created only by an explicit [Outbox.CreateSchema], or by running
// [Outbox.SchemaSQL] in a migration; never implicitly, and never inside a
// user's transaction. [ValidateTopic] checks names early: watermill-sql
// refuses characters other than letters, digits and - $ : . _, and
// PostgreSQL cuts identifiers at 63 bytes.
//
// # Guarantees
//
//   - A rolled-back transaction forwards nothing.
//   - Delivery is at-least-once: a forwarder stopped or a connection lost in
//     the middle of a batch forwards that batch's messages again, with the
//     same UUIDs, so consumers deduplicate by UUID.
//   - PostgreSQL or the broker unreachable: the forwarder retries, logs the
//     first failure, and resumes by itself.
//   - An envelope that cannot be decoded is moved to the dead-letter table
//     in the forwarder's transaction, logged at Error and reported as
//     outbox.dead_letter, never acknowledged away silently, and never
//     blocking the messages after it.
//   - Forwarded rows are deleted after ForwarderConfig.Retention (24 h by
//     default; see [Outbox.Cleanup]). Unforwarded rows are never deleted.
//
// # Hook operations
//
// Every operation runs through the hook registry (Config.Registry, else
// the context's), so spans come from the span hook of watermillobs and
// metrics from promobs.OutboxMetrics. Attributes are listed with the
// constants:
//
//   - outbox.save_events: one Publish of a transactional publisher
//     (topic, outbox.event_count).
//   - outbox.process_batch: one forwarder batch, the rows read in one SQL
//     transaction of watermill-sql's subscriber (outbox.batch_size,
//     outbox.topic). Its outcome is an error when the batch ended before all
//     its messages were forwarded.
//   - outbox.retry_failed: a new attempt at a message whose forward failed
//     (outbox.retry.batch_size = 1, message.id).
//   - outbox.forward.{topic}: the publish of one message to the broker
//     (topic, message.id, correlation_id, message_type,
//     outbox.time_in_outbox as a time.Duration). Its span is a new root
//     linked to the saved span context ([ForwardLinked], the default) or its
//     child ([ForwardChild]); either way the span shows
//     outbox.time_in_outbox_ms. watermillobs' default trace profile
//     includes it.
//   - outbox.dead_letter: moving an undecodable envelope aside (message.id,
//     error).
//   - outbox.buffered.publish: one Publish of a BufferedPublisher, until its
//     group commit ended (topic, outbox.event_count).
//
// # Metrics
//
// This package imports no metrics backend. With promobs:
//
//   - promobs.NewOutboxMetrics, a hook over "outbox.*":
//     outbox_messages_saved_total{topic,outcome},
//     outbox_messages_forwarded_total{topic,outcome},
//     outbox_forward_duration_seconds{topic},
//     outbox_time_in_outbox_seconds{topic} (save to forward),
//     outbox_batches_total{outcome}, outbox_batch_messages,
//     outbox_batch_duration_seconds, outbox_retries_total{outcome},
//     outbox_dead_letters_total{outcome},
//     outbox_buffered_publishes_total{outcome},
//     outbox_buffered_publish_duration_seconds;
//   - promobs.NewOutboxBacklogCollector over a [Monitor], queried at scrape
//     time: outbox_backlog_messages{outbox},
//     outbox_backlog_held_back_messages{outbox},
//     outbox_oldest_message_age_seconds{outbox},
//     outbox_backlog_query_errors_total{outbox}.
//
// # Backlog
//
// [Outbox.Backlog] is one query over the messages and offsets tables. It
// counts from the forwarder's saved position (zero before its first
// Subscribe, when there is no offsets row yet), which moves once per batch;
// it takes the age from the envelope's published_at rather than created_at
// (a TIMESTAMP without time zone, set at transaction start); and it counts
// without watermill-sql's pg_snapshot_xmin filter, reporting apart the
// messages held back by a transaction still open anywhere on the server
// (Backlog.HeldBack): those the forwarder cannot read yet however fast it
// is.
package outbox
