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
// Names follow the Prometheus conventions (base units, counters end in
// _total) and can be prefixed with [WithNamespace]. Durations use
// prometheus.DefBuckets unless [WithBuckets] is given; time in queue uses
// [DefaultTimeInQueueBuckets], which reach an hour.
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
// When the message's context holds a sampled span, every observation
// carries an exemplar with the span's trace_id, so that Grafana links a
// latency spike to a trace. The tracing middleware of watermillobs puts the
// consumer span into the message's context; install promobs inside it, as
// watermillobs.Instrument does. Prometheus stores exemplars only when it
// scrapes the OpenMetrics format: serve the registry with
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
// into the same series. Wrapping a handler or a publisher twice with Metrics
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
// atomic additions and one small allocation. Observations with exemplars,
// for sampled spans only, cost some 30 allocations more inside client_golang;
// keep trace sampling in proportion.
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
