// Package sentryobs reports the errors and panics of Watermill router
// handlers to Sentry, tagged with the message they came from and linked to
// the OpenTelemetry trace that handled it.
//
// # Setup
//
// Configure Sentry once in main, then install the middleware, either as a
// backend of watermillobs.Instrument, which places it inside the tracing
// middleware:
//
//	err := sentry.Init(sentry.ClientOptions{Dsn: os.Getenv("SENTRY_DSN")})
//	if err != nil { ... }
//	defer sentry.Flush(2 * time.Second)
//
//	watermillobs.Instrument(router, watermillobs.InstrumentConfig{Backends: []watermillobs.Backend{sentryobs.New()}})
//
// or directly, after the tracing middleware if you want trace links:
//
//	router.AddMiddleware(sentryobs.Middleware())
//
// [New] uses sentry.CurrentHub, the hub sentry.Init configures; [WithHub]
// selects another one. While the hub has no client (sentry.Init was not
// called), messages pass through untouched.
//
// # What is captured
//
// A handler error is captured as an error event, unless the filter of
// [WithIgnoreErrors] rejects it (by default, context.Canceled is ignored),
// and is returned to the router unchanged. A handler panic is captured as a
// fatal event and re-raised with the same value, so the router, Watermill's
// Recoverer and any other middleware see exactly what they would see without
// this package. If Recoverer runs inside this middleware, the panic arrives
// as Recoverer's error and is captured as such.
//
// # Retries, poison queues and redeliveries
//
// A message whose handler keeps failing must not flood Sentry with one
// event per attempt. Sentry's own queue integrations report the final
// failure; this package does the same when the middlewares are in this
// order (the router runs the first one added outermost):
//
//	poison, err := middleware.PoisonQueue(publisher, "orders.poison")
//	if err != nil { ... }
//	router.AddMiddleware(poison) // outermost: sees only the final error
//	err = watermillobs.Instrument(router, watermillobs.InstrumentConfig{
//		Backends: []watermillobs.Backend{sentryobs.New()},
//		Retry:    middleware.Retry{MaxRetries: 3}.Middleware,
//	})
//
// With InstrumentConfig.Retry, Instrument installs the retry inside this
// middleware, so one event is captured per delivery, after the last
// attempt, tagged [TagAttempts] with the number of attempts ("4" above).
// When assembling the chain by hand, wrap the retry with
// watermillobs.CountAttempts and add it after this middleware. A retry
// added before Instrument (or before this middleware) runs outside it, and
// every attempt is captured, without the attempts tag.
//
// A message that is nacked and redelivered by the broker (no retry, or
// retries exhausted without a poison queue) fails again on every delivery.
// Its failures in one handler are therefore reported once per window: the
// first failure of a message UUID in a handler is captured, and further
// failures of the same UUID in the same handler are not, until
// [WithDedupWindow] (a minute by default) has passed since that report.
// The handler name is part of the key, so a message fanned out to several
// handlers is reported by each; messages without a UUID are always
// reported. Errors rejected by [WithIgnoreErrors] do not count. The
// messages are remembered in a fixed-size set ([WithDedupSize], 4096 by
// default) where each new message evicts the oldest, so memory stays bounded
// however many messages fail; no goroutine or timer is involved.
// Suppressed failures still reach the router unchanged. WithDedupWindow(0)
// reports every failure.
//
// # Tags and the hub in the context
//
// Every message gets its own clone of the hub, so what one handler adds to
// the scope never leaks into other messages or into the parent hub. The
// clone is put into the message's context: handler code reaches it with
// sentry.GetHubFromContext(msg.Context()) to add breadcrumbs, tags or its
// own events. Its scope carries the tags [TagMessageType]
// (cqrs.message_type), [TagCorrelationID], [TagHandler], [TagTopic],
// [TagMessageKind] and, when a retry counted them, [TagAttempts], and a
// [ContextMessage] context with the message UUID and causation ID. Tag values come from untrusted metadata and are cut to
// [TagValueLimit] bytes of valid UTF-8.
//
// # Trace linking
//
// When the message's context holds a valid OpenTelemetry span, as it does
// inside watermillobs' tracing middleware, the event's trace context gets
// that span's trace and span IDs and the [TagTraceID] tag its trace ID. The
// Sentry issue then names the same trace ID as Jaeger or Tempo and the JSON
// logs.
//
// # Reliability
//
// Nothing waits for Sentry: events go to the client's transport, which
// sends them in the background with the default HTTP transport, and the
// middleware never flushes. If preparing the scope or capturing panics (a
// misbehaving transport, BeforeSend callback or error filter), the failure
// is logged through log/slog ([WithLogger]) and the message is handled as
// if the middleware were not there.
package sentryobs
