// Package watermillobs makes Watermill routers and publishers observable:
// OpenTelemetry spans that continue across brokers, correlation and
// causation IDs in message metadata, JSON logs through log/slog, sanitized
// payload tracing, and hook operations for the [hooks] registry.
//
// The metadata contract itself (keys, stamping, reading) is package
// contract; sanitized payload tracing is package payloadtrace, which
// [Instrument] installs when InstrumentConfig.PayloadTracing is set.
//
// It depends only on the OpenTelemetry API, Watermill and the standard
// library. Prometheus metrics live in watermillobs/promobs and Sentry
// capture in watermillobs/sentryobs, so a program that does not use them
// does not link them; pass them to [Instrument] in InstrumentConfig.Backends.
//
// # Instrumenting a router
//
// One call installs the recommended middlewares and publisher decorators:
//
//	router, _ := message.NewRouter(message.RouterConfig{}, logger)
//	metrics, _ := promobs.New(prometheus.DefaultRegisterer)
//	err := watermillobs.Instrument(router, watermillobs.InstrumentConfig{
//		Backends: []watermillobs.Backend{metrics, sentryobs.New()},
//	})
//	if err != nil {
//		return err
//	}
//
// Publishers used outside the router (HTTP handlers, handlers that publish
// through their own publisher) are wrapped with [NewPublisher]:
//
//	pub := watermillobs.NewPublisher(redisPublisher)
//	msg.SetContext(ctx) // the request's context: its span and correlation ID
//	err := pub.Publish("orders", msg)
//
// # The metadata contract
//
// Every message published through an instrumented path carries
// correlation_id, causation_id, the W3C traceparent/tracestate/baggage,
// and published_at (see the Key constants). Values already present are
// never overwritten, so a user can set any of them. Metadata is untrusted
// input: malformed or oversized values are ignored or bounded, never fail a
// message, and never reach a span attribute, log field or label unbounded.
//
// # Spans
//
// The publisher starts a "send {topic}" PRODUCER span per message and writes
// its context into the metadata; [Tracing] starts a "process {topic}"
// CONSUMER span as its child in the consuming process, with the messaging
// semantic-convention attributes. Handlers see the span in msg.Context(),
// and messages they return or publish with that context continue it.
// [TracingConfig] (LinkOnly, LinkAfter) starts a new trace with a span link
// instead, for delayed or long-queued messages.
//
// One span per message per hop: a Publish call stays one call of the
// wrapped publisher, and each message gets one send span.
//
// [InstallFrameworkHooks] turns hook operations (saga.run.*, uow.*, ...)
// into spans, with a production profile of operation patterns by default.
// The publisher.publish.* and consumer.consume.* operations run inside a
// send or process span already and get no second span; other hooks still
// see them.
//
// Per-request destinations (replies, and topics mapped with
// [WithTopicTemplate]) name spans, operations and metric labels by a
// template ([contract.Destination]); the raw topic stays in
// messaging.destination.name.
//
// # Configuration
//
// Settings shared by every constructor are [Option] values: give one slice
// of them (tracer provider, propagator, logger, hook registry, messaging
// system, topic template) to Instrument, NewPublisher and the rest; each
// uses those that concern it. A setting that belongs to one constructor is a
// field of its config struct ([InstrumentConfig], [TracingConfig],
// [FrameworkHooksConfig]), so it cannot be given where it would be ignored.
//
// The TracerProvider defaults to
// otel.GetTracerProvider, resolved when the middleware is built; with no
// SDK configured, spans are a cheap no-op. The propagator is the one of
// [WithPropagators], else the global one looked up per message, so
// otel.SetTextMapPropagator may run before or after instrumenting; while no
// global was ever set, W3C TraceContext and Baggage are used (logged once at
// level Info), and an empty composite propagator turns propagation off.
// messaging.system comes from [WithMessagingSystem], else from the
// transport (the wrapped publisher's or subscriber's type, or the names the
// router puts in the message context), else it is omitted. The logger defaults to
// slog.Default and the hook registry to the one in the message context (or
// hooks.Default).
package watermillobs
