// Package promobs records Prometheus metrics for Watermill: how long
// handlers take per message type and whether they succeed, how many
// messages each topic consumes and publishes, and how long messages wait in
// the broker before they are handled.
//
// It is a separate package so that programs which do not use Prometheus do
// not link client_golang. A [Metrics] created with [New] is a
// watermillobs.PublisherBackend: give it to watermillobs.Instrument with
// watermillobs.InstrumentConfig.Backends, or install [Metrics.HandlerMiddleware] on a
// router yourself, with [Metrics.PublisherDecorator] for the router's
// publisher (AddPublisherDecorators); [Metrics.DecoratePublisher] wraps one
// publisher directly, the same decorator for code outside a router.
//
// # Metrics
//
// Handled messages, one observation per call of the handler:
//
//   - cqrs_message_duration_seconds (histogram) and cqrs_message_total
//     (counter), labels kind, message_type and outcome. kind is the
//     message_kind metadata (command, event, query, reply), or "message"
//     when it is missing or unknown. message_type is the name metadata that
//     Watermill's cqrs marshalers set, else the handler name. outcome is
//     "success", or "error" when the handler returns an error or panics.
//   - watermill_messages_consumed_total (counter), labels topic (the
//     subscribed topic), handler (the router handler's name) and outcome.
//     Messages handled outside a router have topic and handler "unknown".
//   - watermill_message_time_in_queue_seconds (histogram), label topic: the
//     time from the published_at metadata to the start of handling. It is
//     not observed when published_at is missing, malformed or in the future
//     (producer clocks differ), nor for repeated attempts at one message.
//
// Published messages, through a decorated publisher:
//
//   - watermill_messages_published_total (counter), labels topic and
//     outcome: one per message, outcome "error" when Publish fails.
//   - watermill_publish_duration_seconds (histogram), label topic: one
//     observation per Publish call.
//
// And promobs_internal_errors_total (counter): panics recovered inside this
// package (see Reliability); watermill_observability_recovered_panics_total
// (counter): panics recovered anywhere in this module's own code
// (watermillobs.RecoveredPanics), these included.
//
// The saga runtime (package sagas) has metrics of its own, which a program
// opts into with [NewSagaHook] and [NewSagaCollector]: see the section Saga
// metrics.
//
// Names follow the Prometheus conventions (base units, counters end in
// _total) and can be prefixed with [WithNamespace]. Durations use
// prometheus.DefBuckets unless [WithBuckets] is given; time in queue uses
// [DefaultTimeInQueueBuckets], which reach an hour.
//
// # Saga metrics
//
// The saga runtime never imports promobs, nor promobs the saga runtime. Its
// counters and histograms come from the hook of [NewSagaHook], which reads
// the hook operations that package sagas emits (register it for
// [SagaOperations]); its gauges come from the collector of
// [NewSagaCollector], which asks a [SagaSource] (the saga manager) at every
// scrape. Neither links a Redis client.
//
//	metric                               type       labels                        from
//	saga_instances_started_total         counter    saga_type                     saga.run.* saved with saga.step 1
//	saga_instances_finished_total        counter    saga_type, outcome            saga.run.* saved with a final saga.outcome
//	saga_step_duration_seconds           histogram  saga_type, trigger, outcome   every saga.run.*
//	saga_lock_wait_seconds               histogram  resource_type, outcome        redis.lock.acquire.*
//	saga_version_conflicts_total         counter    saga_type                     saga.version_conflict (notification)
//	saga_timeouts_dropped_total          counter    saga_type                     saga.timeout.dropped (notification)
//	saga_recovery_actions_total          counter    saga_type, action, outcome    saga.recovery.pending, saga.recovery.timeouts
//	saga_active_instances                gauge      saga_type                     SagaSource, at scrape time
//	saga_oldest_active_age_seconds       gauge      saga_type                     SagaSource, at scrape time
//	saga_active_collect_errors_total     counter    (none)                        failed reads of the SagaSource
//
// Label values:
//
//   - saga_type is the saga.type attribute (else the operation name's
//     last part), capped by [WithMaxSagaTypes]; resource_type is the lock's
//     resource_type attribute ("saga"), capped the same way.
//   - outcome of saga_instances_finished_total: completed, compensated,
//     failed, timed_out. Of saga_step_duration_seconds: the step's
//     saga.outcome (running, one of those four, or error for a failure
//     recorded as poison), or save_failed when the operation returned an
//     error, for a version conflict say: then nothing was saved, and the step
//     counts in no other saga metric. Unknown values are "other", missing
//     ones "unknown".
//   - trigger: event or timeout (saga.trigger).
//   - saga_lock_wait_seconds: the duration of the acquire operation,
//     outcome acquired, or failed when the lock was not acquired.
//   - action: pending (recovery published the pending commands of an
//     instance) or timeout (recovery delivered a due timeout); outcome
//     success or error of that action.
//
// saga_oldest_active_age_seconds is the time since the oldest active
// instance of the type started, 0 when none is active. A scrape waits for
// the source at most [CollectTimeout]; when the source fails or is
// late, that scrape has no saga gauges (the rest of the scrape is
// unaffected) and saga_active_collect_errors_total grows. Saga IDs never
// become labels: find one instance through its trace, from an exemplar.
// The histograms and the started, finished and recovery counters carry
// exemplars when the hook runs inside the span hook of watermillobs (a
// higher priority; see [NewSagaHook]).
//
// # Projection metrics
//
// The projection runtime never imports promobs, nor promobs the projection
// runtime. Its counters and histograms come from the hook of
// [NewProjectionHook], which reads the hook operations that package
// projections emits (register it for [ProjectionOperations]); its gauges
// come from the collector of [NewProjectionCollector], which asks each
// [ProjectionSource] (a projection worker) at every scrape, and also its
// [ReplaySource] side when it has one. Neither links a Redis client.
//
//	metric                                   type       labels                  from
//	projection_events_processed_total        counter    projection, outcome     projection.process.* (a batch counts batch.size)
//	projection_process_duration_seconds      histogram  projection              projection.process.*
//	projection_batch_duration_seconds        histogram  projection              projection.partition.*
//	projection_sink_write_duration_seconds   histogram  projection              projection_sink.write.*
//	projection_checkpoint_saves_total        counter    projection, outcome     checkpoint.save.*, redis.checkpoint.save.*
//	projection_gaps_detected_total           counter    projection, partition   projection.gap.* (notification)
//	projection_skipped_entries_total         counter    projection, partition   gap.skipped of projection.gap.*
//	projection_events_dead_lettered_total    counter    projection              projection.dead_letter.* (notification)
//	projection_stops_total                   counter    projection, reason      projection.stopped.* (notification)
//	projection_lag_events                    gauge      projection, partition   ProjectionSource, at scrape time
//	projection_lag_seconds                   gauge      projection, partition   ProjectionSource, at scrape time
//	projection_replay_progress_ratio         gauge      projection              ReplaySource, while a replay runs
//	projection_lag_collect_errors_total      counter    (none)                  failed reads of a ProjectionSource
//
// Label values:
//
//   - projection is the projection_name attribute (else the operation
//     name's last part), capped by [WithMaxProjections].
//   - partition is the partition_index attribute, capped by
//     [WithMaxPartitions]; partitions past the cap are summed under
//     "other" (lag seconds: the largest).
//   - outcome: success, or error for a failed attempt (retried) or a
//     failed checkpoint save (a fenced or conflicting commit among them).
//   - reason: poison or gap.
//
// projection_lag_events counts the entries after a partition's checkpoint
// still in the stream; projection_lag_seconds is the Redis clock minus the
// time of the oldest of them, 0 when caught up. Both stay true after XDEL
// and XTRIM, where Redis' consumer-group lag cannot tell. A scrape waits for
// the sources at most [CollectTimeout]; a source that fails, is late or
// panics leaves out its own gauges and counts in
// projection_lag_collect_errors_total. The histograms and the processed and
// checkpoint counters carry exemplars when the hook runs inside the span
// hook of watermillobs (a higher priority; see [NewProjectionHook]).
//
// # Labels and cardinality
//
// Every label value that comes from a message or a topic name is bounded to
// 128 bytes of valid UTF-8, and each label family is capped: after
// [DefaultMaxMessageTypes] distinct message types (see [WithMaxMessageTypes])
// or [DefaultMaxTopics] distinct topics or handlers (see [WithMaxTopics]),
// further values are counted under "other". A producer that puts IDs in the
// name metadata, or a topic per tenant, therefore cannot make the number of
// series grow without bound; the cap shows up as a large "other" series.
// IDs (message UUID, correlation ID) never become labels: find a single
// message through its trace instead.
//
// # Exemplars
//
// When the message's context holds a sampled span, observations carry an
// exemplar with the span's trace_id, so that Grafana links a latency spike
// to a trace. A series takes a new exemplar at most once per
// [DefaultExemplarInterval] (100 ms; [WithExemplarInterval] changes it),
// each bucket of a histogram on its own: Prometheus keeps only the
// exemplar present at a scrape, so a busy series shows the same as with an
// exemplar on every observation, and a rare slow bucket still gets one. The
// tracing middleware of watermillobs puts the consumer span into the
// message's context; install promobs inside it, as watermillobs.Instrument
// does. Prometheus stores exemplars only when it scrapes the OpenMetrics
// format: serve the registry with
// promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}) and
// run Prometheus with --enable-feature=exemplar-storage.
//
// # Registration
//
// [New] takes a prometheus.Registerer and never uses the global registry
// implicitly: a nil Registerer is [ErrNilRegisterer]. Pass
// prometheus.DefaultRegisterer to use the global one. New registers one
// collector holding all the metrics; when the registry already holds it,
// from an earlier New with the same namespace and const labels, New reuses
// it, so that several routers in one process can each call New and count
// into the same series. [NewSagaHook] does the same for the saga metrics;
// the collector of [NewSagaCollector] is registered by the caller, once per
// registry. Wrapping a handler or a publisher twice with Metrics
// of one registry counts each message once.
//
// # Reliability
//
// Metrics never change what a handler or publisher does: their results are
// returned unchanged, and their panics are observed (outcome "error") and
// then continue unchanged. A panic in this package's own code is recovered,
// counted in promobs_internal_errors_total and logged through the logger of
// [WithLogger] (slog.Default if not set), and the message goes on as if it
// were not measured.
//
// # Performance
//
// Instruments are resolved when a label combination is first seen and
// cached, so a message costs a few map lookups under read locks, a few
// atomic additions and one small allocation. An exemplar costs some seven
// allocations inside client_golang; the exemplar interval keeps that to a
// few a second per series instead of one per sampled message.
//
// # A complete program
//
// A service that handles orders from Redis Streams and serves its metrics,
// exemplars included, on :2112/metrics:
//
//	package main
//
//	import (
//		"context"
//		"log"
//		"net/http"
//
//		"github.com/ThreeDotsLabs/watermill"
//		"github.com/ThreeDotsLabs/watermill-redisstream/pkg/redisstream"
//		"github.com/ThreeDotsLabs/watermill/message"
//		"github.com/prometheus/client_golang/prometheus"
//		"github.com/prometheus/client_golang/prometheus/promhttp"
//		"github.com/redis/go-redis/v9"
//
//		"github.com/cqrs-ddd/watermill-observability/watermillobs"
//		"github.com/cqrs-ddd/watermill-observability/watermillobs/promobs"
//	)
//
//	func main() {
//		reg := prometheus.NewRegistry()
//		metrics, err := promobs.New(reg, promobs.WithNamespace("shop"))
//		if err != nil {
//			log.Fatal(err)
//		}
//		go func() {
//			http.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{EnableOpenMetrics: true}))
//			log.Fatal(http.ListenAndServe(":2112", nil))
//		}()
//
//		logger := watermill.NewSlogLogger(nil)
//		rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
//		sub, err := redisstream.NewSubscriber(redisstream.SubscriberConfig{
//			Client: rdb, ConsumerGroup: "order-projector",
//		}, logger)
//		if err != nil {
//			log.Fatal(err)
//		}
//
//		router, err := message.NewRouter(message.RouterConfig{}, logger)
//		if err != nil {
//			log.Fatal(err)
//		}
//		// Tracing, correlation and logging from watermillobs; metrics from
//		// promobs, inside the tracing middleware for exemplars.
//		if err := watermillobs.Instrument(router, watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{metrics}}); err != nil {
//			log.Fatal(err)
//		}
//		router.AddConsumerHandler("order_projector", "orders", sub, func(msg *message.Message) error {
//			log.Printf("order %s", msg.UUID)
//			return nil
//		})
//		if err := router.Run(context.Background()); err != nil {
//			log.Fatal(err)
//		}
//	}
//
// Without watermillobs.Instrument, install the pieces directly:
//
//	router.AddMiddleware(metrics.HandlerMiddleware())
//	router.AddPublisherDecorators(metrics.PublisherDecorator())
package promobs
